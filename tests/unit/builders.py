"""Shared builders for planner tests: object bodies, snapshots, and a plan's fixed point.

``settle`` applies a Plan's intents to plain dicts the way the actuator's writes would
land (merge patches, creates, deletes, finalizers), so tests can ask the planner's own
question: after these writes, is there anything left to do? It models only what the
planner assumes of the API; the API itself is exercised by the integration tests.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fedcompute import quantities
from fedcompute.api.pool import RegionPool
from fedcompute.api.provider import PLURAL as PROVIDERS
from fedcompute.api.provider import ComputeProvider
from fedcompute.capacity import inventory, nodes
from fedcompute.capacity.plan import FINALIZER, Plan, plan
from fedcompute.capacity.providers import Collection
from fedcompute.capacity.snapshot import Observed, Rejection, Snapshot
from fedcompute.intents import (
    CreateLease,
    CreateNode,
    DeleteLease,
    DeleteNode,
    Intent,
    PatchNode,
    PatchStatus,
    PostEvent,
    RenewLease,
    SetFinalizers,
)

Json = dict[str, Any]
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"
A100 = "NVIDIA-A100-SXM4-80GB"
_uids = itertools.count(1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- object bodies -------------------------------------------------------------------------


def _meta(name: str, labels: Mapping[str, str] | None, *, finalized: bool, deleting: bool) -> Json:
    meta: Json = {
        "name": name,
        "uid": f"uid-{name}",
        "generation": 1,
        "resourceVersion": "1",
        "labels": dict(labels or {}),
    }
    if finalized:
        meta["finalizers"] = [FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = "2026-03-01T11:00:00Z"
    return meta


def static(
    name: str,
    region: str = "east",
    *,
    labels: Mapping[str, str] | None = None,
    cpu: str = "64",
    memory: str = "256Gi",
    gpus: int = 8,
    model: str = A100,
    extra: Mapping[str, str] | None = None,
    unschedulable: bool = False,
    finalized: bool = True,
    deleting: bool = False,
    status: Json | None = None,
) -> Json:
    """A ComputeProvider body with a static inventory."""
    resources: Json = {"cpu": cpu, "memory": memory, **(extra or {})}
    source: Json = {"resources": resources, "nodeCount": 2}
    if gpus:
        resources[GPU] = str(gpus)
        source["accelerators"] = [
            {"model": model, "count": gpus, "tflopsPerDevice": {"bf16": "312"}}
        ]
    body: Json = {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": _meta(name, labels, finalized=finalized, deleting=deleting),
        "spec": {"region": region, "source": {"static": source}, "unschedulable": unschedulable},
    }
    if status is not None:
        body["status"] = status
    return body


def member(
    name: str,
    region: str = "east",
    *,
    labels: Mapping[str, str] | None = None,
    finalized: bool = True,
    stale_after: str = "3m",
) -> Json:
    """A ComputeProvider body read from a member cluster."""
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": _meta(name, labels, finalized=finalized, deleting=False),
        "spec": {
            "region": region,
            "source": {"kubernetes": {"kubeconfigSecretRef": {"name": f"{name}-kubeconfig"}}},
            "monitoring": {"interval": "30s", "timeout": "10s", "staleAfter": stale_after},
        },
    }


def pool(
    name: str,
    *,
    regions: list[str] | None = None,
    selector: Json | None = None,
    priority: int = 0,
    paused: bool = False,
    min_ready: int = 1,
    template: Json | None = None,
    finalized: bool = True,
    deleting: bool = False,
) -> Json:
    """A RegionPool body (regions default to ["east"] when no selector is given)."""
    spec: Json = {"priority": priority, "paused": paused, "minReadyProviders": min_ready}
    if regions is not None or selector is None:
        spec["regions"] = regions or ["east"]
    if selector is not None:
        spec["providerSelector"] = selector
    if template is not None:
        spec["nodeTemplate"] = template
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "RegionPool",
        "metadata": _meta(name, None, finalized=finalized, deleting=deleting),
        "spec": spec,
    }


def figures(
    *, cpu: str = "32", gpus: int = 4, used_gpus: int = 1, ready: int = 2
) -> inventory.MemberInventory:
    """A member inventory (two nodes, ``gpus`` A100s of which ``used_gpus`` are allocated)."""
    capacity = quantities.parse_map({"cpu": cpu, "memory": "128Gi", GPU: str(gpus)})
    allocated = {GPU: Decimal(used_gpus)}
    return inventory.MemberInventory(
        capacity=capacity,
        allocatable=dict(capacity),
        allocated=allocated,
        available=quantities.subtract(capacity, allocated),
        nodes_total=2,
        nodes_ready=ready,
        nodes_counted=ready,
        accelerators=(
            inventory.AcceleratorInventory(A100, GPU, 2, gpus, gpus, used_gpus, gpus - used_gpus),
        ),
    )


def collected(when: datetime = T0, inv: inventory.MemberInventory | None = None) -> Collection:
    return Collection(
        inventory=inv or figures(), succeeded_at=when, attempted_at=when, generation=1
    )


# --- worlds ----------------------------------------------------------------------------------


@dataclass
class World:
    """Plain dicts standing for what the API holds; :meth:`snapshot` is what a pass sees."""

    providers: dict[str, Json] = field(default_factory=dict)
    pools: dict[str, Json] = field(default_factory=dict)
    nodes: dict[str, Json] = field(default_factory=dict)
    leases: dict[str, Json] = field(default_factory=dict)
    collections: dict[str, Collection] = field(default_factory=dict)
    rejections: dict[tuple[str, str], Rejection] = field(default_factory=dict)
    events: list[PostEvent] = field(default_factory=list)
    observed: dict[tuple[str, str], tuple[Json, Any, Observed]] = field(default_factory=dict)

    def snapshot(self) -> Snapshot:
        """What a pass sees; an object keeps its Observed until its content changes, as the
        operator's world keeps it until an event or a write's answer replaces it."""
        return Snapshot(
            providers={n: self._observed(ComputeProvider, b) for n, b in self.providers.items()},
            pools={n: self._observed(RegionPool, b) for n, b in self.pools.items()},
            nodes=self.nodes,
            leases=self.leases,
            rejections=self.rejections,
        )

    def _observed(self, kind: type[ComputeProvider] | type[RegionPool], body: Json) -> Observed:
        key = (kind.__name__, body["metadata"]["name"])
        content = json.dumps(body, sort_keys=True, default=str)
        cached = self.observed.get(key)
        if cached is not None and cached[1] == content:
            return cached[2]
        obs = Observed(kind, copy.deepcopy(body))
        self.observed[key] = (body, content, obs)
        return obs

    def change(self, body: Json, *, spec: bool = False) -> None:
        """Record an edit as the API server would: a new resourceVersion (and generation)."""
        meta = body["metadata"]
        meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
        if spec:
            meta["generation"] = int(meta.get("generation") or 0) + 1

    def plan(self, now: datetime = T0) -> Plan:
        return plan(self.snapshot(), self.collections, now)

    def copy(self) -> World:
        return copy.deepcopy(self)


def world(*bodies: Json, collections: Mapping[str, Collection] | None = None) -> World:
    """A world holding these providers and pools (told apart by kind)."""
    w = World(collections=dict(collections or {}))
    for body in bodies:
        target = w.providers if body["kind"] == "ComputeProvider" else w.pools
        target[body["metadata"]["name"]] = copy.deepcopy(body)
    return w


def converged(w: World, now: datetime = T0, *, passes: int = 6) -> World:
    """Apply plans until nothing is left to do (fails if that takes more than ``passes``)."""
    for _ in range(passes):
        p = w.plan(now)
        if not [i for i in p.intents if not isinstance(i, PostEvent)]:
            return w
        settle(w, p)
    raise AssertionError(f"not converged after {passes} passes: {w.plan(now).intents}")


# --- applying intents ------------------------------------------------------------------------


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge(result.get(k), v)
    return result


def _bump(body: Json) -> None:
    meta = body.setdefault("metadata", {})
    meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)


def settle(w: World, p: Plan, *, only: Iterable[Intent] | None = None) -> None:
    """Land the plan's intents (or ``only`` these) in ``w``."""
    for intent in only if only is not None else p.intents:
        _apply(w, intent)
    for objects in (w.providers, w.pools):
        for name in [n for n, b in objects.items() if _gone(b)]:
            del objects[name]


def _gone(body: Json) -> bool:
    meta = body["metadata"]
    return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")


def _apply(w: World, intent: Intent) -> None:
    objects = w.providers if intent.owner[0] == PROVIDERS else w.pools
    match intent:
        case SetFinalizers(owner=(_, name), finalizers=finalizers):
            objects[name]["metadata"]["finalizers"] = list(finalizers)
            _bump(objects[name])
        case PatchStatus(owner=(_, name), patch=patch):
            objects[name]["status"] = merge(objects[name].get("status") or {}, patch)
            _bump(objects[name])
        case PostEvent():
            w.events.append(intent)
        case CreateNode(name=name, body=body):
            node = copy.deepcopy(body)
            node["metadata"]["uid"] = f"node-uid-{next(_uids)}"
            node["metadata"]["resourceVersion"] = "1"
            w.nodes[name] = node
            lease = intent.lease_for(node["metadata"]["uid"])
            if lease is not None:
                w.leases[name] = lease
        case PatchNode(name=name, metadata=meta, status=status):
            w.nodes[name] = merge(merge(w.nodes[name], meta or {}), status or {})
        case DeleteNode(name=name):
            w.nodes.pop(name, None)
            w.leases.pop(name, None)
        case CreateLease(name=name, body=body):
            w.leases[name] = copy.deepcopy(body)
        case RenewLease(name=name, renew_time=renew):
            w.leases[name]["spec"]["renewTime"] = renew
        case DeleteLease(name=name):
            w.leases.pop(name, None)


# --- reading plans -------------------------------------------------------------------------


def of(p: Plan, kind: type[Intent], owner: str | None = None) -> list[Any]:
    """The plan's intents of one type (of one owner name, if given)."""
    return [i for i in p.intents if isinstance(i, kind) and (owner is None or i.owner[1] == owner)]


def status_of(w: World, name: str) -> Json:
    body = w.providers.get(name) or w.pools[name]
    status: Json = body.get("status") or {}
    return status


def condition(status: Json, type_: str) -> tuple[str, str]:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return (c["status"], c["reason"])
    return ("", "")


def node_name(provider: str) -> str:
    return nodes.node_name(provider)
