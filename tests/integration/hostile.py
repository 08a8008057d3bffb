"""Hostile member API servers for tests: real TLS listeners that answer what no
honest kube-apiserver would send (bombs, trickles, absurd quantities).

They are test doubles of a *broken or hostile* member, which no real apiserver can be
made to play; collections against them still go through the real client and TLS stack.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcompute.kube import kubeconfigs
from fedcompute.local import cluster, pki

# A handler answers one accepted TLS connection; ``stop`` is set when the test ends.
Handler = Callable[[ssl.SSLSocket, threading.Event], None]


@dataclass
class HostileServer:
    """An HTTPS server on 127.0.0.1 whose every connection is answered by ``handler``."""

    port: int
    ca: pki.KeyPair
    handler: Handler | None = None

    def kubeconfig(self) -> str:
        user = pki.make_client(pki.make_ca("client"), "alice")
        server = f"https://127.0.0.1:{self.port}"
        return cluster.kubeconfig_text("hostile", server, self.ca.cert, user, "alice")

    def safe(self) -> kubeconfigs.SafeKubeconfig:
        return kubeconfigs.load_safe_kubeconfig(self.kubeconfig())


def start_hostile(tmp_path: Path) -> Iterator[HostileServer]:
    """Serve on loopback until the generator is closed (behind the ``hostile`` fixture)."""
    ca = pki.make_ca("hostile")
    serving = pki.make_serving(ca, ("127.0.0.1",))
    (tmp_path / "tls.crt").write_bytes(serving.cert)
    (tmp_path / "tls.key").write_bytes(serving.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    server = HostileServer(listener.getsockname()[1], ca)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def answer(raw: socket.socket) -> None:
        with raw:
            try:
                raw.settimeout(30)
                conn = context.wrap_socket(raw, server_side=True)
                assert server.handler is not None
                server.handler(conn, stop)
            except (OSError, ValueError):
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                continue
            thread = threading.Thread(target=answer, args=(raw,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield server
    stop.set()
    acceptor.join()
    for thread in threads:
        thread.join(5)
    listener.close()


def read_request(conn: ssl.SSLSocket) -> str:
    """The request line of the next request on ``conn`` ("" once the client is gone)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return ""
        data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def gzip_stream(decompressed_mib: int) -> tuple[bytes, bytes, int]:
    """A gzip stream of blanks: its first part, a part repeated to reach the size, the count.

    After a full flush the compressor starts afresh, so every further MiB of input
    compresses to the same ~1 KiB: a server can send gigabytes' worth at no cost.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    mib = b" " * (1 << 20)
    first = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first, again, decompressed_mib - 1


def send_once(body: bytes, status: str = "200 OK", **headers: str) -> Handler:
    def handler(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        read_request(conn)
        extra = {"Content_Length": str(len(body)), "Connection": "close", **headers}
        conn.sendall(head(status, **extra) + body)

    return handler


def serve_lists(nodes: list[Any], pods: list[Any] | None = None) -> Handler:
    """Answer node and pod list requests (keep-alive) with these items, one page each."""

    def handler(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        while not stop.is_set():
            line = read_request(conn)
            if not line:
                return
            items = nodes if "/nodes" in line else (pods or [])
            body = json.dumps({"kind": "List", "metadata": {}, "items": items}).encode()
            conn.sendall(head(Content_Length=str(len(body))) + body)

    return handler


class SilentListener:
    """TCP listeners that accept and never answer (not even the TLS handshake)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()
