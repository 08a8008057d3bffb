"""collect_provider end to end: a real Secret on a real host, a real member, real figures.

Every failure must come back as a CollectionError with a condition reason; these tests
drive each one through real API servers where a real server can produce it.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
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
from fedcompute.api.provider import ComputeProvider, Reason
from fedcompute.capacity import inventory
from fedcompute.capacity.providers import member_summarizer
from fedcompute.kube import kubeconfigs, members
from fedcompute.kube.host import Host
from fedcompute.kube.members import CollectionError
from fedcompute.local import cluster, pki

pytestmark = pytest.mark.integration

GPU = cluster.GPU_RESOURCE
MODEL_LABEL = cluster.GPU_PRODUCT_LABEL
A100 = "NVIDIA-A100-SXM4-80GB"
TOKEN = "member-token-that-must-never-leak-0123456789abcdef"
MemberFactory = Callable[..., cluster.Cluster]


class HostSide:
    """The operator's view of the host: its adapter, and a namespace for Secrets."""

    def __init__(self, c: cluster.Cluster, namespace: str) -> None:
        self.cluster = c
        self.namespace = namespace
        self.adapter = Host.from_kubeconfig(str(c.kubeconfig))

    def put_secret(self, name: str, data: dict[str, bytes]) -> None:
        body = {
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        with self.cluster.api_client() as api:
            k8s.CoreV1Api(api).create_namespaced_secret(self.namespace, body)

    def collect(
        self,
        provider: ComputeProvider,
        *,
        timeout: float = 30.0,
        resolve: kubeconfigs.Resolver | None = None,
        adapter: Host | None = None,
    ) -> inventory.MemberInventory:
        return members.collect_provider(
            adapter or self.adapter,
            provider,
            namespace=self.namespace,
            deny_cidrs=kubeconfigs.DEFAULT_DENY,
            summarize=member_summarizer(provider),
            timeout=timeout,
            resolve=resolve,
        )


@pytest.fixture(scope="module")
def host_side(host: cluster.Cluster) -> Iterator[HostSide]:
    namespace = f"members-{os.getpid()}"
    host.kubectl("create", "namespace", namespace)
    side = HostSide(host, namespace)
    yield side
    side.adapter.close()
    host.kubectl("delete", "namespace", namespace, "--wait=false")


def provider(
    name: str,
    secret: str,
    *,
    key: str | None = None,
    selector: dict[str, str] | None = None,
    reserved: dict[str, str] | None = None,
) -> ComputeProvider:
    ref: dict[str, Any] = {"name": secret}
    if key:
        ref["key"] = key
    source: dict[str, Any] = {"kubeconfigSecretRef": ref}
    if selector:
        source["nodeSelector"] = {"matchLabels": selector}
    spec: dict[str, Any] = {"region": "east", "source": {"kubernetes": source}}
    if reserved:
        spec["reserved"] = reserved
    return ComputeProvider.model_validate({"metadata": {"name": name}, "spec": spec})


def token_kubeconfig(server: str) -> str:
    ca = pki.make_ca("elsewhere")
    doc = yaml.safe_load(
        cluster.kubeconfig_text("m", server, ca.cert, pki.make_client(ca, "alice"), "alice")
    )
    doc["users"][0]["user"] = {"token": TOKEN}
    return yaml.safe_dump(doc)


def q(values: dict[str, str | int]) -> dict[str, Decimal]:
    return {k: quantities.parse(v) for k, v in values.items()}


def create_pod(api: Any, name: str, node: str | None, requests: dict[str, str]) -> None:
    resources: dict[str, Any] = {"requests": requests}
    if GPU in requests:
        resources["limits"] = {GPU: requests[GPU]}
    spec: dict[str, Any] = {
        "containers": [{"name": "m", "image": "busybox", "resources": resources}]
    }
    if node:
        spec["nodeName"] = node
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    k8s.CoreV1Api(api).create_namespaced_pod("default", body)


# --- figures -------------------------------------------------------------------------------


def test_collected_figures_match_ground_truth(
    host_side: HostSide, member_cluster: MemberFactory
) -> None:
    member = member_cluster("prov", nodes=2, node_cpu="16", node_memory="64Gi", node_gpus=4)
    gpu_nodes = member.node_names()
    cpu_node = member.add_nodes(1, cluster.NodeShape(cpu="8", memory="32Gi"))[0]
    member.kubectl("label", "node", *gpu_nodes, "fedcompute.io/pool=gpu")
    with member.api_client() as api:
        create_pod(api, "train", gpu_nodes[0], {"cpu": "2", "memory": "4Gi", GPU: "2"})
        create_pod(api, "etl", cpu_node, {"cpu": "1", "memory": "1Gi"})
        create_pod(api, "pending", None, {"cpu": "3"})  # unbound: holds nothing yet
    # A reader identity, allowed only to list nodes and pods, as the operator should be.
    host_side.put_secret("prov-kubeconfig", {"kubeconfig": member.reader_kubeconfig().encode()})

    # Ground truth, written down from what this test created: 2 GPU nodes of 16 CPUs,
    # 64Gi and 4 A100s, one CPU node of 8 CPUs and 32Gi; kwok nodes hold 110 pods each.
    whole = host_side.collect(provider("prov", "prov-kubeconfig", reserved={"cpu": "1"}))
    capacity = q({"cpu": 40, "memory": "160Gi", GPU: 8, "pods": 330})
    allocated = q({"cpu": 3, "memory": "5Gi", GPU: 2, "pods": 2})  # two bound pods
    assert whole.capacity == capacity
    assert whole.allocatable == capacity
    assert whole.allocated == allocated
    assert whole.available == q({"cpu": 36, "memory": "155Gi", GPU: 6, "pods": 328})
    assert (whole.nodes_total, whole.nodes_ready, whole.nodes_counted) == (3, 3, 3)
    assert whole.accelerators == (
        inventory.AcceleratorInventory(
            A100,
            GPU,
            nodes=2,
            capacity=8,
            allocatable=8,
            allocated=2,
            available=6,
            vendor="NVIDIA",
            resource_names=(GPU,),
            # Free GPUs per node are 2 and 4: whole jobs of 1, 2, 4, 8, 16 GPUs that fit.
            slots={"1": 2 + 4, "2": 1 + 2, "4": 0 + 1, "8": 0, "16": 0},
        ),
    )

    # The provider's node selector picks the GPU nodes only; the CPU node's pod drops out.
    selected = host_side.collect(
        provider("prov-gpu", "prov-kubeconfig", selector={"fedcompute.io/pool": "gpu"})
    )
    assert selected.capacity == q({"cpu": 32, "memory": "128Gi", GPU: 8, "pods": 220})
    assert selected.allocated == q({"cpu": 2, "memory": "4Gi", GPU: 2, "pods": 1})
    assert selected.nodes_total == 2


def test_an_out_of_range_member_quantity_is_invalid_inventory(
    host_side: HostSide, member_cluster: MemberFactory
) -> None:
    member = member_cluster("range", nodes=1)
    # A real API server stores 1e30 (it parses arbitrary precision), but no Kubernetes
    # quantity is above 2^63-1 and the operator's arithmetic refuses it.
    with member.api_client() as api:
        k8s.CoreV1Api(api).create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "gpu-3"},
                "status": {"capacity": {"cpu": "8", "memory": "1e30"}},
            }
        )
    host_side.put_secret("range-kubeconfig", {"kubeconfig": member.reader_kubeconfig().encode()})
    with pytest.raises(CollectionError) as caught:
        host_side.collect(provider("range", "range-kubeconfig"))
    assert caught.value.reason == Reason.INVALID_INVENTORY
    assert caught.value.message.startswith("node gpu-3 status.capacity[memory]: '1e30'")


# --- the Secret ----------------------------------------------------------------------------


def test_secret_failures_on_a_real_host(host_side: HostSide, tmp_path: Path) -> None:
    def reason_of(p: ComputeProvider, adapter: Host | None = None) -> tuple[str, str]:
        with pytest.raises(CollectionError) as caught:
            host_side.collect(p, adapter=adapter)
        return caught.value.reason, caught.value.message

    reason, message = reason_of(provider("absent", "no-such-secret"))
    assert reason == Reason.KUBECONFIG_NOT_FOUND
    assert f"{host_side.namespace}/no-such-secret not found" in message

    host_side.put_secret(
        "other-key", {"config": token_kubeconfig("https://127.0.0.1:6443").encode()}
    )
    reason, message = reason_of(provider("other-key", "other-key"))
    assert reason == Reason.INVALID_KUBECONFIG
    assert "has no key 'kubeconfig'" in message

    host_side.put_secret("binary", {"kubeconfig": b"\xff\xfe\x00kube"})
    reason, message = reason_of(provider("binary", "binary"))
    assert reason == Reason.INVALID_KUBECONFIG
    assert "not UTF-8" in message
    # A value that is not base64 cannot be stored: the API server decodes data on write.
    # The unit tests cover it with a stand-in for the host.

    doc = yaml.safe_load(token_kubeconfig("https://127.0.0.1:6443"))
    doc["users"][0]["user"] = {"exec": {"command": "sh", "args": ["-c", f"echo {TOKEN}"]}}
    host_side.put_secret("exec", {"kubeconfig": yaml.safe_dump(doc).encode()})
    reason, message = reason_of(provider("exec", "exec"))
    assert reason == Reason.INSECURE_KUBECONFIG
    assert "users[0].user.exec" in message
    assert TOKEN not in message

    # An operator identity the host does not let read Secrets: 403, reported as not found.
    path = tmp_path / "nobody.kubeconfig"
    path.write_text(host_side.cluster.issue_kubeconfig("nobody"))
    nobody = Host.from_kubeconfig(str(path))
    try:
        reason, message = reason_of(provider("forbidden", "other-key"), nobody)
    finally:
        nobody.close()
    assert reason == Reason.KUBECONFIG_NOT_FOUND
    assert "may not read" in message
    assert "403" in message


# --- name resolution -----------------------------------------------------------------------


def test_a_hanging_resolver_times_out_within_the_deadline(host_side: HostSide) -> None:
    release = threading.Event()

    def hang(host: str, port: int) -> Iterable[tuple[Any, ...]]:
        release.wait(30)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    text = token_kubeconfig("https://member.fedcompute.invalid:6443")
    host_side.put_secret("hanging", {"kubeconfig": text.encode()})
    started = time.monotonic()
    try:
        with pytest.raises(CollectionError) as caught:
            host_side.collect(provider("hanging", "hanging"), timeout=1.0, resolve=hang)
    finally:
        release.set()
    elapsed = time.monotonic() - started
    assert caught.value.reason == Reason.TIMEOUT
    assert "member.fedcompute.invalid" in caught.value.message
    assert elapsed < 1.5
    assert caught.value.reason in members.SLOW_REASONS


def test_an_unexpected_exception_is_collection_failed_and_logged_once(
    host_side: HostSide, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(host: str, port: int) -> Iterable[tuple[Any, ...]]:
        raise RuntimeError(f"resolver failed holding {TOKEN}")

    text = token_kubeconfig("https://member.fedcompute.invalid:6443")
    host_side.put_secret("broken", {"kubeconfig": text.encode()})
    caplog.set_level(logging.INFO, logger="fedcompute.members")
    with pytest.raises(CollectionError) as caught:
        host_side.collect(provider("broken", "broken"), resolve=broken)
    assert caught.value.reason == Reason.COLLECTION_FAILED
    assert caught.value.message == "collection failed unexpectedly (RuntimeError)"
    records = [r for r in caplog.records if r.name == "fedcompute.members"]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "broken" in records[0].getMessage()
    assert "RuntimeError" in records[0].getMessage()
    assert TOKEN not in caplog.text
    assert caught.value.reason not in members.SLOW_REASONS
