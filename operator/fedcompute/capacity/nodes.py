"""Desired virtual Nodes and Leases, and the smallest patches that reach them. Pure.

A virtual node stands for one claimed provider. Its ``status.capacity`` is the provider's
capacity and its ``status.allocatable`` the provider's *available* figures, so the
scheduler sees the real free room. Its Lease is renewed like a kubelet's while the
provider is Ready, so a cluster's node lifecycle controller treats it as one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from fedcompute import __version__, quantities
from fedcompute.api import API_VERSION
from fedcompute.api.pool import KIND as POOL_KIND
from fedcompute.api.pool import RegionPool
from fedcompute.api.provider import NODE_NAME_PREFIX, ComputeProvider, Reason
from fedcompute.capacity.providers import ProviderView

LABEL_POOL: Final = "fedcompute.io/pool"
LABEL_PROVIDER: Final = "fedcompute.io/provider"
LABEL_SECTOR: Final = "fedcompute.io/sector"
LABEL_ACCELERATOR: Final = "fedcompute.io/accelerator"
NO_ACCELERATOR: Final = "none"
"""``fedcompute.io/accelerator`` of the virtual node of a provider without accelerators."""
LABEL_REGION: Final = "topology.kubernetes.io/region"
LABEL_ZONE: Final = "topology.kubernetes.io/zone"
ANNOTATION_MANAGED_LABELS: Final = "fedcompute.io/managed-labels"
ANNOTATION_MANAGED_TAINTS: Final = "fedcompute.io/managed-taints"
VIRTUAL_TAINT: Final = {"key": "fedcompute.io/virtual", "value": "true", "effect": "NoSchedule"}
LEASE_NAMESPACE: Final = "kube-node-lease"
NODE_MONITOR_GRACE_SECONDS: Final = 50
"""kube-controller-manager's default --node-monitor-grace-period (Kubernetes 1.34): a node
whose Lease is not renewed for this long is marked Unknown and tainted unreachable."""
LEASE_DURATION_SECONDS: Final = NODE_MONITOR_GRACE_SECONDS


def lease_period(grace_seconds: float) -> float:
    """How often a virtual node's Lease is renewed, given the host's grace period.

    The lowest safe rate: one renewal may be lost and the next still lands inside the
    grace period, with a tenth of it (at least 5 s) to spare for latency. For the default
    50 s that is every 22 s (kubelets renew every 10 s).
    """
    slack = max(5.0, grace_seconds / 10)
    return float(max(1, int((grace_seconds - slack) // 2)))


Json = dict[str, Any]


def node_name(provider: str) -> str:
    """``fc-<provider>``."""
    return f"{NODE_NAME_PREFIX}{provider}"


def time_string(now: datetime) -> str:
    """metav1.Time."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(now: datetime) -> str:
    """metav1.MicroTime, as Lease renewTime wants it."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class DesiredNode:
    """Everything the operator owns on one virtual node."""

    name: str
    provider: str
    pool: str
    pool_uid: str
    labels: dict[str, str]
    taints: list[Json]
    unschedulable: bool
    capacity: dict[str, str]
    allocatable: dict[str, str]
    ready_status: str
    ready_reason: str
    ready_message: str
    lease_wanted: bool


def top_accelerator(view: ProviderView) -> str | None:
    """The model with the most devices (ties: by name): the node's accelerator label."""
    counts: dict[str, int] = {}
    for device in view.accelerators:
        counts[device.model] = counts.get(device.model, 0) + device.capacity
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def desired_node(provider: ComputeProvider, pool: RegionPool, view: ProviderView) -> DesiredNode:
    """The virtual node of ``provider`` in ``pool``."""
    name = node_name(provider.name)
    spec = provider.spec
    labels = dict((pool.spec.node_template.labels or {}) if pool.spec.node_template else {})
    labels.update(
        {
            LABEL_POOL: pool.name,
            LABEL_PROVIDER: provider.name,
            LABEL_REGION: spec.region,
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "type": "virtual-kubelet",
        }
    )
    if spec.zone:
        labels[LABEL_ZONE] = spec.zone
    if spec.sector:
        labels[LABEL_SECTOR] = spec.sector
    # "none" without accelerators, so a Kueue flavor can select exactly those nodes.
    labels[LABEL_ACCELERATOR] = top_accelerator(view) or NO_ACCELERATOR
    taints: list[Json] = [dict(VIRTUAL_TAINT)]
    for taint in (pool.spec.node_template.taints or []) if pool.spec.node_template else []:
        entry: Json = {"key": taint.key, "effect": taint.effect}
        if taint.value is not None:
            entry["value"] = taint.value
        if (entry["key"], entry["effect"]) != (VIRTUAL_TAINT["key"], VIRTUAL_TAINT["effect"]):
            taints.append(entry)
    if view.ready:
        status, reason, message = "True", "ProviderReady", view.ready_message
    elif view.ready_reason == Reason.PENDING:
        status, reason, message = "Unknown", "ProviderPending", view.ready_message
    else:
        status, reason = "False", f"Provider{view.ready_reason}"
        message = view.ready_message
    return DesiredNode(
        name=name,
        provider=provider.name,
        pool=pool.name,
        pool_uid=pool.metadata.uid or "",
        labels=labels,
        taints=taints,
        unschedulable=spec.unschedulable,
        capacity=quantities.format_map(view.capacity),
        allocatable=quantities.format_map(view.available),
        ready_status=status,
        ready_reason=reason,
        ready_message=message,
        lease_wanted=view.ready,
    )


def _owner(d: DesiredNode) -> list[Json]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": POOL_KIND,
            "name": d.pool,
            "uid": d.pool_uid,
        }
    ]


def _node_info() -> Json:
    return {
        "machineID": "",
        "systemUUID": "",
        "bootID": "",
        "kernelVersion": "",
        "osImage": "fedcompute virtual node",
        "containerRuntimeVersion": f"fedcompute://{__version__}",
        "kubeletVersion": f"v{__version__}-fedcompute",
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": "amd64",
    }


def _ready_condition(d: DesiredNode, now: datetime, previous: Json | None) -> Json:
    since = time_string(now)
    if previous and previous.get("status") == d.ready_status:
        since = previous.get("lastTransitionTime") or since
    return {
        "type": "Ready",
        "status": d.ready_status,
        "reason": d.ready_reason,
        "message": d.ready_message,
        "lastHeartbeatTime": time_string(now),
        "lastTransitionTime": since,
    }


def node_body(d: DesiredNode, now: datetime) -> Json:
    """A complete Node to create."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": d.name,
            "labels": d.labels,
            "annotations": {
                ANNOTATION_MANAGED_LABELS: json.dumps(sorted(d.labels)),
                ANNOTATION_MANAGED_TAINTS: json.dumps(_taint_ids(d.taints)),
            },
            "ownerReferences": _owner(d),
        },
        "spec": {"taints": d.taints, "unschedulable": d.unschedulable},
        "status": {
            "capacity": d.capacity,
            "allocatable": d.allocatable,
            "conditions": [_ready_condition(d, now, None)],
            "nodeInfo": _node_info(),
            "addresses": [{"type": "Hostname", "address": d.name}],
        },
    }


def _conditions_by_type(node: Mapping[str, Any]) -> dict[str, Json]:
    return {c.get("type", ""): c for c in (node.get("status") or {}).get("conditions") or []}


def metadata_patch(d: DesiredNode, observed: Mapping[str, Any]) -> Json | None:
    """Merge patch for labels, owner and spec; None when nothing differs.

    Labels and taints the operator set before but no longer wants are removed (the
    node's ``fedcompute.io/managed-*`` annotations record them); those someone else
    added, such as the node lifecycle controller's taints, are left alone.
    """
    meta = observed.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    patch: Json = {}
    label_patch: dict[str, str | None] = {k: v for k, v in d.labels.items() if labels.get(k) != v}
    for key in _recorded(annotations, ANNOTATION_MANAGED_LABELS) - set(d.labels):
        if key in labels:
            label_patch[key] = None
    meta_patch: Json = {}
    if label_patch:
        meta_patch["labels"] = label_patch
    managed = {
        ANNOTATION_MANAGED_LABELS: json.dumps(sorted(d.labels)),
        ANNOTATION_MANAGED_TAINTS: json.dumps(_taint_ids(d.taints)),
    }
    changed = {k: v for k, v in managed.items() if annotations.get(k) != v}
    if changed:
        meta_patch["annotations"] = changed
    owners = meta.get("ownerReferences") or []
    if [(o.get("kind"), o.get("name"), o.get("uid")) for o in owners] != [
        (POOL_KIND, d.pool, d.pool_uid)
    ]:
        meta_patch["ownerReferences"] = _owner(d)
    if meta_patch:
        patch["metadata"] = meta_patch
    spec = observed.get("spec") or {}
    # Taints others added (the node lifecycle controller, an admin) stay; only taints this
    # operator set before and no longer wants are removed.
    ours_before = _recorded(annotations, ANNOTATION_MANAGED_TAINTS) | set(_taint_ids(d.taints))
    others = [t for t in spec.get("taints") or [] if _taint_id(t) not in ours_before]
    taints = d.taints + others
    if _taint_keys(spec.get("taints") or []) != _taint_keys(taints):
        patch.setdefault("spec", {})["taints"] = taints
    if bool(spec.get("unschedulable", False)) != d.unschedulable:
        patch.setdefault("spec", {})["unschedulable"] = d.unschedulable
    return patch or None


def _recorded(annotations: Mapping[str, Any], key: str) -> set[str]:
    """The names an annotation records; anyone may edit it, so only a list of strings counts."""
    try:
        recorded = json.loads(annotations.get(key, "[]"))
    except (ValueError, TypeError):
        return set()
    return {k for k in recorded if isinstance(k, str)} if isinstance(recorded, list) else set()


def _taint_id(taint: Mapping[str, Any]) -> str:
    return f"{taint.get('key', '')}:{taint.get('effect', '')}"


def _taint_ids(taints: list[Json]) -> list[str]:
    return sorted(_taint_id(t) for t in taints)


def _taint_keys(taints: list[Json]) -> list[tuple[str, str, str]]:
    return sorted((t.get("key", ""), t.get("value") or "", t.get("effect", "")) for t in taints)


def status_patch(d: DesiredNode, observed: Mapping[str, Any], now: datetime) -> Json | None:
    """Merge patch for node status; None when nothing the operator owns differs.

    While the provider is not Ready, any non-True Ready condition is accepted, so the
    operator does not fight the node lifecycle controller's ``Unknown``.
    """
    status = observed.get("status") or {}
    previous = _conditions_by_type(observed).get("Ready")
    want_ready = d.ready_status == "True"
    if previous is None:
        ready_ok = False
    elif want_ready or previous.get("status") == "True":
        ready_ok = (previous.get("status"), previous.get("reason"), previous.get("message")) == (
            d.ready_status,
            d.ready_reason,
            d.ready_message,
        )
    else:
        # Not Ready either way: follow the provider's reason, but leave the node lifecycle
        # controller's Unknown (lease expired) alone instead of fighting over it.
        ready_ok = previous.get("reason") in (d.ready_reason, "NodeStatusUnknown")
    same = (
        _normal(status.get("capacity")) == _normal(d.capacity)
        and _normal(status.get("allocatable")) == _normal(d.allocatable)
        and ready_ok
        and (status.get("nodeInfo") or {}).get("kubeletVersion") == _node_info()["kubeletVersion"]
    )
    if same:
        return None
    others = [c for t, c in _conditions_by_type(observed).items() if t != "Ready"]
    return {
        "status": {
            "capacity": _replacing(status.get("capacity"), d.capacity),
            "allocatable": _replacing(status.get("allocatable"), d.allocatable),
            "conditions": [_ready_condition(d, now, previous), *others],
            "nodeInfo": _node_info(),
        }
    }


def _replacing(observed: Mapping[str, Any] | None, wanted: Mapping[str, str]) -> Json:
    """``wanted`` as a merge patch over ``observed``: resources no longer there become null."""
    gone: Json = {k: None for k in observed or {} if k not in wanted}
    return {**gone, **wanted}


def _normal(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Compare quantities by value, not spelling (``1Gi`` equals ``1073741824``)."""
    result: dict[str, Any] = {}
    for k, v in (values or {}).items():
        try:
            result[k] = quantities.parse(v)
        except (quantities.QuantityError, TypeError):
            result[k] = v
    return result


def lease_body(
    name: str,
    provider: str,
    node_uid: str,
    now: datetime,
    duration: int = LEASE_DURATION_SECONDS,
) -> Json:
    """A node Lease like a kubelet's, owned by the Node so it goes with it."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": LEASE_NAMESPACE,
            "labels": {LABEL_PROVIDER: provider},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration,
            "renewTime": micro_time(now),
        },
    }
