"""The pure parts of member collection: the deadline-bound resolver, bounded gzip
inflation, and how collect_provider turns every failure into a reason.

What needs a real API server (Secrets, lists, TLS) is in tests/integration; the host
stand-in below only answers what a real host cannot be made to answer (a Secret value
that is not base64, a host API that is down).
"""

from __future__ import annotations

import base64
import gzip
import logging
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import yaml

from fedcompute.api.provider import ComputeProvider, Reason
from fedcompute.capacity.providers import member_summarizer
from fedcompute.kube import kubeconfigs, members
from fedcompute.kube.host import Host, HostError
from fedcompute.kube.members import CollectionError
from fedcompute.local import pki

CA = pki.make_ca("member-ca")
CLIENT = pki.make_client(CA, "alice")
TOKEN = "s3cret-token-that-must-never-leak-0123456789"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(server: str = "https://member.example:6443", **user: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "m",
                    "cluster": {"server": server, "certificate-authority-data": b64(CA.cert)},
                }
            ],
            "users": [{"name": "u", "user": user or {"token": TOKEN}}],
            "contexts": [{"name": "m", "context": {"cluster": "m", "user": "u"}}],
            "current-context": "m",
        }
    )


def answer(address: str) -> kubeconfigs.Resolver:
    def resolve(host: str, port: int) -> Iterable[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


class Hang:
    """A resolver that blocks until released, counting its calls."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Iterable[tuple[Any, ...]]:
        self.calls.append(host)
        self.release.wait(30)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


@pytest.fixture
def hang() -> Iterator[Hang]:
    h = Hang()
    yield h
    h.release.set()


# --- the deadline-bound resolver -----------------------------------------------------------


def test_the_resolver_answers_within_the_deadline() -> None:
    resolve = members.deadline_resolver(time.monotonic() + 5, answer("10.1.2.3"))
    assert [e[4][0] for e in resolve("member.example", 443)] == ["10.1.2.3"]


def test_the_resolvers_own_errors_pass_through() -> None:
    def missing(host: str, port: int) -> Iterable[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    resolve = members.deadline_resolver(time.monotonic() + 5, missing)
    with pytest.raises(kubeconfigs.KubeconfigError) as caught:
        kubeconfigs.load_safe_kubeconfig(kubeconfig(), resolve=resolve)
    assert caught.value.reason == kubeconfigs.UNREACHABLE


def test_a_hanging_lookup_times_out_at_the_deadline(hang: Hang) -> None:
    started = time.monotonic()
    resolve = members.deadline_resolver(started + 0.5, hang)
    with pytest.raises(CollectionError) as caught:
        kubeconfigs.load_safe_kubeconfig(kubeconfig(), resolve=resolve)
    elapsed = time.monotonic() - started
    assert caught.value.reason == Reason.TIMEOUT
    assert "member.example" in caught.value.message
    assert 0.45 < elapsed < 1.0


def test_no_lookup_is_started_once_the_deadline_has_passed(hang: Hang) -> None:
    resolve = members.deadline_resolver(time.monotonic() - 1, hang)
    with pytest.raises(CollectionError) as caught:
        resolve("member.example", 443)
    assert caught.value.reason == Reason.TIMEOUT
    assert hang.calls == []


def test_lookups_of_a_hanging_name_share_one_thread(hang: Hang) -> None:
    """However often a hanging name is collected, it holds one resolver thread."""
    errors: list[str] = []

    def collect() -> None:
        try:
            members.deadline_resolver(time.monotonic() + 0.5, hang)("stuck.example", 443)
        except CollectionError as exc:
            errors.append(exc.reason)

    threads = [threading.Thread(target=collect) for _ in range(3 * members.RESOLVER_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [Reason.TIMEOUT] * len(threads)
    assert hang.calls == ["stuck.example"]

    # Other names still resolve meanwhile: the hanging one does not starve them.
    resolve = members.deadline_resolver(time.monotonic() + 2, answer("10.0.0.9"))
    assert resolve("fine.example", 443)[0][4][0] == "10.0.0.9"


def test_a_lookup_still_queued_at_its_deadline_is_dropped() -> None:
    hangs = [Hang() for _ in range(members.RESOLVER_THREADS)]
    late = Hang()
    try:
        for i, h in enumerate(hangs):  # every resolver thread busy
            with pytest.raises(CollectionError):
                members.deadline_resolver(time.monotonic() + 0.2, h)(f"busy-{i}.example", 443)
        started = time.monotonic()
        with pytest.raises(CollectionError) as caught:
            members.deadline_resolver(time.monotonic() + 0.3, late)("queued.example", 443)
        assert caught.value.reason == Reason.TIMEOUT
        assert time.monotonic() - started < 0.8
    finally:
        for h in hangs:
            h.release.set()
    time.sleep(0.3)
    assert late.calls == [], "a lookup nobody waits for any more must not run"


# --- bounded gzip inflation ----------------------------------------------------------------


def session(timeout: float = 10.0) -> members._Session:
    deadline = members._Deadline(time.monotonic() + timeout, "127.0.0.1:6443")
    return members._Session(client=None, pool=None, deadline=deadline)  # type: ignore[arg-type]


def inflate(data: bytes, *, chunk: int = 1 << 16, timeout: float = 10.0) -> bytes:
    """Feed ``data`` in wire-sized chunks, as _read_body does."""
    s = session(timeout)
    body = bytearray()
    inflater = members._gunzip()
    for i in range(0, len(data), chunk):
        inflater = members._inflate(s, inflater, data[i : i + chunk], body)
    assert inflater.eof
    return bytes(body)


def bomb(decompressed: int) -> bytes:
    """A gzip stream of ``decompressed`` zero bytes, about a thousandth of that in size."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(decompressed >> 20)]
    parts.append(compressor.flush())
    return b"".join(parts)


def test_gzip_is_inflated_whole_and_several_members_are_joined() -> None:
    text = b'{"items": []}' * 50_000
    assert inflate(gzip.compress(text)) == text
    assert inflate(gzip.compress(text[:100]) + gzip.compress(text[100:])) == text
    assert inflate(gzip.compress(text), chunk=7) == text


def test_a_gzip_bomb_stops_at_the_page_limit() -> None:
    data = bomb(members.MAX_PAGE_BYTES * 4)
    assert len(data) < 200_000
    s = session()
    body = bytearray()
    started = time.monotonic()
    with pytest.raises(CollectionError) as caught:
        members._inflate(s, members._gunzip(), data, body)
    assert caught.value.reason == Reason.COLLECTION_FAILED
    assert f"exceeded {members.MAX_PAGE_BYTES >> 20} MiB after decompression" in str(caught.value)
    assert len(body) <= members.MAX_PAGE_BYTES
    assert time.monotonic() - started < 2.0


def test_inflation_stops_at_the_deadline() -> None:
    s = session(timeout=-1)
    with pytest.raises(CollectionError) as caught:
        members._inflate(s, members._gunzip(), bomb(4 << 20), bytearray())
    assert caught.value.reason == Reason.TIMEOUT


def test_all_pages_of_a_collection_count_toward_one_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(members, "MAX_COLLECTION_BYTES", 3 << 20)
    s = session()
    page = bytes(1 << 20)
    for _ in range(3):
        s.append(bytearray(), page, "")
    with pytest.raises(CollectionError) as caught:
        s.append(bytearray(), b"x", "")
    assert "in one collection" in str(caught.value)


def test_corrupt_gzip_is_collection_failed() -> None:
    data = gzip.compress(b"[1, 2, 3]" * 100)
    corrupt = data[:20] + bytes(b ^ 0xFF for b in data[20:40]) + data[40:]
    with pytest.raises(CollectionError) as caught:
        inflate(corrupt)
    assert caught.value.reason == Reason.COLLECTION_FAILED
    assert "not valid gzip" in str(caught.value)


# --- collect_provider: every failure is a reason --------------------------------------------


class SecretHost(Host):
    """The host's Secret API as a function: for answers no real host can be made to give."""

    def __init__(self, read: Callable[[str, str], dict[str, Any]]) -> None:
        super().__init__(api_client=None)
        self._read = read

    def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return self._read(namespace, name)


def holding(text: str | bytes, key: str = "kubeconfig") -> SecretHost:
    data = text.encode() if isinstance(text, str) else text
    return SecretHost(lambda ns, name: {"data": {key: b64(data)}})


def failing(status: int) -> SecretHost:
    def read(namespace: str, name: str) -> dict[str, Any]:
        raise HostError(status, f"HTTP {status}: secret body {TOKEN}")

    return SecretHost(read)


def provider(*, kubernetes: bool = True) -> ComputeProvider:
    source: dict[str, Any] = (
        {"kubernetes": {"kubeconfigSecretRef": {"name": "member-kubeconfig"}}}
        if kubernetes
        else {"static": {"resources": {"cpu": "1"}}}
    )
    return ComputeProvider.model_validate(
        {"metadata": {"name": "m1"}, "spec": {"region": "east", "source": source}}
    )


def collect(
    host: Host,
    p: ComputeProvider | None = None,
    *,
    resolve: kubeconfigs.Resolver | None = None,
    timeout: float = 5.0,
) -> Any:
    chosen = p or provider()
    return members.collect_provider(
        host,
        chosen,
        namespace="fedcompute-system",
        deny_cidrs=kubeconfigs.DEFAULT_DENY,
        summarize=member_summarizer(chosen),
        timeout=timeout,
        resolve=resolve or answer("127.0.0.1"),
    )


FAILURES: list[tuple[str, Callable[[], Host], str, str]] = [
    ("host API down", lambda: failing(0), Reason.UNREACHABLE, "no answer"),
    ("host API error", lambda: failing(500), Reason.UNREACHABLE, "HTTP 500"),
    ("Secret missing", lambda: failing(404), Reason.KUBECONFIG_NOT_FOUND, "not found"),
    ("Secret forbidden", lambda: failing(403), Reason.KUBECONFIG_NOT_FOUND, "may not read"),
    (
        "no data",
        lambda: SecretHost(lambda ns, n: {"metadata": {}}),
        Reason.INVALID_KUBECONFIG,
        "has no key 'kubeconfig'",
    ),
    (
        "other key",
        lambda: holding(kubeconfig(), key="config"),
        Reason.INVALID_KUBECONFIG,
        "has no key 'kubeconfig'",
    ),
    (
        "not base64",
        lambda: SecretHost(lambda ns, n: {"data": {"kubeconfig": "%%%not base64%%%"}}),
        Reason.INVALID_KUBECONFIG,
        "not valid base64",
    ),
    (
        "not a mapping",
        lambda: SecretHost(lambda ns, n: {"data": ["kubeconfig"]}),
        Reason.INVALID_KUBECONFIG,
        "has no key",
    ),
    ("not UTF-8", lambda: holding(b"\xff\xfe\x00"), Reason.INVALID_KUBECONFIG, "not UTF-8"),
    (
        "exec in the kubeconfig",
        lambda: holding(kubeconfig(exec={"command": "sh", "env": [{"value": TOKEN}]})),
        Reason.INSECURE_KUBECONFIG,
        "users[0].user.exec",
    ),
    ("not YAML", lambda: holding("clusters: [\n"), Reason.INVALID_KUBECONFIG, "YAML"),
]


@pytest.mark.parametrize(
    ("make_host", "reason", "text"),
    [pytest.param(h, r, t, id=name) for name, h, r, t in FAILURES],
)
def test_each_failure_is_a_reason(make_host: Callable[[], Host], reason: str, text: str) -> None:
    with pytest.raises(CollectionError) as caught:
        collect(make_host())
    assert caught.value.reason == reason
    assert text in caught.value.message
    assert TOKEN not in caught.value.message
    assert caught.value.__cause__ is None


def test_a_provider_without_a_member_cluster_is_collection_failed() -> None:
    with pytest.raises(CollectionError) as caught:
        collect(holding(kubeconfig()), provider(kubernetes=False))
    assert caught.value.reason == Reason.COLLECTION_FAILED


def test_an_unexpected_exception_is_collection_failed_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(host: str, port: int) -> Iterable[tuple[Any, ...]]:
        raise RuntimeError(f"resolver broke while holding {TOKEN}")

    caplog.set_level(logging.INFO, logger="fedcompute.members")
    with pytest.raises(CollectionError) as caught:
        collect(holding(kubeconfig()), resolve=broken)
    assert caught.value.reason == Reason.COLLECTION_FAILED
    assert "RuntimeError" in caught.value.message
    assert TOKEN not in caught.value.message
    assert caught.value.__cause__ is None
    records = [r for r in caplog.records if r.name == "fedcompute.members"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "m1" in records[0].getMessage()
    assert TOKEN not in caplog.text  # no traceback unless debug logging is on


def test_the_deadline_covers_reading_the_secret() -> None:
    def slow(namespace: str, name: str) -> dict[str, Any]:
        time.sleep(0.4)
        return {"data": {"kubeconfig": b64(kubeconfig().encode())}}

    with pytest.raises(CollectionError) as caught:
        collect(SecretHost(slow), timeout=0.2)
    assert caught.value.reason == Reason.TIMEOUT


def test_slow_reasons() -> None:
    assert {Reason.TIMEOUT, Reason.UNREACHABLE} == members.SLOW_REASONS


# --- the summary a collection feeds, page by page -------------------------------------------

H100 = "NVIDIA H100 80GB HBM3"
NV = "gpu.nvidia.com"


def _node(name: str, gpus: int, *, ready: bool = True, cordoned: bool = False) -> dict[str, Any]:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def _pod(node: str, gpus: int, phase: str = "Running") -> dict[str, Any]:
    requests = {"cpu": "2", "nvidia.com/gpu": str(gpus)}
    return {
        "metadata": {"name": f"p-{node}-{gpus}", "namespace": "ml"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": requests}}],
        },
        "status": {"phase": phase},
    }


def _slice(
    name: str, node: str | None, devices: list[str], *, generation: int = 1, slices: int = 1
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "driver": NV,
        "pool": {"name": node or "fabric", "generation": generation, "resourceSliceCount": slices},
        "devices": [{"name": d, "attributes": {"productName": {"string": H100}}} for d in devices],
    }
    if node is None:
        spec["allNodes"] = True
    else:
        spec["nodeName"] = node
    return {"metadata": {"name": name}, "spec": spec}


def _claim(pool: str, device: str, *, admin: bool = False) -> dict[str, Any]:
    result = {"request": "r", "driver": NV, "pool": pool, "device": device, "adminAccess": admin}
    return {"status": {"allocation": {"devices": {"results": [result]}}}}


NODES = [
    _node("g1", 8),
    _node("g2", 8),
    _node("g3", 4, ready=False),
    _node("g4", 4, cordoned=True),
    _node("d1", 3),
    _node("d2", 0),
]
PODS = [
    _pod("g1", 3),
    _pod("g1", 1, phase="Pending"),
    _pod("g2", 8),
    _pod("g2", 2, phase="Succeeded"),
    _pod("g3", 1),
    _pod("elsewhere", 1),
]


def _class(name: str, driver: str, resource: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]}
    if resource is not None:
        spec["extendedResourceName"] = resource
    return {"metadata": {"name": name}, "spec": spec}


# d1 advertises its 3 DRA devices as nvidia.com/gpu too: counted once, as DRA devices.
CLASSES = [
    _class("gpu", NV, "nvidia.com/gpu"),
    _class("other-gpu", "other.example.com", "nvidia.com/gpu"),
    _class("plain", NV, None),
]
SLICES = [
    _slice("d1-old", "d1", ["gpu-0", "gpu-1", "gpu-2", "gpu-3"], generation=1),
    _slice("d1-new-a", "d1", ["gpu-0", "gpu-1"], generation=2, slices=2),
    _slice("d1-new-b", "d1", ["gpu-2"], generation=2, slices=2),
    # Generation 5 of d2 in 2 slices, one seen: the previous complete view is kept.
    _slice("d2-a", "d2", ["gpu-0"], generation=5, slices=2),
    # Reachable from every node: a provider selecting nodes cannot claim them.
    _slice("fabric", None, ["gpu-0", "gpu-1"]),
]
CLAIMS = [_claim("d1", "gpu-0"), _claim("d1", "gpu-1", admin=True), _claim("d2", "gpu-7")]
PREVIOUS_SLICES = [_slice("d2-old", "d2", [f"gpu-{i}" for i in range(8)], generation=4)]
LISTS = {
    "nodes": NODES,
    "pods": PODS,
    "deviceclasses": CLASSES,
    "resourceslices": SLICES,
    "resourceclaims": CLAIMS,
}


def _previous(p: ComputeProvider) -> Any:
    summary = member_summarizer(p)
    summary.feed("nodes", NODES)
    summary.feed("resourceslices", PREVIOUS_SLICES)
    return summary.result([])


def _feed_in_pages(p: ComputeProvider, size: int, dra_order: tuple[str, ...]) -> Any:
    summary = member_summarizer(p, _previous(p))
    for kind in ("nodes", "pods", *dra_order):
        items = LISTS[kind]
        for start in range(0, len(items), size):
            summary.feed(kind, items[start : start + size])
    return summary.result(["a note"])


def _interleaved(p: ComputeProvider) -> Any:
    """DRA pages of different kinds taken turn about, one object a page."""
    summary = member_summarizer(p, _previous(p))
    summary.feed("nodes", NODES)
    summary.feed("pods", PODS)
    dra = ("deviceclasses", "resourceslices", "resourceclaims")
    for i in range(max(len(LISTS[k]) for k in dra)):
        for kind in dra:
            summary.feed(kind, LISTS[kind][i : i + 1])
    return summary.result(["a note"])


@pytest.mark.parametrize("selected", [False, True], ids=["whole cluster", "node selector"])
def test_pages_of_any_size_and_order_give_the_same_figures(selected: bool) -> None:
    source: dict[str, Any] = {"kubeconfigSecretRef": {"name": "member-kubeconfig"}}
    if selected:
        source["nodeSelector"] = {"matchLabels": {"pool": "gpu"}}
    p = ComputeProvider.model_validate(
        {"metadata": {"name": "m1"}, "spec": {"region": "east", "source": {"kubernetes": source}}}
    )
    whole = _feed_in_pages(p, 1000, ("deviceclasses", "resourceslices", "resourceclaims"))

    # What one page of each list gives, counted by hand. Extended resources: g1 8 (4 taken,
    # the Pending pod included), g2 8 (8 taken), g3 4 and g4 4 capacity only. DRA: d1's
    # generation 2 (3 devices, 1 allocated, the admin claim takes nothing), d2's kept
    # generation 4 (8 devices, 1 allocated) and, for the whole cluster, 2 fabric devices.
    fabric = 0 if selected else 2
    (entry,) = whole.accelerators
    assert (entry.model, entry.nodes, entry.capacity, entry.allocatable, entry.allocated) == (
        "NVIDIA-H100-80GB-HBM3",
        6,
        35 + fabric,
        27 + fabric,
        14,
    )
    # Free per node and way: g1 4, g2 0, d1 2, d2 7 (fabric devices are on no one node).
    assert entry.slots == {"1": 13, "2": 6, "4": 2, "8": 0, "16": 0}
    assert whole.allocated == {
        "cpu": Decimal(6),
        "nvidia.com/gpu": Decimal(12),
        "pods": Decimal(3),
    }
    assert whole.partial_pools == ("gpu.nvidia.com/d2",)
    assert whole.notes == ("a note",)

    orders = [
        ("deviceclasses", "resourceslices", "resourceclaims"),
        ("resourceclaims", "resourceslices", "deviceclasses"),
        ("resourceslices", "resourceclaims", "deviceclasses"),
    ]
    for size in range(1, max(len(items) for items in LISTS.values()) + 1):
        for order in orders:
            assert _feed_in_pages(p, size, order) == whole, (size, order)
    assert _interleaved(p) == whole
