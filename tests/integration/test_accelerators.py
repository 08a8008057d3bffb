"""Capacity truth for a real accelerator fleet: the real operator, real control planes.

A member control plane holds kwok nodes of three vendors and several models (labelled as
each vendor's tools label them), a node whose GPUs name no model, a cordoned node and a
NotReady one, GPU pods that kwok runs, and Dynamic Resource Allocation objects written
through the API: ResourceSlices of the NVIDIA driver (a tainted device, a device with a
partition sharing its counters, a NIC driver's devices) and ResourceClaims allocated
through the status subresource (one with adminAccess). The provider configures neither
``acceleratorResources`` nor ``acceleratorModelLabel``.

The expected figures are worked out by hand from the objects as the member serves them
back (:mod:`tests.integration.accelerator_objects`), then the world changes (pods, claims,
a pool republished at a higher generation) and the figures must follow.

The harness's kube-apiserver runs with the DRA alpha gates ``DRADeviceTaints`` and
``DRAPartitionableDevices`` (:data:`fedcompute.local.supervisor.FEATURE_GATES`): without
them v1.34 silently drops device taints and shared counters, and the tainted and
partition devices could not exist (the first test checks the member keeps them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedcompute import quantities
from fedcompute.kube.host import Host
from fedcompute.local import binaries, cluster
from tests.conftest import require_tool, start_cluster
from tests.integration import accelerator_objects as fleet_objects
from tests.integration.accelerator_objects import (
    A100,
    A100_NAME,
    H100,
    H100_NAME,
    NIC_DRIVER,
    Truth,
    allocation,
    claim,
    device,
    device_class,
    member_truth,
    node,
    pod,
    pool_accelerators,
    resource_slice,
    static_truth,
    total_power,
    total_resources,
)
from tests.integration.operator_harness import (
    REPO,
    Platform,
    condition,
    member_provider,
    region_pool,
    start_platform,
    wait_for,
)

pytestmark = pytest.mark.integration

Json = dict[str, Any]
MEMBER = "accel-member"
STATIC = "accel-static"
POOL = "accel-pool"
EAST = "accel-east"
WEST = "accel-west"
SECRET = "accel-member-kubeconfig"
READER = "fedcompute-accel-reader"

RESOURCE_API = "/apis/resource.k8s.io/v1"
SLICES = f"{RESOURCE_API}/resourceslices"
CLAIMS = f"{RESOURCE_API}/namespaces/{fleet_objects.CLAIM_NAMESPACE}/resourceclaims"
PODS = "/api/v1/namespaces/default/pods"
MERGE = "application/merge-patch+json"

# The member's nodes: kwok runs all but h100-notready, which no kubelet reports for.
NODES = (
    node("h100-a", {"nvidia.com/gpu": "8"}, {"nvidia.com/gpu.product": H100}),
    node("h100-b", {"nvidia.com/gpu": "8"}, {"nvidia.com/gpu.product": H100}),
    node("a100", {"nvidia.com/gpu": "4"}, {"nvidia.com/gpu.product": A100}),
    node(
        "ascend",
        {"huawei.com/Ascend910": "8"},
        {"huawei.com/npu.chip.name": "910B3", "accelerator": "huawei-Ascend910"},
    ),
    node("gpu-nolabel", {"nvidia.com/gpu": "2"}),
    node("h100-cordoned", {"nvidia.com/gpu": "8"}, {"nvidia.com/gpu.product": H100}, cordoned=True),
    node("h100-notready", {"nvidia.com/gpu": "8"}, {"nvidia.com/gpu.product": H100}, managed=False),
    node(
        "mi300x",
        {"amd.com/gpu": "8"},
        {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"},
        withheld={"amd.com/gpu": "7"},  # the device plugin found one GPU unhealthy
    ),
    node("dra-1", {}),
    node("dra-2", {}),
)

PODS_AT_START = (
    pod("train", "h100-a", {"cpu": "8", "nvidia.com/gpu": "3"}),
    pod("big", "h100-b", {"cpu": "32", "nvidia.com/gpu": "8"}),
    pod("a100-job", "a100", {"nvidia.com/gpu": "1"}),
    pod("npu-job", "ascend", {"huawei.com/Ascend910": "2"}),
    pod("nolabel-job", "gpu-nolabel", {"nvidia.com/gpu": "1"}),
    pod("cordoned-job", "h100-cordoned", {"nvidia.com/gpu": "2"}),
    pod("stuck", "h100-notready", {"nvidia.com/gpu": "1"}),
    pod("etl", "dra-1", {"cpu": "500m", "memory": "1Gi"}),
    pod("finished", "a100", {"nvidia.com/gpu": "2"}),  # turned Succeeded by the fixture
)

COUNTERS = {"memory": "80Gi", "multiprocessors": "132"}
SLICES_AT_START = (
    resource_slice(
        "dra-1",
        "dra-1",
        "dra-1",
        [
            device("gpu-0", H100_NAME),
            device("gpu-1", H100_NAME, taint="NoSchedule"),
            device("gpu-2", H100_NAME),
            device("gpu-3", H100_NAME, consumes={"gpu-3-counters": COUNTERS}),
            device(
                "gpu-3-mig-3g",
                H100_NAME,
                kind="mig",
                profile="3g.40gb",
                consumes={"gpu-3-counters": {"memory": "40Gi", "multiprocessors": "60"}},
            ),
        ],
        shared={"gpu-3-counters": COUNTERS},
    ),
    resource_slice(
        "dra-2-gen1",
        "dra-2",
        "dra-2",
        [device("gpu-0", H100_NAME), device("gpu-1", H100_NAME), device("gpu-a100", A100_NAME)],
    ),
    resource_slice(
        "h100-cordoned",
        "h100-cordoned",
        "h100-cordoned",
        [device("gpu-0", H100_NAME), device("gpu-1", H100_NAME)],
    ),
    # Left behind by a node that was decommissioned: its devices are nobody's.
    resource_slice(
        "decommissioned",
        "decommissioned",
        "decommissioned",
        [device("gpu-0", H100_NAME), device("gpu-1", H100_NAME)],
    ),
    resource_slice(
        "dra-1-nics",
        "dra-1",
        "dra-1-nics",
        [device("eth0", None, kind="nic"), device("eth1", None, kind="nic")],
        driver=NIC_DRIVER,
    ),
)

# (claim, node, pool, device, adminAccess)
CLAIMS_AT_START = (
    ("train-dra", "dra-1", "dra-1", "gpu-0", False),
    ("monitor", "dra-1", "dra-1", "gpu-2", True),
    ("mig-job", "dra-1", "dra-1", "gpu-3-mig-3g", False),
)


def _static_provider() -> Json:
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": STATIC},
        "spec": {
            "region": WEST,
            "source": {
                "static": {
                    "resources": {"cpu": "256", "memory": "2Ti", "nvidia.com/gpu": "16"},
                    "nodeCount": 2,
                    # GKE's spelling of the H100: reported under the catalog's name.
                    "accelerators": [
                        {"model": "nvidia-h100-80gb", "count": 16, "devicesPerNode": 8}
                    ],
                }
            },
        },
    }


def _reader_rbac() -> list[Json]:
    """What collection reads: nodes, pods and the DRA objects, nothing more."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": READER},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]},
                {
                    "apiGroups": ["resource.k8s.io"],
                    "resources": ["deviceclasses", "resourceslices", "resourceclaims"],
                    "verbs": ["get", "list"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": READER},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": READER,
            },
            "subjects": [{"kind": "User", "name": READER, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    ]


# --- the fleet -------------------------------------------------------------------------------


@dataclass
class Fleet:
    platform: Platform
    member: cluster.Cluster
    api: Host
    """The member's API, as its admin."""

    def create(self, path: str, body: Json) -> Json:
        return self.api.request("POST", path, body=body)

    def delete(self, path: str) -> None:
        self.api.request("DELETE", path, body={"gracePeriodSeconds": 0}, decode=False)

    def add_claim(self, name: str, node_name: str, pool: str, dev: str, admin: bool) -> None:
        created = self.create(CLAIMS, claim(name, admin=admin))
        created["status"] = allocation(node_name, pool, dev, admin=admin)
        self.api.request("PUT", f"{CLAIMS}/{name}/status", body=created)

    def world(self) -> tuple[list[Json], list[Json], list[Json], list[Json]]:
        """Nodes, pods, ResourceSlices and ResourceClaims as the member serves them now."""
        return (
            list(self.api.list_all("/api/v1/nodes")),
            list(self.api.list_all("/api/v1/pods")),
            list(self.api.list_all(SLICES)),
            list(self.api.list_all(f"{RESOURCE_API}/resourceclaims")),
        )

    def truth(self) -> tuple[Truth, Truth]:
        member = member_truth(*self.world())
        return member, static_truth(H100, 16, 8, "nvidia.com/gpu")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    yield from start_platform("accel", log)


@pytest.fixture(scope="module")
def member() -> Iterator[cluster.Cluster]:
    """A member control plane whose kube-apiserver keeps device taints and counters."""
    require_tool("kwok", binaries.kwok)
    c = start_cluster("accel-member", with_kwok=True)
    try:
        yield c
    finally:
        cluster.down(c.name)


@pytest.fixture(scope="module")
def fleet(platform: Platform, member: cluster.Cluster) -> Iterator[Fleet]:
    api = Host.from_kubeconfig(str(member.kubeconfig))
    f = Fleet(platform, member, api)
    member.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in _reader_rbac()))
    platform.kubeconfig_secret(SECRET, member.issue_kubeconfig(READER))

    for body in NODES:
        f.create("/api/v1/nodes", body)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    api.request(
        "PATCH",
        "/api/v1/nodes/h100-notready/status",
        body={
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "KubeletNotReady",
                        "message": "container runtime is down",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ]
            }
        },
        content_type=MERGE,
    )
    f.create(
        "/api/v1/namespaces",
        {
            "metadata": {
                "name": fleet_objects.CLAIM_NAMESPACE,
                "labels": {"resource.kubernetes.io/admin-access": "true"},
            }
        },
    )
    f.create(f"{RESOURCE_API}/deviceclasses", device_class())
    for body in SLICES_AT_START:
        f.create(SLICES, body)
    for args in CLAIMS_AT_START:
        f.add_claim(*args)
    for body in PODS_AT_START:
        f.create(PODS, body)

    managed = {n["metadata"]["name"] for n in NODES if n["metadata"]["annotations"]}
    wait_for(
        "kwok runs the pods of its nodes",
        lambda: all(
            p["status"].get("phase") == "Running"
            for p in api.list_all(PODS)
            if p["spec"]["nodeName"] in managed
        ),
        timeout=60,
    )
    finished = api.request("GET", f"{PODS}/finished")
    finished["status"]["phase"] = "Succeeded"  # the job is done: its GPUs are free again
    finished["status"]["containerStatuses"] = [
        {
            "name": "main",
            "image": "trainer:1",
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": now,
                    "finishedAt": now,
                }
            },
        }
    ]
    api.request("PUT", f"{PODS}/finished/status", body=finished)
    platform.apply(
        region_pool(POOL, regions=[EAST, WEST]),
        member_provider(MEMBER, EAST, SECRET, interval="5s", timeout="4s", stale_after="15s"),
        _static_provider(),
    )
    yield f
    api.close()


@pytest.fixture(autouse=True)
def _show_operator_log_on_failure(
    request: pytest.FixtureRequest, platform: Platform
) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log:\n{platform.log_tail()}")


# --- what the operator says, and what it should say ----------------------------------------


def _power(value: Json | None) -> dict[str, Decimal]:
    return {k: quantities.parse(v) for k, v in (value or {}).items()}


FIGURES = ("capacity", "allocatable", "allocated", "available")


def _resources(status: Json) -> dict[str, dict[str, Decimal]]:
    """The accelerator resources' entries of the four resource maps."""
    return {
        figure: {
            r: quantities.parse(v)
            for r, v in (status.get(figure) or {}).items()
            if r in fleet_objects.EXTENDED
        }
        for figure in FIGURES
    }


def _provider_view(obj: Json | None) -> Json:
    status = (obj or {}).get("status") or {}
    return {
        "ready": condition(obj, "Ready").get("status"),
        "collected": condition(obj, "Collected").get("reason"),
        "nodes": status.get("nodes"),
        "resources": _resources(status),
        "accelerators": {e["model"]: e for e in status.get("accelerators") or []},
        "acceleratorCount": status.get("acceleratorCount"),
        "computePower": _power(status.get("computePower")),
        "computePowerExcludedDevices": status.get("computePowerExcludedDevices"),
    }


def observed(platform: Platform) -> Json:
    pool = platform.pool(POOL) or {}
    status = pool.get("status") or {}
    return {
        MEMBER: _provider_view(platform.provider(MEMBER)),
        STATIC: _provider_view(platform.provider(STATIC)),
        POOL: {
            "providers": status.get("providers"),
            "resources": _resources(status),
            "accelerators": {e["model"]: e for e in status.get("accelerators") or []},
            "acceleratorCount": status.get("acceleratorCount"),
            "computePower": _power(status.get("computePower")),
            "computePowerExcludedDevices": status.get("computePowerExcludedDevices"),
            "regions": {
                r["name"]: _power(r.get("computePower")) for r in status.get("regions") or []
            },
        },
    }


def _expected_provider(truth: Truth, collected: str) -> Json:
    return {
        "ready": "True",
        "collected": collected,
        "nodes": truth.nodes,
        "resources": _decimal_maps(truth.resources),
        "accelerators": truth.accelerators,
        "acceleratorCount": truth.accelerator_count,
        "computePower": truth.compute_power,
        "computePowerExcludedDevices": truth.excluded or None,
    }


def _decimal_maps(maps: dict[str, dict[str, int]]) -> dict[str, dict[str, Decimal]]:
    return {f: {r: Decimal(v) for r, v in maps.get(f, {}).items()} for f in FIGURES}


def expected(member: Truth, static: Truth, *, collected: str = "Collected") -> Json:
    accelerators = pool_accelerators(member, static)
    return {
        MEMBER: _expected_provider(member, collected),
        STATIC: _expected_provider(static, "StaticInventory"),
        POOL: {
            "providers": {"total": 2, "ready": 2},
            "resources": _decimal_maps(total_resources(member, static)),
            "accelerators": accelerators,
            "acceleratorCount": sum(a["count"] for a in accelerators.values()),
            "computePower": total_power(member, static),
            "computePowerExcludedDevices": (member.excluded + static.excluded) or None,
            "regions": {EAST: member.compute_power, WEST: static.compute_power},
        },
    }


def differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where ``got`` and ``want`` differ, one line per leaf."""
    if isinstance(got, dict) and isinstance(want, dict):
        found = []
        for key in sorted(set(got) | set(want), key=str):
            if key not in got:
                found.append(f"{where}/{key}: missing, want {want[key]!r}")
            elif key not in want:
                found.append(f"{where}/{key}: {got[key]!r}, want nothing")
            else:
                found += differences(got[key], want[key], f"{where}/{key}")
        return found
    return [] if got == want else [f"{where}: {got!r}, want {want!r}"]


def converge(platform: Platform, want: Json, *, timeout: float = 45.0) -> Json:
    """Wait until the operator's status equals ``want``; a failure lists the differences."""
    deadline = time.monotonic() + timeout
    while True:
        got = observed(platform)
        if got == want:
            return got
        if time.monotonic() > deadline:
            lines = "\n".join(differences(got, want))
            raise AssertionError(
                f"status differs from the ground truth after {timeout:.0f}s:\n{lines}"
            )
        time.sleep(0.5)


def collected_after(platform: Platform, since: float) -> None:
    """Wait for a successful collection of the member that started after ``since``."""
    stamp = "fedcompute_provider_last_collection_timestamp_seconds"
    wait_for(
        "a collection of the member",
        lambda: _series(platform.metrics(), stamp, ("provider",)).get((MEMBER,), 0.0) > since,
        timeout=20,
    )


def _converged(fleet: Fleet, **kwargs: Any) -> tuple[Truth, Truth]:
    member, static = fleet.truth()
    converge(fleet.platform, expected(member, static, **kwargs))
    return member, static


# --- tests -----------------------------------------------------------------------------------


def test_the_member_keeps_what_dra_publishes(fleet: Fleet) -> None:
    """Precondition: the member stores taints, shared counters and adminAccess results."""
    _, _, slices, claims = fleet.world()
    dra_1 = next(s for s in slices if s["metadata"]["name"] == "dra-1")["spec"]
    by_name = {d["name"]: d for d in dra_1["devices"]}
    assert by_name["gpu-1"]["taints"][0]["effect"] == "NoSchedule"
    assert by_name["gpu-3-mig-3g"]["consumesCounters"][0]["counterSet"] == "gpu-3-counters"
    assert dra_1["sharedCounters"][0]["name"] == "gpu-3-counters"
    monitor = next(c for c in claims if c["metadata"]["name"] == "monitor")
    assert monitor["status"]["allocation"]["devices"]["results"][0]["adminAccess"] is True


def test_status_equals_ground_truth(fleet: Fleet) -> None:
    member, _ = _converged(fleet)
    # The world as built, so that a slip in the hand-worked rules cannot hide a figure.
    h100 = member.accelerators[H100]
    assert (h100["capacity"], h100["count"], h100["allocated"], h100["unhealthy"]) == (
        40,  # 4 nodes x 8; whole DRA devices: 4 on dra-1 (not the partition), 2 on dra-2,
        # 2 on h100-cordoned; none of the decommissioned node's
        21,  # h100-a, h100-b, dra-1 gpu-0/2/3, dra-2 gpu-0/1
        13,  # 3 + 8 pod GPUs, dra-1 gpu-0 (claim), gpu-3 (its partition is claimed)
        1,  # dra-1 gpu-1, tainted NoSchedule
    )
    assert h100["slots"] == {"1": 8, "2": 3, "4": 1, "8": 0, "16": 0}
    assert h100["resourceNames"] == ["gpu.nvidia.com", "nvidia.com/gpu"]
    assert member.accelerators["unknown-nvidia"]["modelUnknown"] is True
    assert member.accelerators[A100]["allocated"] == 1  # the Succeeded pod holds nothing
    assert member.excluded == 10  # 8 Ascend 910B3 (no published figures) + 2 unknown
    assert sorted(member.accelerators) == [
        "AMD-Instinct-MI300X",
        "Ascend910B3",
        A100,
        H100,
        "unknown-nvidia",
    ]
    provider = fleet.platform.provider(MEMBER)
    collected = condition(provider, "Collected")
    assert "2 devices of unknown model (unknown-nvidia)" in collected["message"]
    models = [e["model"] for e in provider["status"]["accelerators"]]
    assert models == sorted(models)


def _capacity_fit(platform: Platform, shape: str) -> Json:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NO_COLOR")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedcompute",
            "capacity",
            "--kubeconfig",
            str(platform.host.kubeconfig),
            "--fit",
            shape,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: Json = json.loads(done.stdout)
    return result


def _expected_fit(size: str, member: Truth, static: Truth) -> Json:
    providers = [
        {"name": name, "slots": truth.accelerators[H100]["slots"][size]}
        for name, truth in ((MEMBER, member), (STATIC, static))
        if truth.accelerators[H100]["slots"][size] > 0
    ]
    total = sum(p["slots"] for p in providers)
    pools = [{"name": POOL, "slots": total, "providers": providers}] if providers else []
    return {"shape": {"model": H100, "count": int(size)}, "total": total, "pools": pools}


def _sorted_fit(result: Json) -> Json:
    for p in result["pools"]:
        p["providers"].sort(key=lambda e: e["name"])
    return result


def test_capacity_fit_answers_from_status(fleet: Fleet) -> None:
    member, static = _converged(fleet)
    one = _capacity_fit(fleet.platform, f"1x{H100_NAME}")
    assert _sorted_fit(one) == _expected_fit("1", member, static)
    assert one["total"] == 8 + 16
    eight = _capacity_fit(fleet.platform, "8 x nvidia-h100-80gb")
    assert _sorted_fit(eight) == _expected_fit("8", member, static)
    assert [p["name"] for p in eight["pools"][0]["providers"]] == [STATIC]  # member: none


def _series(text: str, name: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sample.labels[k] for k in keys)] = sample.value
    return found


def test_slot_metrics_equal_ground_truth(fleet: Fleet) -> None:
    """The harness exposes the operator's metrics port: the slot gauges are read there."""
    member, static = _converged(fleet)
    want_providers = {
        (name, POOL, region, model, size): float(count)
        for name, region, truth in ((MEMBER, EAST, member), (STATIC, WEST, static))
        for model, entry in truth.accelerators.items()
        for size, count in entry["slots"].items()
    }
    want_pool = {
        (POOL, model, size): float(count)
        for model, entry in pool_accelerators(member, static).items()
        for size, count in entry["slots"].items()
    }
    keys = ("provider", "pool", "region", "model", "size")

    def probe() -> bool:
        text = fleet.platform.metrics()
        providers = _series(text, "fedcompute_provider_accelerator_slots", keys)
        pools = _series(text, "fedcompute_pool_accelerator_slots", ("pool", "model", "size"))
        ours = {k: v for k, v in providers.items() if k[0] in (MEMBER, STATIC)}
        return ours == want_providers and {k: v for k, v in pools.items() if k[0] == POOL} == (
            want_pool
        )

    wait_for("slot metrics equal the ground truth", probe, timeout=15)


def test_figures_follow_pods(fleet: Fleet) -> None:
    before, _ = _converged(fleet)
    fleet.delete(f"{PODS}/train")
    fleet.create(PODS, pod("a100-more", "a100", {"nvidia.com/gpu": "2"}))
    fleet.create(PODS, pod("mi300x-job", "mi300x", {"amd.com/gpu": "4"}))
    after, _ = _converged(fleet)
    assert after.accelerators[H100]["allocated"] == before.accelerators[H100]["allocated"] - 3
    assert after.accelerators[A100]["allocated"] == before.accelerators[A100]["allocated"] + 2
    assert after.accelerators["AMD-Instinct-MI300X"]["slots"]["4"] == 0  # 7 - 4 = 3 free


def test_figures_follow_claims(fleet: Fleet) -> None:
    before, _ = _converged(fleet)
    fleet.delete(f"{CLAIMS}/mig-job")  # its partition frees the whole gpu-3
    fleet.add_claim("a100-dra-job", "dra-2", "dra-2", "gpu-a100", False)
    fleet.add_claim("monitor-2", "dra-2", "dra-2", "gpu-1", True)  # takes nothing
    after, _ = _converged(fleet)
    h100_before, h100_after = before.accelerators[H100], after.accelerators[H100]
    assert h100_after["allocated"] == h100_before["allocated"] - 1
    assert h100_after["slots"]["2"] == h100_before["slots"]["2"] + 1  # dra-1: 1 -> 2 free
    assert after.accelerators[A100]["allocated"] == before.accelerators[A100]["allocated"] + 1


def test_figures_follow_a_republished_pool(fleet: Fleet) -> None:
    before, _ = _converged(fleet)
    gen2 = [device(f"gpu-{i}", H100_NAME) for i in range(4)] + [device("gpu-a100", A100_NAME)]
    # The driver republishes dra-2 at generation 2 in two slices; while only the first is
    # there the pool is partial and its last complete figures stand.
    fleet.create(
        SLICES, resource_slice("dra-2-gen2-a", "dra-2", "dra-2", gen2[:3], generation=2, count=2)
    )
    partial, _ = _converged(fleet, collected="PartialDevicePools")
    assert partial.accelerators == before.accelerators
    assert (
        "gpu.nvidia.com/dra-2" in condition(fleet.platform.provider(MEMBER), "Collected")["message"]
    )
    fleet.create(
        SLICES, resource_slice("dra-2-gen2-b", "dra-2", "dra-2", gen2[3:], generation=2, count=2)
    )
    after, _ = _converged(fleet)
    assert after.accelerators[H100]["count"] == before.accelerators[H100]["count"] + 2
    deleted = time.time()
    fleet.delete(f"{SLICES}/dra-2-gen1")  # the old generation goes: nothing changes
    collected_after(fleet.platform, deleted)
    assert _converged(fleet)[0] == after
