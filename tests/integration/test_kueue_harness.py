"""The Kueue harness runs Kueue's own code: real admission against real quota, real
defaulting and conversion webhooks, and the ClusterProfile CRD as SIG-Multicluster
publishes it.

Kueue (v0.17.0, ``kueue.x-k8s.io/v1beta2``) runs on a control plane of its own for this
module, so that its webhooks (``failurePolicy: Fail``, on Pods and Jobs too) never meet
another test's objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from fedcompute.kube.host import MERGE, Host, HostError
from fedcompute.local import cluster
from tests.conftest import PREFIX, start_cluster
from tests.kueue_harness import Kueue, install_cluster_profile_crd, running_kueue

pytestmark = pytest.mark.integration

KUEUE = "/apis/kueue.x-k8s.io/v1beta2"
INVENTORY = "/apis/multicluster.x-k8s.io/v1alpha1"
NAMESPACE = "team-a"
FLAVOR = "east-a100"
GPU = "nvidia.com/gpu"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# What a fedcompute pool's flavour would carry: its virtual nodes' labels, and a
# toleration of their taint (Kueue adds the toleration to the pods it admits).
NODE_LABELS = {"fedcompute.io/pool": "east", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
TOLERATION = {"key": "fedcompute.io/virtual", "operator": "Equal", "value": "true"}
TOLERATION |= {"effect": "NoSchedule"}
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


@pytest.fixture(scope="module")
def kueue_cluster() -> Iterator[cluster.Cluster]:
    c = start_cluster("kueue", with_kwok=False)
    yield c
    cluster.down(c.name)


@pytest.fixture(scope="module")
def api(kueue_cluster: cluster.Cluster) -> Iterator[Host]:
    host = Host.from_kubeconfig(str(kueue_cluster.kubeconfig))
    yield host
    host.close()


@pytest.fixture(scope="module")
def kueue(kueue_cluster: cluster.Cluster) -> Iterator[Kueue]:
    with running_kueue(kueue_cluster) as running:
        yield running
    assert not running.alive()


@pytest.fixture(scope="module")
def queues(kueue: Kueue, api: Host) -> None:
    """One ResourceFlavor, a ClusterQueue with 8 GPUs of it, a LocalQueue in team-a."""
    api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
    api.request(
        "POST",
        f"{KUEUE}/resourceflavors",
        body={
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": FLAVOR},
            "spec": {"nodeLabels": NODE_LABELS, "tolerations": [TOLERATION]},
        },
    )
    api.request(
        "POST",
        f"{KUEUE}/clusterqueues",
        body={
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": "east"},
            "spec": {
                # null (the default) admits no namespace at all; {} admits every one.
                "namespaceSelector": {},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory", GPU],
                        "flavors": [
                            {
                                "name": FLAVOR,
                                "resources": [
                                    {"name": "cpu", "nominalQuota": "64"},
                                    {"name": "memory", "nominalQuota": "512Gi"},
                                    {"name": GPU, "nominalQuota": "8"},
                                ],
                            }
                        ],
                    }
                ],
            },
        },
    )
    api.request(
        "POST",
        f"{KUEUE}/namespaces/{NAMESPACE}/localqueues",
        body={
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": "team-a", "namespace": NAMESPACE},
            "spec": {"clusterQueue": "east"},
        },
    )
    wait_for(
        "ClusterQueue east Active",
        lambda: (
            condition(api.request("GET", f"{KUEUE}/clusterqueues/east"), "Active").get("status")
            == "True"
        ),
    )


def container(gpus: int) -> dict[str, Any]:
    requests = {"cpu": "1", "memory": "1Gi", GPU: str(gpus)}
    return {
        "name": "train",
        "image": "registry.example/train:1",
        "resources": {"requests": requests, "limits": {GPU: str(gpus)}},
    }


def workload(name: str, gpus: int) -> dict[str, Any]:
    """The least a v1beta2 Workload needs: podSets (1 to 8; each a template, a count that
    defaults to 1 and a name that defaults to "main") and the LocalQueue in queueName."""
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "queueName": "team-a",
            "podSets": [
                {
                    "count": 1,
                    "template": {
                        "spec": {"restartPolicy": "Never", "containers": [container(gpus)]}
                    },
                }
            ],
        },
    }


def get_workload(api: Host, name: str) -> dict[str, Any]:
    return api.request("GET", f"{KUEUE}/namespaces/{NAMESPACE}/workloads/{name}")


@pytest.mark.usefixtures("queues")
def test_a_workload_within_quota_is_admitted_and_one_beyond_it_stays_pending(
    kueue: Kueue, api: Host
) -> None:
    created = api.request(
        "POST", f"{KUEUE}/namespaces/{NAMESPACE}/workloads", body=workload("fits", 4)
    )
    # Kueue's defaulting webhook ran on the way in: the pod set got its name.
    assert created["spec"]["podSets"][0]["name"] == "main"
    api.request("POST", f"{KUEUE}/namespaces/{NAMESPACE}/workloads", body=workload("too-big", 16))

    def admitted_fits() -> dict[str, Any] | None:
        w = get_workload(api, "fits")
        return w if condition(w, "Admitted").get("status") == "True" else None

    admitted = wait_for("workload fits admitted", admitted_fits)
    assert condition(admitted, "QuotaReserved")["status"] == "True"
    admission = admitted["status"]["admission"]
    assert admission["clusterQueue"] == "east"
    (assignment,) = admission["podSetAssignments"]
    assert assignment["name"] == "main"
    assert assignment["count"] == 1
    assert assignment["flavors"] == {"cpu": FLAVOR, "memory": FLAVOR, GPU: FLAVOR}
    assert assignment["resourceUsage"] == {"cpu": "1", "memory": "1Gi", GPU: "4"}

    def inadmissible() -> dict[str, Any] | None:
        w = get_workload(api, "too-big")
        return w if condition(w, "QuotaReserved").get("reason") == "Pending" else None

    pending = wait_for("workload too-big found inadmissible", inadmissible)
    reserved = condition(pending, "QuotaReserved")
    assert reserved["status"] == "False"
    assert "insufficient quota" in reserved["message"]
    assert GPU in reserved["message"]
    assert "admission" not in pending["status"]
    assert condition(pending, "Admitted").get("status") != "True"
    # Still pending a moment later: nothing frees quota it could ever fit in.
    time.sleep(2)
    again = get_workload(api, "too-big")
    assert "admission" not in again["status"], kueue.log_tail()

    # The ClusterQueue accounts for the admitted one only.
    usage = wait_for(
        "ClusterQueue usage",
        lambda: (api.request("GET", f"{KUEUE}/clusterqueues/east").get("status") or {}).get(
            "flavorsUsage"
        ),
    )
    gpu_usage = {r["name"]: r["total"] for r in usage[0]["resources"]}[GPU]
    assert gpu_usage == "4"

    # Conversion webhook: the same ClusterQueue read through the deprecated v1beta1.
    old = api.request("GET", "/apis/kueue.x-k8s.io/v1beta1/clusterqueues/east")
    assert old["apiVersion"] == "kueue.x-k8s.io/v1beta1"
    assert old["spec"]["resourceGroups"][0]["flavors"][0]["name"] == FLAVOR


@pytest.mark.usefixtures("queues")
def test_an_admitted_job_gets_the_flavors_node_labels_and_tolerations(api: Host) -> None:
    """How a flavour reaches pods: Kueue unsuspends the Job and writes the flavour's
    nodeLabels into its pod template's nodeSelector and its tolerations into tolerations
    (no job controller runs here; the Job's spec is what Kueue changed)."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train", "namespace": NAMESPACE, "labels": {QUEUE_LABEL: "team-a"}},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [container(2)]}},
        },
    }
    created = api.request("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", body=job)
    assert created["spec"]["suspend"] is True  # Kueue's Job webhook suspended it

    def unsuspended() -> dict[str, Any] | None:
        j = api.request("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/train")
        return j if j["spec"].get("suspend") is False else None

    started = wait_for("job unsuspended by Kueue", unsuspended)
    pod = started["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == NODE_LABELS
    assert TOLERATION in pod["tolerations"]
    workloads = api.request("GET", f"{KUEUE}/namespaces/{NAMESPACE}/workloads")["items"]
    owned = [
        w
        for w in workloads
        if any(o.get("kind") == "Job" for o in w["metadata"].get("ownerReferences") or [])
    ]
    assert len(owned) == 1
    assert owned[0]["spec"]["queueName"] == "team-a"


def test_cluster_profile_crd_and_status_round_trip(
    kueue_cluster: cluster.Cluster, api: Host
) -> None:
    crd = install_cluster_profile_crd(kueue_cluster)
    assert crd["spec"]["group"] == "multicluster.x-k8s.io"
    assert crd["spec"]["scope"] == "Namespaced"
    namespace = f"{PREFIX}-inventory"
    api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    path = f"{INVENTORY}/namespaces/{namespace}/clusterprofiles"
    status = {
        "version": {"kubernetes": "v1.34.4"},
        "properties": [
            {"name": "fedcompute.io/region", "value": "cn-east"},
            {
                "name": "fedcompute.io/gpus",
                "value": "8",
                "lastObservedTime": "2026-01-02T03:04:05Z",
            },
        ],
        "conditions": [
            {
                "type": "ControlPlaneHealthy",
                "status": "True",
                "reason": "Healthy",
                "message": "member reachable",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            }
        ],
        "accessProviders": [
            {"name": "kubeconfig", "cluster": {"server": "https://member.example:6443"}}
        ],
    }
    body = {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ClusterProfile",
        "metadata": {"name": "hangzhou", "namespace": namespace},
        "spec": {"displayName": "Hangzhou", "clusterManager": {"name": "fedcompute"}},
        "status": status,
    }
    created = api.request("POST", path, body=body)
    assert "status" not in created or not created["status"]  # status is a subresource
    api.request("PATCH", f"{path}/hangzhou/status", body={"status": status}, content_type=MERGE)
    read = api.request("GET", f"{path}/hangzhou")
    assert read["status"] == status
    assert read["spec"] == body["spec"]
    # spec.clusterManager is immutable (a CEL rule of the CRD).
    with pytest.raises(HostError) as refused:
        api.request(
            "PATCH",
            f"{path}/hangzhou",
            body={"spec": {"clusterManager": {"name": "other"}}},
            content_type=MERGE,
        )
    assert refused.value.status == 422
    assert "immutable" in str(refused.value)
