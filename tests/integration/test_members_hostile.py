"""Hostile member API servers: bombs, trickles, bad JSON, redirects and absurd quantities.

Each server here is a real TLS listener on loopback speaking just enough HTTP/1.1 to be
asked for a list; what it answers is what no honest kube-apiserver would send, which is
why it is a test double rather than a real member. Collections against it still go
through the real client, the real TLS stack and, where a Secret is involved, a real host
API server.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
import zlib
from typing import Any

import pytest
from kubernetes import client as k8s

from fedcompute.api.provider import ComputeProvider, Reason
from fedcompute.capacity import inventory
from fedcompute.capacity.providers import member_summarizer
from fedcompute.kube import kubeconfigs, members
from fedcompute.kube.host import Host
from fedcompute.kube.members import CollectionError
from fedcompute.local import cluster, pki
from tests.integration.hostile import (
    Handler,
    HostileServer,
    gzip_stream,
    head,
    read_request,
    send_once,
)

pytestmark = pytest.mark.integration


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The largest growth of this process's resident memory while the block runs."""

    def __enter__(self) -> PeakRss:
        self.base = rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base


# --- size limits hold after decompression --------------------------------------------------


def test_a_gzip_bomb_fails_fast_in_bounded_memory(hostile: HostileServer) -> None:
    first, again, count = gzip_stream(8 << 10)  # 8 GiB of blanks in about 8 MiB

    def bomb(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(head(Content_Encoding="gzip", Connection="close") + first)
        for _ in range(count):
            if stop.is_set():
                break
            conn.sendall(again)

    hostile.handler = bomb
    safe = hostile.safe()
    started = time.monotonic()
    with PeakRss() as memory, pytest.raises(CollectionError) as caught:
        members.collect_member(safe, node_selector=None, timeout=30)
    elapsed = time.monotonic() - started

    assert caught.value.reason == Reason.COLLECTION_FAILED
    limit = members.MAX_PAGE_BYTES >> 20
    assert f"exceeded {limit} MiB after decompression" in caught.value.message
    assert elapsed < 5.0
    # The page being read is the only large allocation: at most the limit, plus slack.
    assert memory.growth < 2 * members.MAX_PAGE_BYTES, f"grew {memory.growth >> 20} MiB"


def test_an_oversized_plain_response_fails_at_the_limit(hostile: HostileServer) -> None:
    def endless(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(head(Content_Length=str(1 << 40)) + b'{"items": [')
        blanks = b" " * (1 << 20)
        while not stop.is_set():
            conn.sendall(blanks)

    hostile.handler = endless
    with pytest.raises(CollectionError) as caught:
        members.collect_member(hostile.safe(), node_selector=None, timeout=30)
    assert caught.value.reason == Reason.COLLECTION_FAILED
    assert f"exceeded {members.MAX_PAGE_BYTES >> 20} MiB" in caught.value.message


BAD_BODIES: list[tuple[str, Handler, str]] = [
    (
        "NaN",
        send_once(b'{"metadata": {}, "items": [{"status": {"capacity": {"cpu": NaN}}}]}'),
        "not JSON",
    ),
    ("Infinity", send_once(b'{"metadata": {}, "items": [-Infinity]}'), "not JSON"),
    ("a number beyond a double", send_once(b'{"metadata": {}, "items": [1e400]}'), "not JSON"),
    ("deep nesting", send_once(b"[" * 200_000 + b"]" * 200_000), "not JSON"),
    ("not a list", send_once(b'{"items": {}}'), "not a list"),
    (
        "truncated gzip",
        send_once(zlib.compress(b'{"items": []}' * 100, wbits=31)[:-30], Content_Encoding="gzip"),
        "truncated gzip",
    ),
    ("garbage gzip", send_once(b"\x1f\x8b" + b"\0" * 64, Content_Encoding="gzip"), "gzip"),
    ("an encoding not asked for", send_once(b"{}", Content_Encoding="br"), "encoding"),
    (
        "a redirect to the metadata service",
        send_once(b"", "302 Found", Location="https://169.254.169.254/latest/meta-data/"),
        "HTTP 302",
    ),
]


@pytest.mark.parametrize(
    ("handler", "text"), [pytest.param(h, t, id=name) for name, h, t in BAD_BODIES]
)
def test_unusable_responses_are_collection_failed(
    hostile: HostileServer, handler: Handler, text: str
) -> None:
    hostile.handler = handler
    with pytest.raises(CollectionError) as caught:
        members.collect_member(hostile.safe(), node_selector=None, timeout=10)
    assert caught.value.reason == Reason.COLLECTION_FAILED
    assert text in caught.value.message


# --- the deadline covers the whole exchange ------------------------------------------------


def test_trickled_headers_cannot_stretch_the_deadline(hostile: HostileServer) -> None:
    """A byte of headers every 0.2 s beats any per-read timeout; the deadline still holds."""

    def trickle(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.2):
            conn.sendall(b"X")

    hostile.handler = trickle
    started = time.monotonic()
    with pytest.raises(CollectionError) as caught:
        members.collect_member(hostile.safe(), node_selector=None, timeout=1.0)
    elapsed = time.monotonic() - started
    assert caught.value.reason == Reason.TIMEOUT
    assert elapsed < 1.6


def test_a_stalled_tls_handshake_cannot_stretch_the_deadline() -> None:
    """A server that answers the TLS hello a byte at a time, never finishing it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def stall() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record that never completes
            while not stop.wait(0.2):
                conn.sendall(b"\x02")

    thread = threading.Thread(target=stall, daemon=True)
    thread.start()
    ca = pki.make_ca("stall")
    text = cluster.kubeconfig_text(
        "stall",
        f"https://127.0.0.1:{listener.getsockname()[1]}",
        ca.cert,
        pki.make_client(ca, "alice"),
        "alice",
    )
    started = time.monotonic()
    try:
        with pytest.raises(CollectionError) as caught:
            members.collect_member(
                kubeconfigs.load_safe_kubeconfig(text), node_selector=None, timeout=1.0
            )
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert caught.value.reason == Reason.TIMEOUT
    assert time.monotonic() - started < 1.6


# --- quantities no real API server will store ----------------------------------------------


def serve_lists(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Handler:
    """Answer node and pod list requests on one kept-alive connection, as an API server."""

    def handler(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        while not stop.is_set():
            line = read_request(conn)
            if not line:
                return
            items = nodes if " /api/v1/nodes" in line else pods
            body = json.dumps({"kind": "List", "metadata": {}, "items": items}).encode()
            conn.sendall(head(Content_Length=str(len(body))) + body)

    return handler


def test_an_absurd_member_quantity_is_invalid_inventory(
    hostile: HostileServer, host: cluster.Cluster
) -> None:
    # A real kube-apiserver does not store this node: asked to, it spent its whole request
    # timeout on the exponent and answered 504. So a hostile server serves it instead;
    # `1e30`, which a real one does store, is covered against a real member.
    gpu3 = {
        "metadata": {"name": "gpu-3"},
        "status": {
            "capacity": {"cpu": "8", "memory": "1e999999999"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    hostile.handler = serve_lists([gpu3], [])
    namespace = "default"
    secret = f"hostile-{os.getpid()}"
    with host.api_client() as api:
        k8s.CoreV1Api(api).create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": secret},
                "data": {"kubeconfig": base64.b64encode(hostile.kubeconfig().encode()).decode()},
            },
        )
    provider = ComputeProvider.model_validate(
        {
            "metadata": {"name": "hostile"},
            "spec": {
                "region": "east",
                "source": {"kubernetes": {"kubeconfigSecretRef": {"name": secret}}},
            },
        }
    )
    adapter = Host.from_kubeconfig(str(host.kubeconfig))
    try:
        started = time.monotonic()
        with pytest.raises(CollectionError) as caught:
            members.collect_provider(
                adapter,
                provider,
                namespace=namespace,
                deny_cidrs=kubeconfigs.DEFAULT_DENY,
                summarize=member_summarizer(provider),
                timeout=10,
            )
        assert time.monotonic() - started < 5
    finally:
        adapter.close()
        with host.api_client() as api:
            k8s.CoreV1Api(api).delete_namespaced_secret(secret, namespace)
    assert caught.value.reason == Reason.INVALID_INVENTORY
    assert caught.value.message.startswith("node gpu-3 status.capacity[memory]: '1e999999999'")

    # The same list, read without summing, is returned as sent: only the figures refuse it.
    nodes, _ = members.collect_member(hostile.safe(), node_selector=None, timeout=10)
    assert nodes == [gpu3]
    with pytest.raises(ValueError):
        inventory.summarize_member(
            nodes, [], accelerator_model_label="m", accelerator_resources=["g"], reserved={}
        )
