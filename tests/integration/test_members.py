"""Collecting from real member clusters: figures, pagination, pinning and failure reasons."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from fedcompute import quantities
from fedcompute.capacity import inventory
from fedcompute.kube import kubeconfigs, members
from fedcompute.kube.members import CollectionError
from fedcompute.local import cluster, pki

pytestmark = pytest.mark.integration

GPU = cluster.GPU_RESOURCE
MODEL_LABEL = cluster.GPU_PRODUCT_LABEL
A100 = "NVIDIA-A100-SXM4-80GB"
H100 = "NVIDIA-H100-80GB-HBM3"
NAMESPACE = "default"

MemberFactory = Callable[..., cluster.Cluster]


# --- helpers -------------------------------------------------------------------------------


def load(
    text: str, resolve: kubeconfigs.Resolver = socket.getaddrinfo
) -> kubeconfigs.SafeKubeconfig:
    return kubeconfigs.load_safe_kubeconfig(text, resolve=resolve)


def edit(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    doc = yaml.safe_load(text)
    change(doc)
    return yaml.safe_dump(doc)


def resolve_to(address: str) -> kubeconfigs.Resolver:
    def resolve(host: str, port: int) -> Iterable[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def collect(
    safe: kubeconfigs.SafeKubeconfig,
    *,
    node_selector: str | None = None,
    timeout: float = 30.0,
    page_size: int = 500,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return members.collect_member(
        safe, node_selector=node_selector, timeout=timeout, page_size=page_size
    )


def container(name: str, requests: dict[str, str], *, sidecar: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": "busybox", "resources": {"requests": requests}}
    if GPU in requests:
        body["resources"]["limits"] = {GPU: requests[GPU]}
    if sidecar:
        body["restartPolicy"] = "Always"
    return body


def create_pod(
    api: Any,
    name: str,
    node: str | None,
    containers: list[dict[str, Any]],
    init: list[dict[str, Any]] | None = None,
) -> None:
    spec: dict[str, Any] = {"containers": containers}
    if init:
        spec["initContainers"] = init
    if node:
        spec["nodeName"] = node
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    k8s.CoreV1Api(api).create_namespaced_pod(NAMESPACE, body)


# --- ground truth --------------------------------------------------------------------------


def test_collected_figures_match_ground_truth(member_cluster: MemberFactory) -> None:
    member = member_cluster("truth", nodes=4, node_gpus=8, gpu_model=A100)
    gpu_nodes = member.node_names()
    cpu_only = member.add_nodes(1, cluster.NodeShape(cpu="16", memory="64Gi"))[0]
    h100 = member.add_nodes(1, cluster.NodeShape(cpu="64", memory="512Gi", gpus=4, gpu_model=H100))[
        0
    ]
    member.kubectl("cordon", gpu_nodes[3])
    ghost = "truth-ghost"  # not managed by kwok: never Ready
    ghost_capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", GPU: "8"}

    # What the nodes are, written down independently of the code under test:
    # name -> (capacity, model, counted toward allocatable)
    a100 = {"cpu": "32", "memory": "256Gi", "pods": "110", GPU: "8"}
    truth_nodes: dict[str, tuple[dict[str, str], str | None, bool]] = {
        gpu_nodes[0]: (a100, A100, True),
        gpu_nodes[1]: (a100, A100, True),
        gpu_nodes[2]: (a100, A100, True),
        gpu_nodes[3]: (a100, A100, False),  # cordoned
        cpu_only: ({"cpu": "16", "memory": "64Gi", "pods": "110"}, None, True),
        h100: ({"cpu": "64", "memory": "512Gi", "pods": "110", GPU: "4"}, H100, True),
        ghost: (ghost_capacity, A100, False),  # not Ready
    }

    with member.api_client() as api:
        core = k8s.CoreV1Api(api)
        core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": ghost, "labels": {MODEL_LABEL: A100}},
                "status": {"capacity": ghost_capacity, "allocatable": ghost_capacity},
            }
        )
        # name -> (node, effective requests worked out by hand)
        truth_pods: dict[str, tuple[str | None, dict[str, str]]] = {}

        create_pod(
            api, "train", gpu_nodes[0], [container("m", {"cpu": "2", "memory": "8Gi", GPU: "4"})]
        )
        truth_pods["train"] = (gpu_nodes[0], {"cpu": "2", "memory": "8Gi", GPU: "4"})

        # A regular init container larger than the containers: its request wins.
        create_pod(
            api,
            "migrate",
            gpu_nodes[0],
            [container("m", {"cpu": "1", "memory": "1Gi"})],
            init=[container("i", {"cpu": "6", "memory": "512Mi"})],
        )
        truth_pods["migrate"] = (gpu_nodes[0], {"cpu": "6", "memory": "1Gi"})

        # A sidecar adds to the containers.
        create_pod(
            api,
            "serve",
            gpu_nodes[1],
            [container("m", {"cpu": "1", "memory": "1Gi", GPU: "2"})],
            init=[container("proxy", {"cpu": "500m", "memory": "1Gi"}, sidecar=True)],
        )
        truth_pods["serve"] = (gpu_nodes[1], {"cpu": "1500m", "memory": "2Gi", GPU: "2"})

        create_pod(api, "hpc", h100, [container("m", {"cpu": "60", GPU: "4"})])
        truth_pods["hpc"] = (h100, {"cpu": "60", GPU: "4"})

        create_pod(api, "etl", cpu_only, [container("m", {"cpu": "4", "memory": "16Gi"})])
        truth_pods["etl"] = (cpu_only, {"cpu": "4", "memory": "16Gi"})

        # Not counted: on the cordoned node, on the ghost node, unbound, finished.
        create_pod(api, "cordoned", gpu_nodes[3], [container("m", {"cpu": "3", GPU: "8"})])
        truth_pods["cordoned"] = (gpu_nodes[3], {"cpu": "3", GPU: "8"})
        create_pod(api, "stranded", ghost, [container("m", {"cpu": "1", GPU: "1"})])
        truth_pods["stranded"] = (ghost, {"cpu": "1", GPU: "1"})
        create_pod(api, "pending", None, [container("m", {"cpu": "5"})])
        truth_pods["pending"] = (None, {"cpu": "5"})
        create_pod(api, "done", ghost, [container("m", {"cpu": "7"})])
        core.patch_namespaced_pod_status("done", NAMESPACE, {"status": {"phase": "Succeeded"}})

    reserved = {"cpu": Decimal(10), GPU: Decimal(1)}
    safe = load(member.kubeconfig.read_text())
    nodes, pods = collect(safe)
    summary = inventory.summarize_member(
        nodes,
        pods,
        accelerator_model_label=MODEL_LABEL,
        accelerator_resources=[GPU],
        reserved=reserved,
    )

    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(truth_nodes)
    assert sorted(p["metadata"]["name"] for p in pods) == sorted(truth_pods), "done is terminal"
    assert all("managedFields" not in p["metadata"] for p in pods)

    def total(maps: Iterable[dict[str, str]]) -> dict[str, Decimal]:
        sums: dict[str, Decimal] = {}
        for m in maps:
            for k, v in m.items():
                sums[k] = sums.get(k, Decimal(0)) + quantities.parse(v)
        return sums

    counted = {name for name, (_, _, ok) in truth_nodes.items() if ok}
    capacity = total(cap for cap, _, _ in truth_nodes.values())
    allocatable = total(truth_nodes[name][0] for name in counted)
    allocated = total(req for node, req in truth_pods.values() if node in counted)
    # Each bound, non-terminal pod on a counted node takes one of the node's "pods", as
    # the scheduler counts it.
    allocated["pods"] = Decimal(sum(1 for node, _ in truth_pods.values() if node in counted))
    available = {
        k: max(Decimal(0), v - allocated.get(k, Decimal(0)) - reserved.get(k, Decimal(0)))
        for k, v in allocatable.items()
    }
    assert summary.capacity == capacity
    assert summary.allocatable == allocatable
    assert summary.allocated == allocated
    assert summary.available == available
    assert (summary.nodes_total, summary.nodes_ready, summary.nodes_counted) == (7, 6, 5)

    # A100: 4 kwok nodes + the ghost hold 40 devices; 3 counted nodes, 24 devices, 6 in use,
    # and the one reserved GPU comes off the first model by name, so the models' available
    # devices add up to the resource's. Free per counted node: 8-4, 8-2, 8 (slots count
    # whole jobs per node and ignore the reservation, which is tied to no node).
    # H100: 1 node, 4 devices, all in use.
    assert summary.accelerators == (
        inventory.AcceleratorInventory(
            A100,
            GPU,
            nodes=5,
            capacity=40,
            allocatable=24,
            allocated=6,
            available=24 - 6 - 1,
            vendor="NVIDIA",
            resource_names=(GPU,),
            slots={"1": 4 + 6 + 8, "2": 2 + 3 + 4, "4": 1 + 1 + 2, "8": 1, "16": 0},
        ),
        inventory.AcceleratorInventory(
            H100,
            GPU,
            nodes=1,
            capacity=4,
            allocatable=4,
            allocated=4,
            available=0,
            vendor="NVIDIA",
            resource_names=(GPU,),
            slots={"1": 0, "2": 0, "4": 0, "8": 0, "16": 0},
        ),
    )
    assert sum(a.available for a in summary.accelerators) == summary.available[GPU]


# --- pagination and selection --------------------------------------------------------------


def test_pagination_and_node_selection(
    member_cluster: MemberFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = member_cluster("pages", nodes=5)
    names = member.node_names()
    member.kubectl("label", "node", *names[:3], "fedcompute.io/pool=a")
    with member.api_client() as api:
        for i, name in enumerate(names):
            create_pod(api, f"p{i}", name, [container("m", {"cpu": "1"})])

    pages: list[str] = []
    original = members._get_page

    def counting(session: Any, path: str, query: Any) -> Any:
        pages.append(path)
        return original(session, path, query)

    monkeypatch.setattr(members, "_get_page", counting)
    safe = load(member.kubeconfig.read_text())

    nodes, pods = collect(safe, page_size=2)
    assert sorted(n["metadata"]["name"] for n in nodes) == names
    assert sorted(p["metadata"]["name"] for p in pods) == [f"p{i}" for i in range(5)]
    assert pages.count("/api/v1/nodes") == 3
    assert pages.count("/api/v1/pods") == 3

    whole_nodes, whole_pods = collect(safe)
    assert whole_nodes == nodes
    assert whole_pods == pods

    selected, _ = collect(safe, node_selector="fedcompute.io/pool=a", page_size=2)
    assert sorted(n["metadata"]["name"] for n in selected) == names[:3]


# --- connection pinning --------------------------------------------------------------------


def test_connections_go_to_the_vetted_address(member_cluster: MemberFactory) -> None:
    member = member_cluster("pinned", nodes=1)
    text = member.kubeconfig.read_text()
    port = member.port

    # A name the system cannot resolve, vetted to 127.0.0.1: the client must not look it
    # up again, and must verify the serving certificate against the name it is told.
    def named(server_name: str | None) -> Callable[[dict[str, Any]], None]:
        def change(doc: dict[str, Any]) -> None:
            body = doc["clusters"][0]["cluster"]
            body["server"] = f"https://member.fedcompute.invalid:{port}"
            if server_name:
                body["tls-server-name"] = server_name

        return change

    safe = load(edit(text, named("localhost")), resolve_to("127.0.0.1"))
    assert safe.addresses == ("127.0.0.1",)
    nodes, _ = collect(safe)
    assert len(nodes) == 1

    # Without tls-server-name the certificate (localhost, 127.0.0.1) does not match.
    safe = load(edit(text, named(None)), resolve_to("127.0.0.1"))
    with pytest.raises(CollectionError) as caught:
        collect(safe)
    assert caught.value.reason == members.UNREACHABLE
    assert "TLS" in caught.value.message

    # A host name that the certificate covers works through the pinned address too.
    def localhost(doc: dict[str, Any]) -> None:
        doc["clusters"][0]["cluster"]["server"] = f"https://localhost:{port}"

    safe = load(edit(text, localhost), resolve_to("127.0.0.1"))
    nodes, _ = collect(safe)
    assert len(nodes) == 1


# --- failures ------------------------------------------------------------------------------


def test_transport_failures_are_unreachable(member_cluster: MemberFactory) -> None:
    member = member_cluster("unreachable")
    text = member.kubeconfig.read_text()

    other_ca = pki.make_ca("someone-else")

    def wrong_ca(doc: dict[str, Any]) -> None:
        doc["clusters"][0]["cluster"]["certificate-authority-data"] = b64(other_ca.cert)

    with pytest.raises(CollectionError) as caught:
        collect(load(edit(text, wrong_ca)))
    assert caught.value.reason == members.UNREACHABLE
    assert "TLS" in caught.value.message

    closed = cluster.free_port()

    def closed_port(doc: dict[str, Any]) -> None:
        doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{closed}"

    with pytest.raises(CollectionError) as caught:
        collect(load(edit(text, closed_port)))
    assert caught.value.reason == members.UNREACHABLE
    assert f"127.0.0.1:{closed}" in caught.value.message


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and then says nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_silent_server_times_out_within_the_deadline(silent_server: int) -> None:
    ca = pki.make_ca("silent")
    user = pki.make_client(ca, "alice")
    text = cluster.kubeconfig_text(
        "silent", f"https://127.0.0.1:{silent_server}", ca.cert, user, "alice"
    )
    started = time.monotonic()
    with pytest.raises(CollectionError) as caught:
        collect(load(text), timeout=1.0)
    elapsed = time.monotonic() - started
    assert caught.value.reason == members.TIMEOUT
    assert elapsed < 3.0


@pytest.fixture
def trickling_server(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """An HTTPS server that answers 200, then sends its body a byte at a time, late."""
    ca = pki.make_ca("trickle")
    serving = pki.make_serving(ca, ("127.0.0.1",))
    (tmp_path / "tls.crt").write_bytes(serving.cert)
    (tmp_path / "tls.key").write_bytes(serving.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                continue
            with raw:
                try:
                    conn = context.wrap_socket(raw, server_side=True)
                    conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000000\r\n\r\n{"
                    )
                    # One more byte just before the client's deadline, then silence:
                    # a per-read timeout alone would wait a whole timeout again.
                    if not stop.wait(1.2):
                        conn.sendall(b" ")
                    stop.wait()
                except OSError:
                    continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], ca.cert
    stop.set()
    thread.join()
    listener.close()


def test_a_trickling_server_cannot_stretch_the_deadline(
    trickling_server: tuple[int, bytes],
) -> None:
    port, ca_cert = trickling_server
    ca = pki.KeyPair(ca_cert, b"")
    user = pki.make_client(pki.make_ca("client"), "alice")
    text = cluster.kubeconfig_text("trickle", f"https://127.0.0.1:{port}", ca.cert, user, "a")
    started = time.monotonic()
    with pytest.raises(CollectionError) as caught:
        collect(load(text), timeout=1.5)
    elapsed = time.monotonic() - started
    assert caught.value.reason == members.TIMEOUT
    assert 1.4 < elapsed < 2.2


def test_rejected_credentials_are_unauthorized(member_cluster: MemberFactory) -> None:
    member = member_cluster("authz", nodes=1)
    text = member.kubeconfig.read_text()

    # A client certificate from a CA the member does not trust.
    stranger_ca = pki.make_ca("stranger")
    stranger = pki.make_client(stranger_ca, "mallory", ("system:masters",))

    def untrusted(doc: dict[str, Any]) -> None:
        user = doc["users"][0]["user"]
        user["client-certificate-data"] = b64(stranger.cert)
        user["client-key-data"] = b64(stranger.key)

    with pytest.raises(CollectionError) as caught:
        collect(load(edit(text, untrusted)))
    assert caught.value.reason == members.UNAUTHORIZED

    # A trusted identity without permission to list nodes.
    with pytest.raises(CollectionError) as caught:
        collect(load(member.issue_kubeconfig("nobody")))
    assert caught.value.reason == members.UNAUTHORIZED
    assert "403" in caught.value.message

    # A bearer token: a real one works, a made-up one is rejected.
    member.kubectl("create", "serviceaccount", "reader", "-n", NAMESPACE)
    member.kubectl(
        "create", "clusterrole", "fedcompute-reader", "--verb=list", "--resource=nodes,pods"
    )
    member.kubectl(
        "create",
        "clusterrolebinding",
        "fedcompute-reader",
        "--clusterrole=fedcompute-reader",
        f"--serviceaccount={NAMESPACE}:reader",
    )
    token = member.kubectl("create", "token", "reader", "-n", NAMESPACE).stdout.strip()

    def with_token(value: str) -> Callable[[dict[str, Any]], None]:
        def change(doc: dict[str, Any]) -> None:
            doc["users"][0]["user"] = {"token": value}

        return change

    nodes, _ = collect(load(edit(text, with_token(token))))
    assert len(nodes) == 1

    bogus = "bogus-" + token[-20:]
    with pytest.raises(CollectionError) as caught:
        collect(load(edit(text, with_token(bogus))))
    assert caught.value.reason == members.UNAUTHORIZED
    assert "401" in caught.value.message
    assert bogus not in caught.value.message
    assert token not in caught.value.message
