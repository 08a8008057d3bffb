"""A pool exported to a real Kueue: the operator's flavors and ClusterQueue, and what
Kueue's own scheduler admits by them.

One host runs the operator (``fedcompute run``, first without, then with ``--kueue``)
and, from the second test on, Kueue v0.17.0's own controller manager with its webhooks
(tests/kueue_harness.py). The pool ``kx`` claims a member cluster of two kwok nodes with
8 H100 each, a static provider with 4 A100 and a static provider without accelerators:
three flavors. Every quota the ClusterQueue shows is checked against what this module
computes from the providers' and the pool's status as the API serves them.

The operator is restarted rather than waiting for its discovery round (60 s) when Kueue
gets installed.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from fedcompute import quantities
from fedcompute.kube.host import MERGE, HostError
from fedcompute.local import cluster
from tests.conftest import start_cluster
from tests.integration.operator_harness import (
    NAMESPACE,
    REPO,
    Platform,
    condition,
    member_provider,
    region_pool,
    static_provider,
    wait_for,
)
from tests.kueue_harness import Kueue, running_kueue

pytestmark = pytest.mark.integration

KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
FLAVORS = f"{KUEUE}/resourceflavors"
QUEUES = f"{KUEUE}/clusterqueues"
POOL = "kx"
REGION = "kx"
QUEUE = f"fc-{POOL}"
MEMBER = "kx-member"
STATIC = "kx-static"
CPU_ONLY = "kx-cpu"
PROVIDERS = (MEMBER, STATIC, CPU_ONLY)
H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
GPU = "nvidia.com/gpu"
TEAM = "team-kx"
QUEUE_LABEL_SELECTOR = "app.kubernetes.io/managed-by=fedcompute"
VIRTUAL_TOLERATION = {
    "key": "fedcompute.io/virtual",
    "operator": "Equal",
    "value": "true",
    "effect": "NoSchedule",
}
TAKEN_POOL = "taken"
TAKEN_QUEUE = f"fc-{TAKEN_POOL}"
DISCOVERY_INTERVAL = 60.0  # EngineSettings.discovery_interval: not a flag of `fedcompute run`
Quotas = dict[str, dict[str, Decimal]]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def member() -> Iterator[cluster.Cluster]:
    shape = cluster.NodeShape(cpu="32", memory="256Gi", gpus=8, gpu_model=H100)
    c = start_cluster("kx-member", nodes=2, shape=shape, with_kwok=True)
    yield c
    cluster.down(c.name)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The host and an operator process, not started (each test says with which flags)."""
    host = start_cluster("kx-host", with_kwok=False)
    try:
        host.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        host.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        host.kubectl("create", "namespace", NAMESPACE)
        log = tmp_path_factory.mktemp("kueue-export") / "operator.log"
        running = Platform(host=host, log_path=log)
        yield running
        running.stop()
    finally:
        cluster.down(host.name)


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request: pytest.FixtureRequest, platform: Platform) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log:\n{platform.log_tail(80)}")
        kueue_dir = platform.host.directory / "kueue-0" / "kueue.log"
        if kueue_dir.exists():
            print("--- kueue log:\n" + "\n".join(kueue_dir.read_text().splitlines()[-40:]))


def restart(platform: Platform, *args: str) -> float:
    """(Re)start the operator with ``args``; the monotonic time it started at."""
    platform.stop()
    platform.extra_args = ("--standalone", *args)
    started = time.monotonic()
    platform.start()
    return started


def apply_pool(platform: Platform, member: cluster.Cluster) -> None:
    """The pool ``kx`` (with ``spec.kueue: {}``) and its three providers (idempotent)."""
    platform.kubeconfig_secret(f"{MEMBER}-kubeconfig", member.reader_kubeconfig())
    pool = region_pool(POOL, regions=[REGION])
    pool["spec"]["kueue"] = {}
    platform.apply(
        member_provider(
            MEMBER, REGION, f"{MEMBER}-kubeconfig", interval="5s", timeout="4s", stale_after="10s"
        ),
        static_provider(STATIC, REGION, cpu="64", memory="256Gi", gpus=4, model=A100),
        static_provider(CPU_ONLY, REGION, cpu="16", memory="64Gi", gpus=0),
        pool,
    )


@pytest.fixture(scope="module")
def kueue(platform: Platform) -> Iterator[Kueue]:
    with running_kueue(platform.host) as running:
        yield running


@pytest.fixture(scope="module")
def exported(platform: Platform, member: cluster.Cluster, kueue: Kueue) -> float:
    """Kueue running, the operator (re)started with ``--kueue``, the pool applied and
    its member Ready; the monotonic time the operator started at."""
    started = restart(platform, "--kueue")
    apply_pool(platform, member)
    platform.api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": TEAM}})
    wait_for(
        f"{MEMBER} Ready",
        lambda: condition(platform.provider(MEMBER), "Ready").get("status") == "True",
        timeout=40,
    )
    return started


# --- reading what the API serves -----------------------------------------------------------


def kueue_exported(platform: Platform, pool: str) -> dict[str, Any]:
    return condition(platform.pool(pool), "KueueExported")


def exported_reason(platform: Platform, pool: str, reason: str) -> dict[str, Any] | None:
    found = kueue_exported(platform, pool)
    return found if found.get("reason") == reason else None


def expected_flavor(model: str | None) -> str:
    """``fc-<pool>-<model lower-cased>``, a short hash added when that changed the name;
    ``fc-<pool>-cpu`` without a model."""
    if model is None:
        return f"fc-{POOL}-cpu"
    slug = re.sub(r"[^a-z0-9.-]+", "-", model.lower()).strip("-.")
    if slug != model:
        slug += "-" + hashlib.sha256(model.encode()).hexdigest()[:6]
    return f"fc-{POOL}-{slug}"


def flavor_model(status: dict[str, Any]) -> str | None:
    """The model a provider's virtual node is labelled with: the one with most devices."""
    entries = status.get("accelerators") or []
    if not entries:
        return None
    counts: dict[str, int] = {}
    for entry in entries:
        present = entry.get("capacity")
        counts[entry["model"]] = counts.get(entry["model"], 0) + (
            present if present is not None else entry["count"]
        )
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def expected_quotas(platform: Platform) -> Quotas:
    """Flavor -> resource -> quota, from the providers' status: allocatable cpu and memory
    and the devices (``count``) of the flavor's model, over Ready, schedulable providers."""
    flavors: Quotas = {}
    for name in PROVIDERS:
        provider = platform.provider(name) or {}
        status = provider.get("status") or {}
        model = flavor_model(status)
        quota = flavors.setdefault(expected_flavor(model), {})
        offered = condition(provider, "Ready").get("status") == "True" and not (
            provider.get("spec") or {}
        ).get("unschedulable")
        if not offered:
            continue
        for resource in ("cpu", "memory"):
            value = quantities.parse((status.get("allocatable") or {}).get(resource, "0"))
            quota[resource] = quota.get(resource, Decimal(0)) + value
        for entry in status.get("accelerators") or []:
            if entry["model"] == model and "/" in entry["resourceName"]:
                resource = entry["resourceName"]
                quota[resource] = quota.get(resource, Decimal(0)) + entry["count"]
    covered = {"cpu", "memory"} | {r for q in flavors.values() for r in q}
    return {f: {r: q.get(r, Decimal(0)) for r in covered} for f, q in flavors.items()}


def queue_quotas(platform: Platform, name: str = QUEUE) -> Quotas | None:
    queue = platform.get(f"{QUEUES}/{name}")
    if queue is None:
        return None
    return {
        flavor["name"]: {
            r["name"]: quantities.parse(r["nominalQuota"]) for r in flavor["resources"]
        }
        for group in queue["spec"].get("resourceGroups") or []
        for flavor in group["flavors"]
    }


def pool_totals(platform: Platform) -> dict[str, Decimal]:
    status = (platform.pool(POOL) or {}).get("status") or {}
    return {r: quantities.parse(v) for r, v in (status.get("allocatable") or {}).items()}


def quotas_agree(platform: Platform) -> Quotas | None:
    """The queue's quotas when they are what the providers' status says, and add up to
    the pool's allocatable; None otherwise."""
    observed = queue_quotas(platform)
    if observed is None or observed != expected_quotas(platform):
        return None
    totals = pool_totals(platform)
    for resource in {r for q in observed.values() for r in q}:
        summed = sum((q[resource] for q in observed.values()), Decimal(0))
        if summed != totals.get(resource, Decimal(0)):
            return None
    return observed


def ours(platform: Platform, collection: str, pool: str = POOL) -> dict[str, dict[str, Any]]:
    listed = platform.api.request(
        "GET",
        f"{KUEUE}/{collection}?labelSelector={QUEUE_LABEL_SELECTOR},fedcompute.io/pool={pool}",
    )
    return {o["metadata"]["name"]: o for o in listed["items"]}


# --- workloads -----------------------------------------------------------------------------


def workload(name: str, gpus: int) -> dict[str, Any]:
    requests = {"cpu": "1", "memory": "1Gi", GPU: str(gpus)}
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {"name": name, "namespace": TEAM},
        "spec": {
            "queueName": TEAM,
            "podSets": [
                {
                    "count": 1,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "train",
                                    "image": "registry.example/train:1",
                                    "resources": {"requests": requests, "limits": {GPU: str(gpus)}},
                                }
                            ],
                        }
                    },
                }
            ],
        },
    }


def submit(platform: Platform, name: str, gpus: int) -> None:
    platform.api.request("POST", f"{KUEUE}/namespaces/{TEAM}/workloads", body=workload(name, gpus))


def get_workload(platform: Platform, name: str) -> dict[str, Any]:
    found = platform.get(f"{KUEUE}/namespaces/{TEAM}/workloads/{name}")
    assert found is not None, name
    return found


def admitted(platform: Platform, name: str) -> dict[str, Any] | None:
    w = get_workload(platform, name)
    return w if condition(w, "Admitted").get("status") == "True" else None


def pending(platform: Platform, name: str) -> dict[str, Any] | None:
    w = get_workload(platform, name)
    reserved = condition(w, "QuotaReserved")
    return w if reserved.get("status") == "False" and reserved.get("reason") == "Pending" else None


def delete_workloads(platform: Platform) -> None:
    path = f"{KUEUE}/namespaces/{TEAM}/workloads"
    for w in platform.api.request("GET", path)["items"]:
        try:
            platform.api.request("DELETE", f"{path}/{w['metadata']['name']}")
        except HostError as exc:
            if exc.status != 404:
                raise
    wait_for(
        "workloads deleted", lambda: not platform.api.request("GET", path)["items"], timeout=30
    )


def assert_still_pending(platform: Platform, name: str, *words: str) -> None:
    w = wait_for(f"{name} found inadmissible", lambda: pending(platform, name), timeout=30)
    message = condition(w, "QuotaReserved")["message"]
    for word in ("insufficient quota", *words):
        assert word in message, message
    time.sleep(2)  # nothing frees quota meanwhile: still not admitted a moment later
    again = get_workload(platform, name)
    assert "admission" not in (again.get("status") or {}), again["status"]
    assert condition(again, "Admitted").get("status") != "True"


# --- tests -------------------------------------------------------------------------------------


def test_without_the_flag_export_is_disabled_and_without_kueue_not_installed(
    platform: Platform, member: cluster.Cluster
) -> None:
    done = platform.host.kubectl("get", "crd", "clusterqueues.kueue.x-k8s.io", check=False)
    assert done.returncode != 0, "this test needs a host without Kueue (run it first)"
    restart(platform)
    apply_pool(platform, member)
    disabled = wait_for(
        "KueueExportDisabled",
        lambda: exported_reason(platform, POOL, "KueueExportDisabled"),
        timeout=30,
    )
    assert disabled["status"] == "False"
    assert "--kueue" in disabled["message"]

    restart(platform, "--kueue")
    missing = wait_for(
        "KueueNotInstalled",
        lambda: exported_reason(platform, POOL, "KueueNotInstalled"),
        timeout=30,
    )
    assert missing["status"] == "False"
    assert "kueue.x-k8s.io/v1beta2" in missing["message"]


def test_quotas_follow_the_providers_and_kueue_admits_by_them(
    platform: Platform, member: cluster.Cluster, exported: float
) -> None:
    done = wait_for(
        "KueueExported=True", lambda: exported_reason(platform, POOL, "Exported"), timeout=40
    )
    assert done["status"] == "True"
    assert QUEUE in done["message"]
    pool = platform.pool(POOL)
    assert pool is not None

    # Three flavors, named by model, selecting the pool's virtual nodes of that model.
    flavors = ours(platform, "resourceflavors")
    h100, a100, cpu = expected_flavor(H100), expected_flavor(A100), expected_flavor(None)
    assert set(flavors) == {h100, a100, cpu}
    for name, model in ((h100, H100), (a100, A100), (cpu, "none")):
        spec = flavors[name]["spec"]
        assert spec["nodeLabels"] == {
            "fedcompute.io/pool": POOL,
            "fedcompute.io/accelerator": model,
        }
        assert spec["tolerations"] == [VIRTUAL_TOLERATION]
    for body in [*flavors.values(), platform.get(f"{QUEUES}/{QUEUE}")]:
        assert body is not None
        meta = body["metadata"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "fedcompute"
        assert meta["labels"]["fedcompute.io/pool"] == POOL
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "RegionPool",
            POOL,
            pool["metadata"]["uid"],
        )
    # The member's virtual node carries its flavor's labels and no taint of the operator's
    # that the flavor does not tolerate (node.kubernetes.io/ taints are the control
    # plane's: this host runs no node lifecycle controller to lift not-ready).
    node = platform.node(f"fc-{MEMBER}")
    assert node is not None
    assert flavors[h100]["spec"]["nodeLabels"].items() <= node["metadata"]["labels"].items()
    own_taints = [
        t
        for t in node["spec"].get("taints") or []
        if not t["key"].startswith("node.kubernetes.io/")
    ]
    assert own_taints, node["spec"]
    for taint in own_taints:
        wanted = {"key": taint["key"], "value": taint.get("value", ""), "effect": taint["effect"]}
        assert any(
            {k: t[k] for k in ("key", "value", "effect")} == wanted
            for t in flavors[h100]["spec"]["tolerations"]
        ), taint

    queue = platform.get(f"{QUEUES}/{QUEUE}")
    assert queue is not None
    assert queue["spec"]["namespaceSelector"] == {}
    (group,) = queue["spec"]["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", GPU]
    assert [f["name"] for f in group["flavors"]] == sorted([h100, a100, cpu])

    quotas = wait_for("quotas as the status says", lambda: quotas_agree(platform), timeout=30)
    assert quotas[h100][GPU] == 16  # 2 nodes x 8: the figures are the member's
    assert quotas[a100][GPU] == 4
    assert quotas[cpu][GPU] == 0
    assert quotas[cpu]["cpu"] == 16
    wait_for(
        "ClusterQueue Active",
        lambda: condition(platform.get(f"{QUEUES}/{QUEUE}"), "Active").get("status") == "True",
        timeout=30,
    )

    platform.api.request(
        "POST",
        f"{KUEUE}/namespaces/{TEAM}/localqueues",
        body={
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": TEAM, "namespace": TEAM},
            "spec": {"clusterQueue": QUEUE},
        },
    )
    # 12 GPUs: only the H100 flavor holds that many. 40: more than the whole pool.
    submit(platform, "fits", 12)
    submit(platform, "too-big", 40)
    fits = wait_for("fits admitted", lambda: admitted(platform, "fits"), timeout=30)
    admission = fits["status"]["admission"]
    assert admission["clusterQueue"] == QUEUE
    (assignment,) = admission["podSetAssignments"]
    assert assignment["flavors"] == {"cpu": h100, "memory": h100, GPU: h100}
    assert_still_pending(platform, "too-big", GPU)
    delete_workloads(platform)

    # The member goes away: its provider turns Stale, its H100 leave the queue's quota.
    cluster.down(member.name)
    stale = wait_for(
        f"{MEMBER} Stale",
        lambda: (
            condition(platform.provider(MEMBER), "Ready").get("reason") == "Stale"
            and condition(platform.provider(MEMBER), "Ready")
        ),
        timeout=40,
    )
    assert stale["status"] == "False"
    quotas = wait_for("quotas after the member left", lambda: quotas_agree(platform), timeout=30)
    assert quotas[h100] == {"cpu": 0, "memory": 0, GPU: 0}
    assert quotas[a100][GPU] == 4
    assert done == exported_reason(platform, POOL, "Exported")  # no status churn on quotas

    # What fit before does not now.
    submit(platform, "fits-again", 12)
    assert_still_pending(platform, "fits-again", GPU)
    delete_workloads(platform)


def managers(body: dict[str, Any]) -> set[str]:
    """The field managers that wrote ``body`` (the operator's is "fedcompute")."""
    return {entry.get("manager", "") for entry in body["metadata"].get("managedFields") or []}


def test_a_queue_of_the_exported_name_made_by_someone_else_is_left_alone(
    platform: Platform, exported: float
) -> None:
    foreign = platform.api.request(
        "POST",
        QUEUES,
        body={
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": TAKEN_QUEUE, "labels": {"team": "someone-else"}},
            "spec": {"namespaceSelector": {"matchLabels": {"team": "other"}}, "cohortName": "x"},
        },
        query=[("fieldManager", "someone-else")],
    )
    pool = region_pool(TAKEN_POOL, regions=["nowhere"], min_ready=0)
    pool["spec"]["kueue"] = {}
    platform.apply(pool)
    taken = wait_for(
        "NameTaken", lambda: exported_reason(platform, TAKEN_POOL, "NameTaken"), timeout=30
    )
    assert taken["status"] == "False"
    assert f"ClusterQueue {TAKEN_QUEUE}" in taken["message"]
    after = platform.get(f"{QUEUES}/{TAKEN_QUEUE}")
    assert after is not None
    # Kueue itself adds its finalizer and status; the operator writes nothing to it.
    assert after["metadata"]["uid"] == foreign["metadata"]["uid"]
    assert "fedcompute" not in managers(after)
    assert after["metadata"]["labels"] == {"team": "someone-else"}
    assert "ownerReferences" not in after["metadata"]
    assert after["spec"]["cohortName"] == "x"


def test_a_taken_name_stays_reported_without_writes_across_discovery(
    platform: Platform, exported: float
) -> None:
    taken = wait_for(
        "NameTaken", lambda: exported_reason(platform, TAKEN_POOL, "NameTaken"), timeout=30
    )
    before = platform.pool(TAKEN_POOL)
    foreign = platform.get(f"{QUEUES}/{TAKEN_QUEUE}")
    assert before is not None and foreign is not None
    # Past the operator's next discovery round (it lists Kueue's objects again).
    reasons = {taken["reason"]}
    deadline = exported + DISCOVERY_INTERVAL + 5
    while time.monotonic() < deadline:
        reasons.add(kueue_exported(platform, TAKEN_POOL).get("reason", ""))
        time.sleep(0.1)
    after = platform.pool(TAKEN_POOL)
    assert after is not None
    assert reasons == {"NameTaken"}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    again = platform.get(f"{QUEUES}/{TAKEN_QUEUE}")
    assert again is not None
    assert again["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert "fedcompute" not in managers(again)


def test_dropping_spec_kueue_deletes_the_flavors_and_the_queue(
    platform: Platform, exported: float
) -> None:
    assert ours(platform, "resourceflavors"), "nothing exported to delete"
    delete_workloads(platform)  # the queue's finalizer waits for its admitted workloads
    for name in (POOL, TAKEN_POOL):
        platform.api.request(
            "PATCH",
            f"/apis/fedcompute.io/v1alpha1/regionpools/{name}",
            body={"spec": {"kueue": None}},
            content_type=MERGE,
        )
    wait_for(
        "flavors and queue deleted",
        lambda: (
            not ours(platform, "resourceflavors")
            and not ours(platform, "clusterqueues")
            and platform.get(f"{QUEUES}/{QUEUE}") is None
        ),
        timeout=30,
    )
    wait_for("condition removed", lambda: not kueue_exported(platform, POOL), timeout=20)
    # Someone else's queue of the name the other pool wanted stays.
    assert platform.get(f"{QUEUES}/{TAKEN_QUEUE}") is not None
    assert not kueue_exported(platform, TAKEN_POOL)
