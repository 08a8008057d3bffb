"""Desired virtual nodes, their bodies and leases, and the smallest patches that reach them."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fedcompute import __version__, quantities
from fedcompute.api.pool import RegionPool
from fedcompute.api.provider import ComputeProvider, Reason
from fedcompute.capacity import nodes
from fedcompute.capacity.claims import Claim
from fedcompute.capacity.inventory import AcceleratorInventory
from fedcompute.capacity.providers import ProviderView

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
GPU = "nvidia.com/gpu"
VIRTUAL = {"key": "fedcompute.io/virtual", "value": "true", "effect": "NoSchedule"}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


def q(values: Mapping[str, str | int]) -> dict[str, Decimal]:
    return quantities.parse_map(values)


# --- builders ------------------------------------------------------------------------------


def provider(
    name: str = "lingang",
    *,
    region: str = "east",
    zone: str | None = None,
    sector: str | None = None,
    unschedulable: bool = False,
) -> ComputeProvider:
    spec: dict[str, Any] = {
        "region": region,
        "unschedulable": unschedulable,
        "source": {"static": {"resources": {"cpu": "1"}}},
    }
    if zone is not None:
        spec["zone"] = zone
    if sector is not None:
        spec["sector"] = sector
    return ComputeProvider.model_validate({"metadata": {"name": name}, "spec": spec})


def pool(
    name: str = "main",
    *,
    uid: str = "uid-main",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> RegionPool:
    spec: dict[str, Any] = {"regions": ["east"]}
    if labels is not None or taints is not None:
        spec["nodeTemplate"] = {"labels": labels, "taints": taints}
    return RegionPool.model_validate({"metadata": {"name": name, "uid": uid}, "spec": spec})


def view(
    *,
    ready: bool = True,
    reason: str = Reason.FRESH,
    message: str = "collected within staleAfter (3m)",
    capacity: Mapping[str, str] | None = None,
    available: Mapping[str, str] | None = None,
    devices: tuple[AcceleratorInventory, ...] = (),
) -> ProviderView:
    cap = q(capacity or {"cpu": "64", "memory": "256Gi"})
    free = q(available or {"cpu": "60", "memory": "128Gi"})
    return ProviderView(
        name="lingang",
        region="east",
        ready=ready,
        offered=ready,
        claim=Claim("main", 0),
        status_wire={},
        capacity=cap,
        allocatable=dict(cap),
        available=free,
        accelerators=devices,
        ready_reason=reason,
        ready_message=message,
    )


def devices(model: str, resource: str, capacity: int) -> AcceleratorInventory:
    return AcceleratorInventory(model, resource, 1, capacity, capacity, 0, capacity)


def desired(**kwargs: Any) -> nodes.DesiredNode:
    return nodes.desired_node(
        kwargs.pop("the_provider", provider()), kwargs.pop("the_pool", pool()), view(**kwargs)
    )


def created(d: nodes.DesiredNode, now: datetime = T0) -> dict[str, Any]:
    """The node as the API holds it right after the operator created it."""
    body = copy.deepcopy(nodes.node_body(d, now))
    body["metadata"]["uid"] = "node-uid"
    return body


def apply(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch application."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result


def ready_of(node: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


# --- desired_node: labels ------------------------------------------------------------------


def test_labels_of_a_plain_provider() -> None:
    d = desired()
    assert d.name == "fc-lingang"
    assert d.labels == {
        "fedcompute.io/accelerator": "none",
        "fedcompute.io/pool": "main",
        "fedcompute.io/provider": "lingang",
        "topology.kubernetes.io/region": "east",
        "kubernetes.io/hostname": "fc-lingang",
        "kubernetes.io/os": "linux",
        "type": "virtual-kubelet",
    }


@pytest.mark.parametrize(
    ("zone", "sector", "extra"),
    [
        pytest.param("east-1a", None, {"topology.kubernetes.io/zone": "east-1a"}, id="zone"),
        pytest.param(None, "telecom", {"fedcompute.io/sector": "telecom"}, id="sector"),
        pytest.param(
            "z",
            "research",
            {"topology.kubernetes.io/zone": "z", "fedcompute.io/sector": "research"},
            id="both",
        ),
        pytest.param(None, None, {}, id="neither"),
    ],
)
def test_zone_and_sector_labels_only_when_set(
    zone: str | None, sector: str | None, extra: dict[str, str]
) -> None:
    d = desired(the_provider=provider(zone=zone, sector=sector))
    optional = {"topology.kubernetes.io/zone", "fedcompute.io/sector"}
    assert {k: v for k, v in d.labels.items() if k in optional} == extra


@pytest.mark.parametrize(
    ("inventory", "label"),
    [
        pytest.param((), "none", id="no-devices"),
        pytest.param((devices("A100", GPU, 8),), "A100", id="one-model"),
        pytest.param(
            (devices("A100", GPU, 8), devices("H100", GPU, 16)), "H100", id="most-devices"
        ),
        pytest.param(
            (devices("H100-40GB", GPU, 8), devices("A100-80GB", GPU, 8)),
            "A100-80GB",
            id="tie-smaller-name",
        ),
        pytest.param(
            (
                devices("A100", GPU, 6),
                devices("A100", "nvidia.com/mig-1g.10gb", 6),
                devices("H100", GPU, 10),
            ),
            "A100",
            id="summed-over-resources",
        ),
    ],
)
def test_accelerator_label_names_the_model_with_most_devices(
    inventory: tuple[AcceleratorInventory, ...], label: str
) -> None:
    assert desired(devices=inventory).labels.get("fedcompute.io/accelerator") == label


def test_pool_template_labels_are_added_but_cannot_override_the_operators() -> None:
    the_pool = pool(labels={"team": "ml", "fedcompute.io/pool": "other", "type": "real"})
    d = desired(the_pool=the_pool)
    assert d.labels["team"] == "ml"
    assert d.labels["fedcompute.io/pool"] == "main"
    assert d.labels["type"] == "virtual-kubelet"


# --- desired_node: taints, schedulability, figures, Ready ---------------------------------


def test_taints_are_the_virtual_taint_and_the_pool_taints() -> None:
    the_pool = pool(
        taints=[
            {"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
            {"key": "spot", "effect": "PreferNoSchedule"},
            {"key": "fedcompute.io/virtual", "value": "other", "effect": "NoSchedule"},
            {"key": "fedcompute.io/virtual", "effect": "NoExecute"},
        ]
    )
    assert desired(the_pool=the_pool).taints == [
        VIRTUAL,
        {"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
        {"key": "spot", "effect": "PreferNoSchedule"},
        {"key": "fedcompute.io/virtual", "effect": "NoExecute"},
    ]
    assert desired().taints == [VIRTUAL]


@pytest.mark.parametrize("unschedulable", [True, False])
def test_unschedulable_mirrors_the_provider(unschedulable: bool) -> None:
    d = desired(the_provider=provider(unschedulable=unschedulable))
    assert d.unschedulable is unschedulable
    assert nodes.node_body(d, T0)["spec"]["unschedulable"] is unschedulable


def test_capacity_is_provider_capacity_and_allocatable_is_provider_available() -> None:
    d = desired(
        capacity={"cpu": "64", "memory": "256Gi", GPU: "8"},
        available={"cpu": "12500m", "memory": "1073741824", GPU: "3"},
    )
    assert d.capacity == {"cpu": "64", "memory": "256Gi", GPU: "8"}
    assert d.allocatable == {"cpu": "12500m", "memory": "1Gi", GPU: "3"}


@pytest.mark.parametrize(
    ("ready", "reason", "expected"),
    [
        pytest.param(True, Reason.FRESH, ("True", "ProviderReady"), id="ready"),
        pytest.param(True, Reason.STATIC_INVENTORY, ("True", "ProviderReady"), id="static"),
        pytest.param(False, Reason.PENDING, ("Unknown", "ProviderPending"), id="pending"),
        pytest.param(False, Reason.STALE, ("False", "ProviderStale"), id="stale"),
        pytest.param(False, Reason.UNREACHABLE, ("False", "ProviderUnreachable"), id="error"),
        pytest.param(
            False, Reason.NO_READY_NODES, ("False", "ProviderNoReadyNodes"), id="no-nodes"
        ),
    ],
)
def test_ready_condition_follows_the_provider(
    ready: bool, reason: str, expected: tuple[str, str]
) -> None:
    d = desired(ready=ready, reason=reason, message="why")
    assert (d.ready_status, d.ready_reason) == expected
    assert d.ready_message == "why"
    assert d.lease_wanted is ready


# --- node_body and lease_body --------------------------------------------------------------


def test_node_body() -> None:
    d = desired(the_pool=pool(uid="u-1"), capacity={"cpu": "4"}, available={"cpu": "3"})
    body = nodes.node_body(d, T0)
    assert body["apiVersion"] == "v1"
    assert body["kind"] == "Node"
    meta = body["metadata"]
    assert meta["name"] == "fc-lingang"
    assert meta["labels"] == d.labels
    assert json.loads(meta["annotations"]["fedcompute.io/managed-labels"]) == sorted(d.labels)
    assert meta["ownerReferences"] == [
        {"apiVersion": "fedcompute.io/v1alpha1", "kind": "RegionPool", "name": "main", "uid": "u-1"}
    ]
    assert body["spec"] == {"taints": [VIRTUAL], "unschedulable": False}
    status = body["status"]
    assert (status["capacity"], status["allocatable"]) == ({"cpu": "4"}, {"cpu": "3"})
    assert status["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "ProviderReady",
            "message": "collected within staleAfter (3m)",
            "lastHeartbeatTime": "2025-03-01T12:00:00Z",
            "lastTransitionTime": "2025-03-01T12:00:00Z",
        }
    ]
    assert status["addresses"] == [{"type": "Hostname", "address": "fc-lingang"}]
    assert status["nodeInfo"]["kubeletVersion"] == f"v{__version__}-fedcompute"
    assert status["nodeInfo"]["operatingSystem"] == "linux"


def test_lease_body_is_a_kubelet_like_lease_owned_by_the_node() -> None:
    now = datetime(2025, 3, 1, 12, 0, 5, 123456, tzinfo=UTC)
    assert nodes.lease_body("fc-lingang", "lingang", "node-uid", now) == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "fc-lingang",
            "namespace": "kube-node-lease",
            "labels": {"fedcompute.io/provider": "lingang"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "fc-lingang", "uid": "node-uid"}
            ],
        },
        "spec": {
            "holderIdentity": "fc-lingang",
            "leaseDurationSeconds": 50,
            "renewTime": "2025-03-01T12:00:05.123456Z",
        },
    }


# --- metadata_patch ------------------------------------------------------------------------


def test_a_freshly_created_node_needs_no_patch() -> None:
    the_pool = pool(labels={"team": "ml"}, taints=[{"key": "a", "effect": "NoSchedule"}])
    d = desired(the_provider=provider(zone="z", unschedulable=True), the_pool=the_pool)
    node = created(d)
    assert nodes.metadata_patch(d, node) is None
    assert nodes.status_patch(d, node, T1) is None


def test_labels_others_added_are_left_alone() -> None:
    d = desired()
    node = created(d)
    node["metadata"]["labels"]["team"] = "ml"
    assert nodes.metadata_patch(d, node) is None


def test_labels_no_longer_wanted_are_removed_and_the_annotation_updated() -> None:
    before = desired(the_provider=provider(zone="z", sector="s"), the_pool=pool(labels={"t": "1"}))
    node = created(before)
    node["metadata"]["labels"]["someone-elses"] = "x"
    after = desired()
    patch = nodes.metadata_patch(after, node)
    assert patch is not None
    assert patch["metadata"]["labels"] == {
        "topology.kubernetes.io/zone": None,
        "fedcompute.io/sector": None,
        "t": None,
    }
    managed = json.loads(patch["metadata"]["annotations"]["fedcompute.io/managed-labels"])
    assert managed == sorted(after.labels)
    assert "spec" not in patch
    patched = apply(node, patch)
    assert patched["metadata"]["labels"] == {**after.labels, "someone-elses": "x"}
    assert nodes.metadata_patch(after, patched) is None


def test_a_removed_label_already_gone_is_not_patched() -> None:
    before = desired(the_provider=provider(zone="z"))
    node = created(before)
    del node["metadata"]["labels"]["topology.kubernetes.io/zone"]
    patch = nodes.metadata_patch(desired(), node)
    assert patch is not None
    assert "labels" not in patch["metadata"]
    assert "annotations" in patch["metadata"]


def test_changed_label_values_are_patched() -> None:
    node = created(desired(the_provider=provider(region="east")))
    d = desired(the_provider=provider(region="west"))
    patch = nodes.metadata_patch(d, node)
    assert patch == {"metadata": {"labels": {"topology.kubernetes.io/region": "west"}}}


@pytest.mark.parametrize(
    "annotation",
    ["not json", "5", "null", '"topology.kubernetes.io/region"', '{"a": 1}', "[1, 2]"],
)
def test_a_malformed_managed_labels_annotation_removes_nothing(annotation: str) -> None:
    d = desired()
    node = created(d)
    node["metadata"]["labels"]["t"] = "1"
    node["metadata"]["annotations"]["fedcompute.io/managed-labels"] = annotation
    patch = nodes.metadata_patch(d, node)
    assert patch == {
        "metadata": {"annotations": {"fedcompute.io/managed-labels": json.dumps(sorted(d.labels))}}
    }


def test_missing_annotation_is_added() -> None:
    d = desired()
    node = created(d)
    del node["metadata"]["annotations"]
    assert nodes.metadata_patch(d, node) == {
        "metadata": {
            "annotations": {
                "fedcompute.io/managed-labels": json.dumps(sorted(d.labels)),
                "fedcompute.io/managed-taints": json.dumps(["fedcompute.io/virtual:NoSchedule"]),
            }
        }
    }


def test_moving_to_another_pool_switches_owner_and_pool_label() -> None:
    node = created(desired(the_pool=pool("old", uid="uid-old")))
    d = desired(the_pool=pool("new", uid="uid-new"))
    patch = nodes.metadata_patch(d, node)
    assert patch is not None
    assert patch["metadata"]["labels"] == {"fedcompute.io/pool": "new"}
    assert patch["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "fedcompute.io/v1alpha1",
            "kind": "RegionPool",
            "name": "new",
            "uid": "uid-new",
        }
    ]


def test_same_pool_recreated_with_a_new_uid_switches_owner() -> None:
    node = created(desired(the_pool=pool("main", uid="uid-1")))
    patch = nodes.metadata_patch(desired(the_pool=pool("main", uid="uid-2")), node)
    assert patch is not None
    assert patch["metadata"]["ownerReferences"][0]["uid"] == "uid-2"
    assert "labels" not in patch["metadata"]


def test_lifecycle_controller_taints_are_kept() -> None:
    d = desired()
    node = created(d)
    node["spec"]["taints"].append({**UNREACHABLE, "timeAdded": "2025-03-01T12:00:30Z"})
    assert nodes.metadata_patch(d, node) is None

    # A new pool taint rewrites the list: the foreign taint stays in it.
    the_pool = pool(taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}])
    patch = nodes.metadata_patch(desired(the_pool=the_pool), node)
    assert patch is not None
    taints = patch["spec"]["taints"]
    assert {t["key"] for t in taints} == {
        "fedcompute.io/virtual",
        "dedicated",
        "node.kubernetes.io/unreachable",
    }


def test_pool_taints_dropped_from_the_template_are_removed() -> None:
    the_pool = pool(taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}])
    node = created(desired(the_pool=the_pool))
    patch = nodes.metadata_patch(desired(), node)
    assert patch == {
        "metadata": {
            "annotations": {
                "fedcompute.io/managed-taints": json.dumps(["fedcompute.io/virtual:NoSchedule"])
            }
        },
        "spec": {"taints": [VIRTUAL]},
    }


def test_taints_someone_else_added_are_kept() -> None:
    d = desired()
    node = created(d)
    admin = {"key": "maintenance", "value": "true", "effect": "NoSchedule"}
    lifecycle = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    node["spec"]["taints"] = [*node["spec"]["taints"], admin, lifecycle]
    assert nodes.metadata_patch(d, node) is None
    # ...even when the operator's own taints change at the same time.
    the_pool = pool(taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}])
    patch = nodes.metadata_patch(desired(the_pool=the_pool), node)
    assert patch is not None
    assert admin in patch["spec"]["taints"] and lifecycle in patch["spec"]["taints"]


def test_node_ready_reason_follows_the_provider_but_not_over_the_lifecycle_controller() -> None:
    down = desired(ready=False, reason=Reason.UNREACHABLE)
    node = created(down)
    stale = desired(ready=False, reason=Reason.STALE)
    patch = nodes.status_patch(stale, node, T0)
    assert patch is not None
    ready = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ProviderStale")
    for c in node["status"]["conditions"]:
        if c["type"] == "Ready":
            c.update(status="Unknown", reason="NodeStatusUnknown")
    assert nodes.status_patch(stale, node, T0) is None


def test_taint_value_change_is_patched() -> None:
    old = pool(taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}])
    new = pool(taints=[{"key": "dedicated", "value": "hpc", "effect": "NoSchedule"}])
    patch = nodes.metadata_patch(desired(the_pool=new), created(desired(the_pool=old)))
    assert patch == {
        "spec": {"taints": [VIRTUAL, {"key": "dedicated", "value": "hpc", "effect": "NoSchedule"}]}
    }


@pytest.mark.parametrize(("was", "now"), [(False, True), (True, False)])
def test_unschedulable_flip_is_patched(was: bool, now: bool) -> None:
    node = created(desired(the_provider=provider(unschedulable=was)))
    patch = nodes.metadata_patch(desired(the_provider=provider(unschedulable=now)), node)
    assert patch == {"spec": {"unschedulable": now}}


def test_unschedulable_absent_counts_as_false() -> None:
    d = desired()
    node = created(d)
    del node["spec"]["unschedulable"]
    assert nodes.metadata_patch(d, node) is None


# --- status_patch --------------------------------------------------------------------------


def test_only_the_spelling_of_quantities_differs() -> None:
    d = desired(capacity={"cpu": "4", "memory": "1Gi"}, available={"cpu": "500m", "memory": "1Gi"})
    node = created(d)
    node["status"]["capacity"] = {"cpu": "4000m", "memory": "1073741824"}
    node["status"]["allocatable"] = {"cpu": "0.5", "memory": "1024Mi"}
    assert nodes.status_patch(d, node, T1) is None


def test_changed_figures_are_patched_keeping_ready_transition_time() -> None:
    node = created(desired(available={"cpu": "60", "memory": "128Gi"}), T0)
    d = desired(available={"cpu": "59", "memory": "128Gi"})
    patch = nodes.status_patch(d, node, T1)
    assert patch is not None
    assert patch["status"]["allocatable"] == {"cpu": "59", "memory": "128Gi"}
    assert patch["status"]["capacity"] == d.capacity
    ready = ready_of(patch)
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] == nodes.time_string(T0)
    assert ready["lastHeartbeatTime"] == nodes.time_string(T1)
    assert nodes.status_patch(d, apply(node, patch), T1 + timedelta(seconds=5)) is None


def test_a_resource_gone_from_the_provider_is_patched() -> None:
    node = created(desired(capacity={"cpu": "4", GPU: "2"}, available={"cpu": "4", GPU: "2"}))
    d = desired(capacity={"cpu": "4"}, available={"cpu": "4"})
    patch = nodes.status_patch(d, node, T1)
    assert patch is not None
    # A merge patch merges maps: the vanished resource must be nulled, not just left out.
    assert patch["status"]["capacity"] == {GPU: None, "cpu": "4"}
    assert patch["status"]["allocatable"] == {GPU: None, "cpu": "4"}
    patched = apply(node, patch)
    assert patched["status"]["capacity"] == {"cpu": "4"}
    assert nodes.status_patch(d, patched, T1) is None


@pytest.mark.parametrize("observed", ["Unknown", "False"])
@pytest.mark.parametrize("reason", [Reason.STALE, Reason.PENDING, Reason.UNREACHABLE])
def test_not_ready_provider_accepts_any_non_true_ready(observed: str, reason: str) -> None:
    d = desired(ready=False, reason=reason, message="down")
    node = created(d)
    ready_of(node).update(status=observed, reason="NodeStatusUnknown", message="Kubelet stopped")
    assert nodes.status_patch(d, node, T1) is None


def test_not_ready_provider_turns_a_true_ready_false() -> None:
    node = created(desired(), T0)
    d = desired(ready=False, reason=Reason.STALE, message="stale")
    patch = nodes.status_patch(d, node, T1)
    assert patch is not None
    ready = ready_of(patch)
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "ProviderStale",
        "stale",
    )
    assert ready["lastTransitionTime"] == nodes.time_string(T1)


def test_ready_provider_turns_an_unknown_ready_true() -> None:
    d = desired()
    node = created(d, T0)
    ready_of(node).update(status="Unknown", reason="NodeStatusUnknown", message="")
    patch = nodes.status_patch(d, node, T1)
    assert patch is not None
    ready = ready_of(patch)
    assert (ready["status"], ready["reason"]) == ("True", "ProviderReady")
    assert ready["lastTransitionTime"] == nodes.time_string(T1)


def test_ready_message_change_is_patched_while_ready() -> None:
    node = created(desired(message="static inventory"))
    assert nodes.status_patch(desired(message="collected"), node, T1) is not None


def test_missing_ready_condition_is_patched() -> None:
    d = desired()
    node = created(d)
    node["status"]["conditions"] = [{"type": "MemoryPressure", "status": "False"}]
    patch = nodes.status_patch(d, node, T1)
    assert patch is not None
    types = [c["type"] for c in patch["status"]["conditions"]]
    # Merge patch replaces the list: the other conditions are carried along.
    assert types == ["Ready", "MemoryPressure"]
    assert ready_of(patch)["lastTransitionTime"] == nodes.time_string(T1)


def test_another_kubelet_version_is_patched() -> None:
    d = desired()
    node = created(d)
    node["status"]["nodeInfo"]["kubeletVersion"] = "v0.0.0-old"
    patch = nodes.status_patch(d, node, T1)
    assert patch is not None
    assert patch["status"]["nodeInfo"]["kubeletVersion"] == f"v{__version__}-fedcompute"


def test_patches_converge() -> None:
    """Whatever the starting node, applying both patches leaves nothing to patch."""
    start = created(desired(the_provider=provider(zone="z"), the_pool=pool("a", uid="1")))
    start["metadata"]["labels"]["keep"] = "me"
    start["spec"]["taints"].append(UNREACHABLE)
    ready_of(start).update(status="Unknown")
    d = desired(
        the_provider=provider(sector="s", unschedulable=True),
        the_pool=pool("b", uid="2", taints=[{"key": "x", "effect": "NoExecute"}]),
        capacity={"cpu": "8"},
        available={"cpu": "1"},
    )
    node = start
    for patch in (nodes.metadata_patch(d, node), nodes.status_patch(d, node, T1)):
        assert patch is not None
        node = apply(node, patch)
    assert nodes.metadata_patch(d, node) is None
    assert nodes.status_patch(d, node, T1) is None
    assert node["metadata"]["labels"]["keep"] == "me"
    assert "topology.kubernetes.io/zone" not in node["metadata"]["labels"]
    assert UNREACHABLE in node["spec"]["taints"]
