"""Read a member cluster's nodes and pods through a client built from a vetted kubeconfig.

The client is assembled by hand from a :class:`~fedcompute.kube.kubeconfigs.SafeKubeconfig`
and never through ``kubernetes.config``, which would honour ``exec``, file paths and the
environment. What it does, and why:

* Connects to the first vetted address, not to the host name: the name was checked once,
  and resolving it again at connect time would let DNS rebinding point the operator at a
  denied address. SNI and certificate verification still use the host name (or the
  kubeconfig's ``tls-server-name``), so pinning weakens nothing.
* Trusts only the kubeconfig's CA (never the system roots), and uses no proxy, including
  ``HTTPS_PROXY`` from the environment, which the generated client would otherwise pick up.
* Keeps the client key off disk where it can: Python's ``ssl`` loads a certificate chain
  only from a path, so on Linux the key lives in an anonymous memory file reached through
  ``/proc/self/fd``; elsewhere in a private temporary directory. Either is gone on close.
* Builds one client per collection and closes it (:func:`collect_member`). A cache would
  save one TLS handshake per cycle but would outlive Secret rotations and hold key
  material; at the operator's collection cadence the handshake is negligible.
* Touches no global state (``Configuration.set_default`` stays untouched), so calls from
  several executor threads at once are safe.

Failures become :class:`CollectionError` with a condition reason and a short message that
never contains a response body, header or secret.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

import fedcompute
from fedcompute.kube.kubeconfigs import SafeKubeconfig

UNREACHABLE = "Unreachable"
UNAUTHORIZED = "Unauthorized"
TIMEOUT = "Timeout"
FAILED = "CollectionFailed"
"""Any other failure: an unexpected HTTP status, or a response that is not a list."""

NON_TERMINAL_PODS = "status.phase!=Succeeded,status.phase!=Failed"
MAX_PAGE_BYTES = 256 << 20
"""Largest response page accepted, so a hostile member cannot exhaust the operator's memory."""

_CHUNK = 1 << 16

Json = dict[str, Any]


class CollectionError(RuntimeError):
    """Collection from a member failed; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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
        self.api.user_agent = f"fedcompute/{fedcompute.__version__}"

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
            UNAUTHORIZED, f"the member API server at {where} {text} (HTTP {status})"
        )
    return CollectionError(FAILED, f"the member API server at {where} answered HTTP {status}")


def _failure(exc: BaseException, where: str) -> CollectionError:
    """Map a client or transport exception to a reason and a message free of bodies."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, ApiException):
        if not exc.status:
            # The generated client turns TLS failures into a status-less ApiException.
            return CollectionError(UNREACHABLE, f"TLS handshake with {where} failed")
        return _status_error(int(exc.status), where)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return CollectionError(UNREACHABLE, f"TLS handshake with {where} failed")
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return CollectionError(UNREACHABLE, f"cannot connect to {where}")
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return CollectionError(TIMEOUT, f"the member API server at {where} did not answer in time")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return CollectionError(
            UNREACHABLE, f"the connection to {where} failed ({type(exc).__name__})"
        )
    return CollectionError(FAILED, f"collecting from {where} failed ({type(exc).__name__})")


def _remaining(deadline: float, where: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise CollectionError(TIMEOUT, f"collecting from {where} took longer than allowed")
    return left


def _read_body(response: Any, deadline: float, where: str) -> bytes:
    """Read the body in small steps, holding every socket wait to the time that is left.

    A per-read timeout alone would let a server trickling one byte at a time hold the
    operator indefinitely; narrowing the socket's timeout before each read bounds the
    whole collection by ``deadline``.
    """
    sock = getattr(getattr(response, "connection", None), "sock", None)
    body = bytearray()
    while True:
        left = _remaining(deadline, where)
        if sock is not None:
            sock.settimeout(left)
        chunk = response.read1(_CHUNK)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_PAGE_BYTES:
            raise CollectionError(
                FAILED, f"a response from {where} exceeded {MAX_PAGE_BYTES >> 20} MiB"
            )


def _get_page(
    client: MemberClient, path: str, query: Sequence[tuple[str, str]], deadline: float
) -> Json:
    where = _where(client.safe)
    api = client.api
    method, url, headers, _, _ = api.param_serialize(
        method="GET",
        resource_path=path,
        query_params=list(query),
        header_params={"Accept": "application/json", "Accept-Encoding": "gzip"},
        auth_settings=["BearerToken"],
    )
    response = None
    finished = False
    try:
        left = _remaining(deadline, where)
        response = api.call_api(method, url, header_params=headers, _request_timeout=left)
        if response.status != 200:
            raise _status_error(response.status, where)
        body = _read_body(response.response, deadline, where)
        response.response.release_conn()
        finished = True
    except CollectionError:
        raise
    except Exception as exc:
        raise _failure(exc, where) from None
    finally:
        if response is not None and not finished:
            # Drop the connection rather than read what is left of an unwanted body.
            response.response.close()
    try:
        page = json.loads(body)
    except ValueError:
        raise CollectionError(FAILED, f"{where} sent a response that is not JSON") from None
    if (
        not isinstance(page, dict)
        or not isinstance(page.get("items"), list)
        or not isinstance(page.get("metadata", {}), dict)
    ):
        raise CollectionError(FAILED, f"{where} sent a response that is not a list")
    return page


def _list_all(
    client: MemberClient,
    path: str,
    selectors: Sequence[tuple[str, str]],
    *,
    page_size: int,
    deadline: float,
) -> list[Json]:
    items: list[Json] = []
    token = ""
    while True:
        query = [("limit", str(page_size)), *selectors]
        if token:
            query.append(("continue", token))
        page = _get_page(client, path, query, deadline)
        for item in page["items"]:
            if isinstance(item, dict):
                metadata = item.get("metadata")
                if isinstance(metadata, dict):
                    metadata.pop("managedFields", None)
                items.append(item)
        token = (page.get("metadata") or {}).get("continue") or ""
        if not isinstance(token, str) or not token:
            return items


def collect_member(
    safe: SafeKubeconfig,
    *,
    node_selector: str | None,
    timeout: float,
    page_size: int = 500,
) -> tuple[list[Json], list[Json]]:
    """The member's selected nodes and its non-terminal pods, as raw JSON objects.

    Lists are paginated (``limit``/``continue``) and the whole collection, all pages of
    both lists, finishes within ``timeout`` seconds or raises ``Timeout``. Objects are
    returned as the API sent them, minus ``metadata.managedFields``. Synchronous: call it
    from a thread or executor. Raises :class:`CollectionError`.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    deadline = time.monotonic() + timeout
    node_query = [("labelSelector", node_selector)] if node_selector else []
    pod_query = [("fieldSelector", NON_TERMINAL_PODS)]
    with MemberClient(safe) as client:
        nodes = _list_all(
            client, "/api/v1/nodes", node_query, page_size=page_size, deadline=deadline
        )
        pods = _list_all(client, "/api/v1/pods", pod_query, page_size=page_size, deadline=deadline)
    return nodes, pods
