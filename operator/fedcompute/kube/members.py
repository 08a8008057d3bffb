"""Collect a member cluster's figures: Secret -> vetted kubeconfig -> bounded reads -> figures.

:func:`collect_provider` is what the engine calls, from a worker thread, once per due
collection. It is total: every failure is a :class:`CollectionError` whose ``reason`` is a
ComputeProvider condition reason, never a stray exception, and one deadline, started when
the call starts, covers all of it: reading the Secret, resolving the server's host name,
connecting, the TLS handshake, every byte of every page, decompression, JSON parsing and the
figures. A hostile or broken member can make a collection fail; it cannot make it last
longer than its timeout (plus at most one parse that cannot be interrupted: a page's JSON
or the kubeconfig's YAML) or hold more than a bounded amount of memory.

The client is assembled by hand from a :class:`~fedcompute.kube.kubeconfigs.SafeKubeconfig`
and never through ``kubernetes.config``, which would honour ``exec``, file paths and the
environment. What it does, and why:

* Connects to the first vetted address, not to the host name: the name was checked once,
  and resolving it again at connect time would let DNS rebinding point the operator at a
  denied address. SNI and certificate verification still use the host name (or the
  kubeconfig's ``tls-server-name``), so pinning weakens nothing.
* Trusts only the kubeconfig's CA (never the system roots), and uses no proxy, including
  ``HTTPS_PROXY`` from the environment, which the generated client would otherwise pick up.
  Redirects are not followed: they would leave the vetted address.
* Keeps the client key off disk where it can: Python's ``ssl`` loads a certificate chain
  only from a path, so on Linux the key lives in an anonymous memory file reached through
  ``/proc/self/fd``; elsewhere in a private temporary directory. Either is gone on close.
* Builds one client per collection and closes it. A cache would save one TLS handshake per
  cycle but would outlive Secret rotations and hold key material; at the operator's
  collection cadence the handshake is negligible.
* Touches no global state (``Configuration.set_default`` stays untouched), so calls from
  several executor threads at once are safe.
* Asks for gzip, reads the raw bytes and inflates them itself in small steps, so the size
  limits hold for what the body decompresses to, not for what crossed the wire.

* Hands each page to the figures (a :class:`Sink`) as it arrives and drops it, so a
  member of 5,000 nodes and 50,000 pods costs one page of objects in memory, not the
  whole lists. Nodes come first (the pods are counted against them), then pods, then,
  where discovery shows ``resource.k8s.io/v1``, DeviceClasses, ResourceSlices and
  ResourceClaims. A member that forbids the DRA lists is still collected, with a note.

Messages never contain a response body, header or secret.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import ipaddress
import json
import logging
import math
import os
import queue
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, Protocol, TypeVar

import urllib3
import urllib3.connection
from kubernetes.client import ApiClient, Configuration

from fedcompute.api.common import LabelSelector
from fedcompute.api.provider import ComputeProvider, KubeconfigSecretRef, Reason
from fedcompute.kube.host import USER_AGENT, Host, HostError
from fedcompute.kube.kubeconfigs import (
    IPNetwork,
    KubeconfigError,
    Resolver,
    SafeKubeconfig,
    load_safe_kubeconfig,
)
from fedcompute.quantities import QuantityError

log = logging.getLogger("fedcompute.members")

UNREACHABLE: Final = Reason.UNREACHABLE
UNAUTHORIZED: Final = Reason.UNAUTHORIZED
TIMEOUT: Final = Reason.TIMEOUT
FAILED: Final = Reason.COLLECTION_FAILED
"""Any other failure: an unexpected HTTP status, a response that is not a list, a limit
exceeded, or an unexpected exception (named by its type only)."""

SLOW_REASONS: Final = frozenset({Reason.TIMEOUT, Reason.UNREACHABLE})
"""Reasons of failures that may have used up the whole timeout (a member that does not
answer, or cannot be reached): a caller that limits how many slow collections run at once,
or backs off from them, tells them apart with ``error.reason in SLOW_REASONS``."""

NON_TERMINAL_PODS = "status.phase!=Succeeded,status.phase!=Failed"
PAGE_SIZE: Final = 500
"""Objects asked for per page (``limit``)."""

MAX_PAGE_BYTES: Final = 32 << 20
"""Largest response page accepted, counted after decompression.

Parsing cannot be interrupted, so one page's ``json.loads`` is the most a collection can
overrun its deadline by; it also sets the transient memory of a page. Measured on a 2-core
machine, a 64 MiB page of pods parses in about 1.9 s into about 370 MiB of objects, too much
of the default 10 s timeout; 32 MiB takes about 1 s. At :data:`PAGE_SIZE` objects a page,
32 MiB leaves 64 KiB per object, several times a large real Node or Pod."""

MAX_COLLECTION_BYTES: Final = 1 << 30
"""Largest total of all pages of one collection, after decompression, so that a member
cannot grow the operator's memory by paging (``continue``) without end."""

RESOLVER_THREADS: Final = 4
"""Threads that run host-name lookups (see :func:`deadline_resolver`)."""

_READ_CHUNK = 1 << 16
_INFLATE_STEP = 1 << 18
"""Most bytes one decompression step may produce: a gzip bomb inflates by this much at a
time, between checks of the size limits and the deadline."""

Json = dict[str, Any]
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

RESOURCE_API: Final = "/apis/resource.k8s.io/v1"
"""Dynamic Resource Allocation, GA in Kubernetes 1.34: read where the member serves it."""
DRA_LISTS: Final = (
    ("deviceclasses", f"{RESOURCE_API}/deviceclasses"),
    ("resourceslices", f"{RESOURCE_API}/resourceslices"),
    ("resourceclaims", f"{RESOURCE_API}/resourceclaims"),
)


READER_RULES: Final = (
    {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list"]},
    {
        "apiGroups": ["resource.k8s.io"],
        "resources": ["deviceclasses", "resourceslices", "resourceclaims"],
        "verbs": ["list"],
    },
)
"""Everything a collection asks of a member: the rules of the read-only ClusterRole its
kubeconfig's identity needs (``examples/member-cluster/reader-rbac.yaml``). Discovery of
``resource.k8s.io/v1`` is open to every authenticated user already."""


class Sink(Protocol[T_co]):
    """Where a collection's pages go, one at a time (nothing is held whole): the pure
    figures of :class:`fedcompute.capacity.inventory.MemberSummary`, passed in so that
    this adapter knows nothing of them."""

    def feed(self, kind: str, items: list[Json]) -> None:
        """The ``version`` answer, one page of ``nodes``, ``pods``, or a DRA list (see
        :data:`DRA_LISTS`); may raise ValueError or ArithmeticError on member data that
        cannot be used."""

    def result(self, notes: Sequence[str]) -> T_co:
        """The figures, once every page was fed; ``notes`` say what could not be read."""


class CollectionError(RuntimeError):
    """Collection from a member failed; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        """The HTTP status the member answered, when that was the failure."""


# --- the deadline -----------------------------------------------------------------------------


class _Deadline:
    """One collection's time limit, enforced on its connections as well as between steps.

    A socket timeout bounds each wait, not their sum: a server that sends one byte of its
    headers just before every read would otherwise never time out. When the time is up, a
    timer shuts down every connection opened under this deadline, which ends any wait.
    """

    def __init__(self, at: float, where: str) -> None:
        self.at = at
        self.where = where
        self.lock = threading.Lock()
        """Held while the timer shuts sockets down, and while a watched connection closes."""
        self._connections: list[_WatchedConnection] = []
        self._timer: threading.Timer | None = None
        self._closed = False

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def left(self) -> float:
        """Seconds left; raises ``Timeout`` when none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise CollectionError(TIMEOUT, f"collecting from {self.where} took longer than allowed")
        return left

    def watch(self, connection: _WatchedConnection) -> None:
        """Shut ``connection`` down when the time is up."""
        with self.lock:
            if self._closed:
                return
            self._connections.append(connection)
            if self._timer is None:
                self._timer = threading.Timer(max(0.0, self.at - time.monotonic()), self._expire)
                self._timer.daemon = True
                self._timer.start()

    def _expire(self) -> None:
        with self.lock:
            if self._closed:
                return
            for connection in self._connections:
                sock = connection.sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """The collection is over: stop the timer and forget the connections."""
        with self.lock:
            self._closed = True
            self._connections.clear()
            timer = self._timer
        if timer is not None:
            timer.cancel()


class _WatchedConnection(urllib3.connection.HTTPSConnection):
    """An HTTPS connection that its collection's :class:`_Deadline` can cut short."""

    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        self._deadline = deadline
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        # The TLS handshake that follows waits on this socket: hold it to the time left.
        sock.settimeout(max(self._deadline.at - time.monotonic(), 0.001))
        self._deadline.watch(self)
        return sock

    def close(self) -> None:
        # Never while the deadline's timer shuts sockets down, so that the timer cannot
        # reach a descriptor that was closed and reused meanwhile.
        with self._deadline.lock:
            super().close()


# --- host-name resolution ---------------------------------------------------------------------


@dataclass
class _Lookup:
    key: tuple[int, str, int]
    resolve: Resolver
    host: str
    port: int
    deadline: float
    """The latest deadline of the callers waiting for it; past it, nobody is."""
    future: Future[list[tuple[Any, ...]]]


class _Lookups:
    """Host-name lookups on a few daemon threads, so that callers can stop waiting in time.

    ``getaddrinfo`` takes no timeout and cannot be interrupted; the caller waits at most
    until its deadline and leaves the lookup behind. Lookups of one name by one resolver
    share a single call, so a name that hangs holds one thread however often it is
    collected, and a lookup still queued once every caller's deadline has passed is dropped.
    """

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._started = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Lookup] = queue.SimpleQueue()
        self._pending: dict[tuple[int, str, int], _Lookup] = {}

    def submit(
        self, resolve: Resolver, host: str, port: int, deadline: float
    ) -> Future[list[tuple[Any, ...]]]:
        key = (id(resolve), host, port)
        with self._lock:
            lookup = self._pending.get(key)
            if lookup is not None:
                lookup.deadline = max(lookup.deadline, deadline)
                return lookup.future
            lookup = _Lookup(key, resolve, host, port, deadline, Future())
            self._pending[key] = lookup
            if self._started < self._threads:
                self._started += 1
                name = f"fedcompute-resolve-{self._started}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
        self._queue.put(lookup)
        return lookup.future

    def _work(self) -> None:
        while True:
            lookup = self._queue.get()
            with self._lock:
                expired = time.monotonic() >= lookup.deadline
                if expired:
                    del self._pending[lookup.key]
            if expired or not lookup.future.set_running_or_notify_cancel():
                lookup.future.cancel()
                continue
            result: list[tuple[Any, ...]] | None = None
            error: BaseException | None = None
            try:
                result = list(lookup.resolve(lookup.host, lookup.port))
            except BaseException as exc:  # the thread must live on, whatever a resolver does
                error = exc
            with self._lock:
                del self._pending[lookup.key]
            if error is not None:
                lookup.future.set_exception(error)
            else:
                lookup.future.set_result(result or [])


_LOOKUPS = _Lookups(RESOLVER_THREADS)


def deadline_resolver(deadline: float, resolve: Resolver = socket.getaddrinfo) -> Resolver:
    """``resolve``, waited for until ``deadline`` (a :func:`time.monotonic` value) at most.

    Meant for ``load_safe_kubeconfig(resolve=...)``. The lookup runs on a small dedicated
    thread pool; when the deadline passes first, :class:`CollectionError` ``Timeout`` is
    raised and the lookup is left to finish on its own. The resolver's own errors pass
    through unchanged (an ``OSError`` makes the kubeconfig ``Unreachable``).
    """

    def bounded(host: str, port: int) -> list[tuple[Any, ...]]:
        left = deadline - time.monotonic()
        if left > 0:
            future = _LOOKUPS.submit(resolve, host, port, deadline)
            wait([future], timeout=left)
            if future.done() and not future.cancelled():
                return future.result()
        raise CollectionError(TIMEOUT, f"resolving {host!r} took longer than allowed")

    return bounded


# --- client ---------------------------------------------------------------------------------


class _ClientFiles:
    """The client certificate chain and key, readable only by this process, until closed."""

    def __init__(self, cert: bytes, key: bytes) -> None:
        self._fds: list[int] = []
        self._directory: str | None = None
        try:
            if sys.platform == "linux" and hasattr(os, "memfd_create"):
                self.cert_file = self._memory_file("client.crt", cert)
                self.key_file = self._memory_file("client.key", key)
            else:  # pragma: no cover - exercised on other platforms only
                self._directory = tempfile.mkdtemp(prefix="fedcompute-member-")
                self.cert_file = self._private_file("client.crt", cert)
                self.key_file = self._private_file("client.key", key)
        except BaseException:
            self.close()
            raise

    def _memory_file(self, name: str, data: bytes) -> str:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        self._fds.append(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return f"/proc/self/fd/{fd}"

    def _private_file(self, name: str, data: bytes) -> str:  # pragma: no cover - non-Linux
        assert self._directory is not None
        path = os.path.join(self._directory, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.pop())
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def _pinned_host(safe: SafeKubeconfig) -> str:
    address = safe.addresses[0]
    netloc = f"[{address}]" if ":" in address else address
    return f"https://{netloc}:{safe.port}{safe.path}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def build_configuration(
    safe: SafeKubeconfig, *, cert_file: str | None = None, key_file: str | None = None
) -> Configuration:
    """A client configuration for ``safe``: pinned address, its CA only, no proxy, no retry.

    ``cert_file``/``key_file`` name where the client certificate and key can be read;
    :class:`MemberClient` provides them. Nothing global is read or changed.
    """
    configuration = Configuration(
        host=_pinned_host(safe),
        ca_cert_data=safe.ca_data.decode("ascii"),
        cert_file=cert_file,
        key_file=key_file,
        verify_ssl=True,
        # A refused or timed-out attempt is reported, not retried: the caller's timer
        # runs the next collection, and retries would multiply the timeout.
        retries=False,
        connection_pool_maxsize=1,
    )
    # The setter, unlike the constructor's None, also stops reading proxies from the
    # environment; a proxy would defeat the address vetting.
    configuration.proxy = None
    configuration.no_proxy = None
    if safe.tls_server_name:
        configuration.tls_server_name = safe.tls_server_name
    elif not _is_ip(safe.host):
        configuration.tls_server_name = safe.host
    if safe.token:
        configuration.api_key = {"BearerToken": safe.token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return configuration


class MemberClient:
    """A Kubernetes API client for one member; close it (or use ``with``) when done."""

    def __init__(self, safe: SafeKubeconfig) -> None:
        self.safe = safe
        self._files: _ClientFiles | None = None
        if safe.client_cert_data is not None and safe.client_key_data is not None:
            self._files = _ClientFiles(safe.client_cert_data, safe.client_key_data)
        try:
            configuration = build_configuration(
                safe,
                cert_file=self._files.cert_file if self._files else None,
                key_file=self._files.key_file if self._files else None,
            )
            self.api: Any = ApiClient(configuration)
        except BaseException:
            self.close()
            raise
        self.api.user_agent = USER_AGENT

    def close(self) -> None:
        """Close the connections and release the key material."""
        api = getattr(self, "api", None)
        if api is not None:
            api.close()
        if self._files is not None:
            self._files.close()
            self._files = None

    def __enter__(self) -> MemberClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# --- collection -----------------------------------------------------------------------------


def _where(safe: SafeKubeconfig) -> str:
    host = f"[{safe.host}]" if ":" in safe.host else safe.host
    return f"{host}:{safe.port}"


def _status_error(status: int, where: str) -> CollectionError:
    if status in (401, 403):
        text = "rejected the credentials" if status == 401 else "denied access"
        return CollectionError(
            UNAUTHORIZED, f"the member API server at {where} {text} (HTTP {status})", status=status
        )
    return CollectionError(
        FAILED, f"the member API server at {where} answered HTTP {status}", status=status
    )


def _is_timeout(exc: BaseException) -> bool:
    """Whether ``exc``, or what it wraps, is a timeout (urllib3 nests them several ways)."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending and len(seen) < 8:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, urllib3.exceptions.NewConnectionError):
            continue  # a refused connection, though urllib3 derives it from a timeout
        if isinstance(current, TimeoutError | urllib3.exceptions.TimeoutError):
            return True
        reason = getattr(current, "reason", None)
        nested = [a for a in current.args if isinstance(a, BaseException)]
        pending.extend([current.__cause__, current.__context__, *nested])
        if isinstance(reason, BaseException):
            pending.append(reason)
    return False


def _failure(exc: BaseException, deadline: _Deadline) -> CollectionError:
    """Map a transport exception to a reason and a message free of bodies and headers."""
    where = deadline.where
    if deadline.expired or _is_timeout(exc):
        return CollectionError(TIMEOUT, f"the member API server at {where} did not answer in time")
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.SSLError | ssl.SSLError):
        return CollectionError(UNREACHABLE, f"TLS handshake with {where} failed")
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return CollectionError(UNREACHABLE, f"cannot connect to {where}")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return CollectionError(
            UNREACHABLE, f"the connection to {where} failed ({type(exc).__name__})"
        )
    return CollectionError(FAILED, f"collecting from {where} failed ({type(exc).__name__})")


@dataclass
class _Session:
    """One collection's client, its pinned connection pool, deadline and byte count."""

    client: MemberClient
    pool: Any
    deadline: _Deadline
    received: int = 0

    @property
    def where(self) -> str:
        return self.deadline.where

    def append(self, body: bytearray, data: bytes, after: str) -> None:
        """Add ``data`` to ``body`` unless a size limit would be exceeded."""
        if len(body) + len(data) > MAX_PAGE_BYTES:
            raise CollectionError(
                FAILED,
                f"a response from {self.where} exceeded {MAX_PAGE_BYTES >> 20} MiB{after}",
            )
        self.received += len(data)
        if self.received > MAX_COLLECTION_BYTES:
            raise CollectionError(
                FAILED,
                f"the responses from {self.where} exceeded {MAX_COLLECTION_BYTES >> 20} MiB "
                "in one collection",
            )
        body += data


def _gunzip() -> Any:
    return zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)


def _inflate(session: _Session, inflater: Any, data: bytes, body: bytearray) -> Any:
    """Inflate ``data`` into ``body``, at most :data:`_INFLATE_STEP` bytes per step.

    Limits and the deadline are checked between steps, so a gzip bomb stops at the limit
    having cost one step more. Returns the inflater to go on with (a new one after the end
    of a gzip member: a body may hold several, as gzip allows).
    """
    after = " after decompression"
    try:
        while True:
            out = inflater.decompress(data, _INFLATE_STEP)
            session.append(body, out, after)
            session.deadline.left()
            data = inflater.unconsumed_tail
            if inflater.eof:
                data = inflater.unused_data
                if not data:
                    return inflater
                inflater = _gunzip()
            elif not data and len(out) < _INFLATE_STEP:
                return inflater
    except zlib.error:
        raise CollectionError(
            FAILED, f"{session.where} sent a response that is not valid gzip"
        ) from None


def _read_body(session: _Session, response: Any) -> bytearray:
    """Read and decode the body in small steps, holding every wait to the time that is left."""
    encoding = str(response.headers.get("Content-Encoding", "")).strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater = _gunzip()
    elif encoding in ("", "identity"):
        inflater = None
    else:
        raise CollectionError(FAILED, f"{session.where} sent a response in an unrequested encoding")
    sock = getattr(getattr(response, "connection", None), "sock", None)
    body = bytearray()
    while True:
        left = session.deadline.left()
        if sock is not None:
            sock.settimeout(left)
        raw = response.read1(_READ_CHUNK, decode_content=False)
        if not raw:
            break
        if inflater is None:
            session.append(body, raw, "")
        else:
            inflater = _inflate(session, inflater, raw, body)
    # The deadline's timer ends a transfer by shutting the socket: that is no end of body.
    session.deadline.left()
    if inflater is not None and not inflater.eof:
        raise CollectionError(FAILED, f"{session.where} sent a truncated gzip response")
    return body


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _get_json(session: _Session, path: str, query: Sequence[tuple[str, str]]) -> Json:
    """One bounded GET; any answer but 200 with a JSON object raises CollectionError."""
    where = session.where
    method, url, headers, _, _ = session.client.api.param_serialize(
        method="GET",
        resource_path=path,
        query_params=list(query),
        header_params={"Accept": "application/json", "Accept-Encoding": "gzip"},
        auth_settings=["BearerToken"],
    )
    response = None
    try:
        left = session.deadline.left()
        response = session.pool.urlopen(
            method,
            urllib3.util.parse_url(url).request_uri,  # origin-form, as a PoolManager sends
            headers=headers,
            retries=False,
            redirect=False,
            timeout=urllib3.Timeout(connect=left, read=left),
            preload_content=False,
            decode_content=False,
        )
        if response.status != 200:
            raise _status_error(response.status, where)
        body = _read_body(session, response)
        response.release_conn()
        response = None
    except CollectionError:
        raise
    except Exception as exc:
        raise _failure(exc, session.deadline) from None
    finally:
        if response is not None:
            # Drop the connection rather than read what is left of an unwanted body.
            response.close()
    try:
        page = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise CollectionError(FAILED, f"{where} sent a response that is not JSON") from None
    del body
    session.deadline.left()  # parsing counts against the deadline too
    if not isinstance(page, dict):
        raise CollectionError(FAILED, f"{where} sent a response that is not an object")
    return page


def _get_page(session: _Session, path: str, query: Sequence[tuple[str, str]]) -> Json:
    page = _get_json(session, path, query)
    if not isinstance(page.get("items"), list) or not isinstance(page.get("metadata", {}), dict):
        raise CollectionError(FAILED, f"{session.where} sent a response that is not a list")
    return page


def _list_pages(
    session: _Session,
    path: str,
    selectors: Sequence[tuple[str, str]],
    *,
    page_size: int,
    each: Callable[[list[Json]], None],
) -> None:
    """Every page of a list, handed to ``each`` as it arrives (``managedFields`` dropped)."""
    token = ""
    while True:
        query = [("limit", str(page_size)), *selectors]
        if token:
            query.append(("continue", token))
        page = _get_page(session, path, query)
        items: list[Json] = []
        for item in page["items"]:
            if isinstance(item, dict):
                metadata = item.get("metadata")
                if isinstance(metadata, dict):
                    metadata.pop("managedFields", None)
                items.append(item)
        token = (page.get("metadata") or {}).get("continue") or ""
        del page
        each(items)
        del items
        session.deadline.left()  # the figures of a page count against the deadline too
        if not isinstance(token, str) or not token:
            return


def _serves_dra(session: _Session) -> bool:
    """Whether the member serves ``resource.k8s.io/v1`` with ResourceSlices (discovery)."""
    try:
        found = _get_json(session, RESOURCE_API, [])
    except CollectionError as exc:
        if exc.status == 404:
            return False
        raise
    resources = found.get("resources")
    return isinstance(resources, list) and any(
        isinstance(r, dict) and r.get("name") == "resourceslices" for r in resources
    )


def _collect(
    safe: SafeKubeconfig,
    *,
    node_selector: str | None,
    deadline: _Deadline,
    page_size: int,
    sink: Sink[T],
) -> T:
    deadline.where = _where(safe)
    node_query = [("labelSelector", node_selector)] if node_selector else []
    pod_query = [("fieldSelector", NON_TERMINAL_PODS)]
    notes: list[str] = []
    with MemberClient(safe) as client:
        pool = client.api.rest_client.pool_manager.connection_from_url(_pinned_host(safe))
        pool.ConnectionCls = functools.partial(_WatchedConnection, deadline=deadline)
        session = _Session(client, pool, deadline)

        def pages(kind: str) -> Callable[[list[Json]], None]:
            return lambda items: sink.feed(kind, items)

        try:
            sink.feed("version", [_get_json(session, "/version", [])])
        except CollectionError as exc:
            if exc.status is None:  # no answer at all: the lists would fare no better
                raise
        _list_pages(session, "/api/v1/nodes", node_query, page_size=page_size, each=pages("nodes"))
        _list_pages(session, "/api/v1/pods", pod_query, page_size=page_size, each=pages("pods"))
        if _serves_dra(session):
            for kind, path in DRA_LISTS:
                try:
                    _list_pages(session, path, [], page_size=page_size, each=pages(kind))
                except CollectionError as exc:
                    if exc.status not in (401, 403):
                        raise
                    notes.append(
                        f"resource.k8s.io/v1 is served but listing {kind} is forbidden "
                        f"(HTTP {exc.status}): DRA devices are not counted"
                    )
                    break
    return sink.result(notes)


class _Lists:
    """A sink that keeps whole lists (for :func:`collect_member`)."""

    def __init__(self) -> None:
        self.lists: dict[str, list[Json]] = {}

    def feed(self, kind: str, items: list[Json]) -> None:
        self.lists.setdefault(kind, []).extend(items)

    def result(self, notes: Sequence[str]) -> dict[str, list[Json]]:
        return self.lists


def collect_lists(
    safe: SafeKubeconfig,
    *,
    node_selector: str | None,
    timeout: float,
    page_size: int = PAGE_SIZE,
) -> dict[str, list[Json]]:
    """Every list a collection reads, whole, as raw JSON objects keyed by kind (``nodes``,
    ``pods`` and, where served, the DRA lists); for tests and tools, not the operator.

    Lists are paginated (``limit``/``continue``) and the whole collection, all pages of
    every list, finishes within ``timeout`` seconds or raises ``Timeout``. Objects are
    returned as the API sent them, minus ``metadata.managedFields``. Synchronous: call it
    from a thread or executor. Raises :class:`CollectionError`.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    deadline = _Deadline(time.monotonic() + timeout, _where(safe))
    try:
        return _collect(
            safe, node_selector=node_selector, deadline=deadline, page_size=page_size, sink=_Lists()
        )
    finally:
        deadline.close()


def collect_member(
    safe: SafeKubeconfig,
    *,
    node_selector: str | None,
    timeout: float,
    page_size: int = PAGE_SIZE,
) -> tuple[list[Json], list[Json]]:
    """The member's selected nodes and its non-terminal pods (see :func:`collect_lists`)."""
    lists = collect_lists(safe, node_selector=node_selector, timeout=timeout, page_size=page_size)
    return lists.get("nodes", []), lists.get("pods", [])


# --- one provider, end to end -----------------------------------------------------------------


def selector_string(selector: LabelSelector | None) -> str | None:
    """A label selector in the query-string form the API takes (``?labelSelector=``)."""
    if selector is None:
        return None
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for req in selector.match_expressions or []:
        if req.operator == "Exists":
            parts.append(req.key)
        elif req.operator == "DoesNotExist":
            parts.append(f"!{req.key}")
        else:
            op = "in" if req.operator == "In" else "notin"
            parts.append(f"{req.key} {op} ({','.join(req.values or [])})")
    return ",".join(parts) or None


def _read_kubeconfig(
    host: Host, namespace: str, ref: KubeconfigSecretRef, deadline: _Deadline
) -> str:
    """The kubeconfig text in the Secret key ``ref`` (its value is never put in a message)."""
    secret_name = f"Secret {namespace}/{ref.name}"
    try:
        secret = host.read_secret(namespace, ref.name)
    except HostError as exc:
        if exc.status == 404:
            raise CollectionError(Reason.KUBECONFIG_NOT_FOUND, f"{secret_name} not found") from None
        if exc.status in (401, 403):
            raise CollectionError(
                Reason.KUBECONFIG_NOT_FOUND,
                f"the operator may not read {secret_name} (HTTP {exc.status})",
            ) from None
        answer = f"HTTP {exc.status}" if exc.status else "no answer"
        raise CollectionError(
            UNREACHABLE, f"reading {secret_name} from the host API failed ({answer})"
        ) from None
    deadline.left()
    data = secret.get("data") if isinstance(secret, Mapping) else None
    encoded = data.get(ref.key) if isinstance(data, Mapping) else None
    if not isinstance(encoded, str) or not encoded:
        raise CollectionError(Reason.INVALID_KUBECONFIG, f"{secret_name} has no key {ref.key!r}")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CollectionError(
            Reason.INVALID_KUBECONFIG, f"{secret_name} key {ref.key!r} is not valid base64"
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CollectionError(
            Reason.INVALID_KUBECONFIG, f"{secret_name} key {ref.key!r} is not UTF-8 text"
        ) from None


class _Guarded(Generic[T]):
    """A sink whose unusable member data becomes ``InvalidInventory``, naming no secret."""

    def __init__(self, sink: Sink[T]) -> None:
        self._sink = sink

    def feed(self, kind: str, items: list[Json]) -> None:
        with self._named():
            self._sink.feed(kind, items)

    def result(self, notes: Sequence[str]) -> T:
        with self._named():
            return self._sink.result(notes)

    @staticmethod
    @contextlib.contextmanager
    def _named() -> Iterator[None]:
        try:
            yield
        except (ValueError, ArithmeticError, KeyError, TypeError) as exc:
            # QuantityError names the node or pod and the field; nothing else is shown.
            message = str(exc)
            if not isinstance(exc, QuantityError) or len(message) > 512:
                message = f"the member sent unusable data ({type(exc).__name__})"
            raise CollectionError(Reason.INVALID_INVENTORY, message) from None


def _collect_provider(
    host: Host,
    provider: ComputeProvider,
    *,
    namespace: str,
    deny_cidrs: Sequence[IPNetwork],
    deadline: _Deadline,
    resolve: Resolver,
    summarize: Sink[T],
) -> T:
    source = provider.spec.source.kubernetes
    if source is None:
        raise CollectionError(FAILED, "the provider has no member cluster to collect from")
    text = _read_kubeconfig(host, namespace, source.kubeconfig_secret_ref, deadline)
    safe = load_safe_kubeconfig(
        text, deny_cidrs=deny_cidrs, resolve=deadline_resolver(deadline.at, resolve)
    )
    del text
    deadline.left()
    figures = _collect(
        safe,
        node_selector=selector_string(source.node_selector),
        deadline=deadline,
        page_size=PAGE_SIZE,
        sink=_Guarded(summarize),
    )
    deadline.left()
    return figures


def collect_provider(
    host: Host,
    provider: ComputeProvider,
    *,
    namespace: str,
    deny_cidrs: Sequence[IPNetwork],
    timeout: float,
    summarize: Sink[T],
    resolve: Resolver | None = None,
) -> T:
    """Collect a member provider's figures within ``timeout`` seconds of this call.

    Reads the provider's kubeconfig Secret from ``namespace`` on ``host``, vets it (its
    server must resolve outside ``deny_cidrs``; ``resolve`` replaces ``getaddrinfo``, for
    tests), lists the member's selected nodes, its non-terminal pods and, where the member
    serves ``resource.k8s.io/v1``, its DeviceClasses, ResourceSlices and ResourceClaims,
    and feeds them page by page to ``summarize`` (a fresh :class:`Sink`); a ValueError or
    ArithmeticError it raises is member data that cannot be used (``InvalidInventory``).
    A member that serves DRA but forbids listing it is still collected, with a note.
    The deadline starts now, not when the call was queued. Reading the Secret is held to
    the host adapter's own timeout (the host is the operator's own, trusted API) and
    checked against the deadline once done.

    Synchronous: call it from a worker thread. Total: anything that goes wrong raises
    :class:`CollectionError` with a ``Reason``; an unexpected exception becomes
    ``CollectionFailed`` naming only its type, and is logged once.
    """
    deadline = _Deadline(time.monotonic() + timeout, "the member cluster")
    try:
        return _collect_provider(
            host,
            provider,
            namespace=namespace,
            deny_cidrs=deny_cidrs,
            deadline=deadline,
            resolve=resolve or socket.getaddrinfo,
            summarize=summarize,
        )
    except CollectionError:
        raise
    except KubeconfigError as exc:
        raise CollectionError(exc.reason, exc.message) from None
    except Exception as exc:
        # The exception's own text may quote member data or secrets: only its type is used.
        log.warning(
            "collection from provider %s failed unexpectedly (%s)",
            provider.name,
            type(exc).__name__,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        raise CollectionError(
            FAILED, f"collection failed unexpectedly ({type(exc).__name__})"
        ) from None
    finally:
        deadline.close()
