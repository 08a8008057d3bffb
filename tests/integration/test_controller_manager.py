"""kube-controller-manager in the local harness, judged by what its two controllers do:
the node lifecycle controller turns a Node whose Lease goes unrenewed Ready=Unknown and
taints it unreachable after the grace period, while a renewed one stays Ready; the
garbage collector deletes dependents of deleted owners; and the process lives and dies
with its cluster."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fedcompute.local import binaries, cluster, paths, processes
from tests.conftest import CONTROLLER_MANAGER_GRACE_PERIOD, PREFIX, require_tool, start_cluster

pytestmark = pytest.mark.integration

UNREACHABLE = "node.kubernetes.io/unreachable"
LEASES = "kube-node-lease"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"


def _seconds(c: cluster.Cluster, key: str) -> float:
    manager = c.controller_manager
    assert manager is not None
    return cluster.duration_seconds(manager[key])


def _micro_time(at: float) -> str:
    stamp = datetime.datetime.fromtimestamp(at, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> float:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _node_body(name: str, zone: str, at: float) -> dict[str, Any]:
    """A Node as a kubelet registers it: Ready, heartbeating through its Lease only.
    Its own zone keeps the controller's zone-disruption logic out of other tests' way."""
    stamp = _micro_time(at).split(".")[0] + "Z"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, ZONE_LABEL: zone, REGION_LABEL: zone},
        },
        "spec": {},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "10"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "10"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
        },
    }


def _lease_body(node: client.V1Node, at: float) -> dict[str, Any]:
    name = node.metadata.name
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": LEASES,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.metadata.uid}
            ],
        },
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _micro_time(at)},
    }


def _ready(node: client.V1Node) -> client.V1NodeCondition:
    found = [c for c in node.status.conditions or [] if c.type == "Ready"]
    assert found, node.status
    return found[0]


def _unreachable_effects(node: client.V1Node) -> set[str]:
    return {t.effect for t in node.spec.taints or [] if t.key == UNREACHABLE}


def _delete_quietly(delete: Callable[..., object], *args: str) -> None:
    try:
        delete(*args)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def api(host_with_controller_manager: cluster.Cluster) -> Iterator[client.ApiClient]:
    with host_with_controller_manager.api_client() as api_client:
        yield api_client


def test_spec_records_the_controller_manager(host_with_controller_manager: cluster.Cluster) -> None:
    c = host_with_controller_manager
    manager = c.controller_manager
    assert manager is not None
    assert manager["controllers"] == ["nodelifecycle", "garbagecollector"]
    assert manager == c.spec["controllerManager"]
    assert manager["nodeMonitorGracePeriod"] == CONTROLLER_MANAGER_GRACE_PERIOD
    assert manager["nodeMonitorPeriod"] == "5s"
    assert manager["user"] == "system:kube-controller-manager"
    pki = c.directory / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    port = c.spec["ports"]["controller_manager"]
    url = f"https://127.0.0.1:{port}/healthz?verbose"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
        body = r.read().decode()
    assert "[+]node-lifecycle-controller ok" in body
    assert "[+]garbage-collector-controller ok" in body
    args = processes.cmdline(c.state()["children"]["kube-controller-manager"])
    assert "--controllers=nodelifecycle,garbagecollector" in args
    assert "--leader-elect=false" in args
    assert f"--node-monitor-grace-period={manager['nodeMonitorGracePeriod']}" in args


def test_stale_lease_turns_node_unknown_and_tainted_after_the_grace_period(
    host_with_controller_manager: cluster.Cluster, api: client.ApiClient
) -> None:
    c = host_with_controller_manager
    grace = _seconds(c, "nodeMonitorGracePeriod")
    period = _seconds(c, "nodeMonitorPeriod")
    renew_every = min(10.0, grace / 4)
    core = client.CoreV1Api(api)
    coordination = client.CoordinationV1Api(api)
    zone = f"{PREFIX}-lease-{int(time.time())}"
    fresh, stale = f"{zone}-fresh", f"{zone}-stale"
    kwok_nodes = c.add_nodes(1, labels={"fedcompute.test/zone": zone}) if c.has_kwok else []
    try:
        created = time.time()
        for name in (fresh, stale):
            node = core.create_node(_node_body(name, zone, created))
            coordination.create_namespaced_lease(LEASES, _lease_body(node, created))
        renewed = created
        unknown_at: float | None = None
        tainted_at: float | None = None
        # Past the stale Node's turn, keep renewing and watching the fresh one for one more
        # monitor period: the controller has looked at it since, and left it Ready.
        deadline = created + grace + 3 * period + 30
        while time.time() < deadline:
            now = time.time()
            if now - renewed >= renew_every:
                coordination.patch_namespaced_lease(
                    fresh, LEASES, {"spec": {"renewTime": _micro_time(now)}}
                )
                renewed = now
            healthy = core.read_node(fresh)
            assert _ready(healthy).status == "True", _ready(healthy)
            assert not _unreachable_effects(healthy), healthy.spec.taints
            for name in kwok_nodes:
                assert _ready(core.read_node(name)).status == "True", name
            gone = core.read_node(stale)
            if unknown_at is None and _ready(gone).status == "Unknown":
                unknown_at = time.time()
            both = _unreachable_effects(gone) == {"NoSchedule", "NoExecute"}
            if tainted_at is None and unknown_at is not None and both:
                tainted_at = time.time()
            if tainted_at is not None and time.time() > tainted_at + period + 1:
                break
            time.sleep(0.5)
        assert unknown_at is not None, f"{stale} still {_ready(gone)} after {grace:.0f}s grace"
        assert tainted_at is not None, f"{stale} is Unknown but tainted {gone.spec.taints}"
        condition = _ready(gone)
        assert (condition.status, condition.reason) == ("Unknown", "NodeStatusUnknown")
        assert condition.message == "Kubelet stopped posting node status."
        # Never before the grace period after the last renewal (timestamps are whole
        # seconds, truncated); at the latest one monitor period to notice the Lease, the
        # grace period, one monitor period to notice its expiry, plus scheduling slack.
        waited = unknown_at - created
        assert waited >= grace, waited
        assert _parse_time(condition.last_transition_time) >= created + grace - 1
        assert waited <= grace + 2 * period + 10, waited
        # Both taints follow at once (the NoExecute one is rate-limited per zone, 0.1/s).
        assert tainted_at - unknown_at <= period + 5, tainted_at - unknown_at
    finally:
        for name in (fresh, stale):
            _delete_quietly(coordination.delete_namespaced_lease, name, LEASES)
            _delete_quietly(core.delete_node, name)
        if kwok_nodes:
            c.remove_nodes(kwok_nodes)


def _wait_gone(read: Callable[[], object], timeout: float) -> float:
    """Seconds until ``read`` answers 404; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return time.monotonic() - start
            raise
        time.sleep(0.3)
    pytest.fail(f"still there after {timeout:.0f}s: the garbage collector did not act")


def _dependent(name: str, owner: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "data": {"k": "v"},
    }


def test_garbage_collector_deletes_dependents_of_a_deleted_configmap(
    api: client.ApiClient,
) -> None:
    core = client.CoreV1Api(api)
    ns = "default"
    stamp = int(time.time())
    owner = core.create_namespaced_config_map(
        ns, {"metadata": {"name": f"gc-owner-{stamp}"}, "data": {"k": "v"}}
    )
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name}
    ref["uid"] = owner.metadata.uid
    dependent = f"gc-dependent-{stamp}"
    core.create_namespaced_config_map(ns, _dependent(dependent, ref))
    core.delete_namespaced_config_map(owner.metadata.name, ns)
    _wait_gone(lambda: core.read_namespaced_config_map(dependent, ns), timeout=60)


def test_garbage_collector_finishes_foreground_deletion_of_a_custom_object(
    host_with_controller_manager: cluster.Cluster, api: client.ApiClient
) -> None:
    """Foreground deletion waits on the collector twice: it deletes the dependent, then
    removes the owner's foregroundDeletion finalizer. Without it the owner never goes."""
    c = host_with_controller_manager
    group, plural = "gc.throwaway.example.com", "owners"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "owner", "kind": "Owner"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    c.kubectl("apply", "-f", "-", input=json.dumps(crd))
    c.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.{group}")
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    ns = "default"
    stamp = int(time.time())
    name = f"owner-{stamp}"
    owner = custom.create_namespaced_custom_object(
        group,
        "v1",
        ns,
        plural,
        {"apiVersion": f"{group}/v1", "kind": "Owner", "metadata": {"name": name}},
    )
    ref = {
        "apiVersion": f"{group}/v1",
        "kind": "Owner",
        "name": name,
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    dependent = f"owned-by-{name}"
    core.create_namespaced_config_map(ns, _dependent(dependent, ref))
    custom.delete_namespaced_custom_object(
        group, "v1", ns, plural, name, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    pending = custom.get_namespaced_custom_object(group, "v1", ns, plural, name)
    assert "foregroundDeletion" in pending["metadata"]["finalizers"]
    # The collector learns new resources by discovery every 30 s; allow two rounds.
    _wait_gone(lambda: core.read_namespaced_config_map(dependent, ns), timeout=90)
    _wait_gone(lambda: custom.get_namespaced_custom_object(group, "v1", ns, plural, name), 30)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_cli_up_with_controller_manager_then_down_leaves_no_process() -> None:
    require_tool("kube-controller-manager", binaries.kube_controller_manager)
    name = f"{PREFIX}-kcm-cli"
    exe = [sys.executable, "-m", "fedcompute"]
    up = [*exe, "local", "up", name, "--controller-manager", "--node-monitor-grace-period=30s"]
    subprocess.run(up, capture_output=True, text=True, check=True)
    try:
        c = cluster.get(name)
        assert c.controller_manager is not None
        assert c.controller_manager["nodeMonitorGracePeriod"] == "30s"
        listing = subprocess.run(
            [*exe, "local", "list", "-o", "json"], capture_output=True, text=True, check=True
        )
        mine = [x for x in json.loads(listing.stdout) if x["name"] == name]
        assert mine[0]["controllerManager"]["nodeMonitorGracePeriod"] == "30s"
        st = c.state()
        pids = [st["supervisor_pid"], *st["children"].values()]
        assert "kube-controller-manager" in st["children"]
        assert all(processes.is_ours(p, str(c.directory)) for p in pids)
        ports = list(c.spec["ports"].values())
        assert _port_open(c.spec["ports"]["controller_manager"])
    finally:
        subprocess.run([*exe, "local", "down", name], capture_output=True, check=True)
    assert not any(processes.cmdline(p) for p in pids)
    assert not any(_port_open(p) for p in ports)
    assert processes.pids_with_marker(str(c.directory)) == []


def test_controller_manager_dies_with_a_killed_supervisor() -> None:
    require_tool("kube-controller-manager", binaries.kube_controller_manager)
    c = start_cluster("kcm-orphan", controller_manager=True, with_kwok=False)
    try:
        manager = c.state()["children"]["kube-controller-manager"]
        os.kill(c.state()["supervisor_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while processes.cmdline(manager) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not processes.cmdline(manager), "kube-controller-manager outlived its supervisor"
    finally:
        cluster.down(c.name)
    assert processes.pids_with_marker(str(c.directory)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"node_monitor_grace_period": "20s"}, "needs the controller manager"),
        ({"controller_manager": True, "node_monitor_grace_period": "20"}, "not a duration"),
        ({"controller_manager": True, "node_monitor_grace_period": "0s"}, "must be positive"),
    ],
)
def test_bad_controller_manager_requests_are_refused_before_anything_starts(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(cluster.ClusterError, match=message):
        cluster.up(f"{PREFIX}-never", **kwargs)
    assert not (paths.clusters_root() / f"{PREFIX}-never").exists()


def test_a_running_cluster_is_not_handed_back_with_another_grace_period(
    host_with_controller_manager: cluster.Cluster,
) -> None:
    c = host_with_controller_manager
    with pytest.raises(cluster.ClusterError, match="stop it first"):
        cluster.up(c.name, controller_manager=True, node_monitor_grace_period="7s")
    assert cluster.up(c.name) == c
