"""A pool's export to Kueue (``kueue.x-k8s.io/v1beta2``): flavors and a ClusterQueue. Pure.

For a RegionPool with ``spec.kueue`` the operator keeps:

* one ResourceFlavor per accelerator model of the pool, and one (``fc-<pool>-cpu``) for
  providers without accelerators. A provider belongs to the flavor of the model its
  virtual node is labelled with (``fedcompute.io/accelerator``: its largest model, or
  ``none``), so the flavor's ``nodeLabels`` (pool and accelerator labels) select exactly
  the pool's virtual nodes of that model; its ``tolerations`` tolerate the virtual-node
  taint and the pool's own node taints, so pods Kueue admits may land there;
* one ClusterQueue with one resource group covering ``cpu``, ``memory`` and the pool's
  accelerator resource names, a flavor entry per flavor whose ``nominalQuota`` is the sum
  over the flavor's Ready, schedulable providers (``quota: Allocatable``: what they offer;
  ``Available``: what they have free), zero for a resource a flavor lacks. For the
  accelerator resources only devices of the flavor's model count. DRA devices are left
  out: Kueue quotas count extended resources, not DRA drivers.

Objects carry the operator's label and the pool as owner, so they are deleted with it.
An object of an exported name that the operator did not create is never touched: the pool
reports it (``KueueExported=False``, reason ``NameTaken``). Writes happen only on change:
the planner compares what it wants with what was observed, field by field, ignoring the
defaults Kueue fills in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from fedcompute import quantities
from fedcompute.api import API_VERSION
from fedcompute.api.common import FALSE, TRUE, ConditionStatus
from fedcompute.api.pool import KIND as POOL_KIND
from fedcompute.api.pool import PLURAL as POOLS
from fedcompute.api.pool import Reason, RegionPool
from fedcompute.capacity import nodes
from fedcompute.capacity.providers import ProviderView
from fedcompute.intents import CreateObject, DeleteObject, Intent, PatchObject

GROUP_VERSION: Final = "kueue.x-k8s.io/v1beta2"
API_PATH: Final = f"/apis/{GROUP_VERSION}"
FLAVORS: Final = "resourceflavors"
QUEUES: Final = "clusterqueues"
FLAVORS_PATH: Final = f"{API_PATH}/{FLAVORS}"
QUEUES_PATH: Final = f"{API_PATH}/{QUEUES}"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGER: Final = "fedcompute"
SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGER}"
"""The label selector of every object the operator exports to Kueue."""
MAX_FLAVORS: Final = 64
MAX_RESOURCES: Final = 64
MAX_TOLERATIONS: Final = 8
_BASE_RESOURCES: Final = ("cpu", "memory")
_NOT_NAME: Final = re.compile(r"[^a-z0-9.-]+")

Json = dict[str, Any]
Objects = Mapping[str, Mapping[str, Json]]
"""Observed exported objects: collection -> name -> body."""


def queue_name(pool: RegionPool) -> str:
    """The ClusterQueue's name: ``spec.kueue.clusterQueue``, else ``fc-<pool>``."""
    export = pool.spec.kueue
    return (export.cluster_queue if export else None) or f"fc-{pool.name}"


def flavor_name(pool: str, model: str | None) -> str:
    """``fc-<pool>-<model, lower-cased>`` (``fc-<pool>-cpu`` without a model), a DNS
    subdomain; a short hash keeps spellings that lower-case alike apart."""
    if model is None:
        return f"fc-{pool}-cpu"
    slug = _NOT_NAME.sub("-", model.lower()).strip("-.")[:150] or "model"
    if slug != model:
        slug = f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:6]}"
    return f"fc-{pool}-{slug}"


def flavor_model(view: ProviderView) -> str | None:
    """The model of a provider's flavor: the one its virtual node is labelled with."""
    return nodes.top_accelerator(view)


def _is_extended(resource: str) -> bool:
    return "/" in resource


@dataclass
class _Flavor:
    name: str
    model: str | None
    quota: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class KueuePlan:
    """The writes of one pool's export and its ``KueueExported`` condition."""

    intents: tuple[Intent, ...]
    condition: tuple[ConditionStatus, str, str] | None
    """(status, reason, message); None when the pool does not export (no condition)."""


def _owner_reference(pool: RegionPool) -> Json:
    return {
        "apiVersion": API_VERSION,
        "kind": POOL_KIND,
        "name": pool.name,
        "uid": pool.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _metadata(pool: RegionPool, name: str) -> Json:
    return {
        "name": name,
        "labels": {LABEL_MANAGED_BY: MANAGER, nodes.LABEL_POOL: pool.name},
        "ownerReferences": [_owner_reference(pool)],
    }


def _flavors(pool: RegionPool, views: Sequence[ProviderView]) -> tuple[list[_Flavor], int]:
    """The pool's flavors with their quotas (the largest kept within Kueue's bound)."""
    available = pool.spec.kueue is not None and pool.spec.kueue.quota == "Available"
    by_model: dict[str | None, _Flavor] = {}
    for view in views:
        model = flavor_model(view)
        flavor = by_model.get(model)
        if flavor is None:
            flavor = by_model[model] = _Flavor(flavor_name(pool.name, model), model)
        if not view.offered:
            continue
        figures = view.available if available else view.allocatable
        for resource in _BASE_RESOURCES:
            value = figures.get(resource)
            if value is not None:
                flavor.quota[resource] = flavor.quota.get(resource, Decimal(0)) + value
        for device in view.accelerators:
            if device.model != model or not _is_extended(device.resource_name):
                continue
            count = Decimal(device.available if available else device.allocatable)
            resource = device.resource_name
            flavor.quota[resource] = flavor.quota.get(resource, Decimal(0)) + count
    flavors = sorted(by_model.values(), key=lambda f: f.name)
    if len(flavors) <= MAX_FLAVORS:
        return flavors, 0
    kept = sorted(flavors, key=lambda f: (-sum(f.quota.values()), f.name))[:MAX_FLAVORS]
    return sorted(kept, key=lambda f: f.name), len(flavors) - MAX_FLAVORS


def _tolerations(pool: RegionPool) -> list[Json]:
    taints: list[Json] = [dict(nodes.VIRTUAL_TAINT)]
    template = pool.spec.node_template
    for taint in (template.taints or []) if template else []:
        entry: Json = {"key": taint.key, "effect": taint.effect}
        if taint.value is not None:
            entry["value"] = taint.value
        if entry != nodes.VIRTUAL_TAINT:
            taints.append(entry)
    return [
        {"key": t["key"], "operator": "Equal", "value": t.get("value", ""), "effect": t["effect"]}
        for t in taints[:MAX_TOLERATIONS]
    ]


def _flavor_spec(pool: RegionPool, flavor: _Flavor) -> Json:
    return {
        "nodeLabels": {
            nodes.LABEL_POOL: pool.name,
            nodes.LABEL_ACCELERATOR: flavor.model or nodes.NO_ACCELERATOR,
        },
        "tolerations": _tolerations(pool),
    }


def _queue_spec(pool: RegionPool, flavors: Sequence[_Flavor]) -> Json:
    extended = sorted({r for f in flavors for r in f.quota if _is_extended(r)})
    covered = [*_BASE_RESOURCES, *extended][:MAX_RESOURCES]
    spec: Json = {"namespaceSelector": {}}
    if flavors:  # Kueue refuses a resource group without flavors; none admits nothing
        spec["resourceGroups"] = [
            {
                "coveredResources": covered,
                "flavors": [
                    {
                        "name": f.name,
                        "resources": [
                            {
                                "name": r,
                                "nominalQuota": quantities.format_resource(
                                    r, quantities.clamp(f.quota.get(r, Decimal(0)))
                                ),
                            }
                            for r in covered
                        ],
                    }
                    for f in flavors
                ],
            }
        ]
    export = pool.spec.kueue
    if export is not None and export.cohort:
        spec["cohortName"] = export.cohort
    return spec


def _pool_of(body: Json) -> str | None:
    """The pool an exported object belongs to; None when fedcompute did not create it."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGER:
        return None
    pool = labels.get(nodes.LABEL_POOL)
    return pool if isinstance(pool, str) and pool else None


def owned_by(body: Json, pool: str) -> bool:
    """Whether fedcompute created ``body`` for ``pool``."""
    return _pool_of(body) == pool


def orphans(observed: Objects, pools: set[str]) -> list[Intent]:
    """Deletions of exported objects whose pool no longer exists (the garbage collector
    does it too, through the owner reference, where the host runs one)."""
    found: dict[str, list[tuple[str, str, Json]]] = {}
    for collection in (QUEUES, FLAVORS):
        for name, body in sorted(observed.get(collection, {}).items()):
            pool = _pool_of(body)
            if pool is not None and pool not in pools:
                found.setdefault(pool, []).append((collection, name, body))
    return [
        intent
        for pool, leftovers in sorted(found.items())
        for intent in _deletes((POOLS, pool), leftovers, keep=set())
    ]


_OPTIONAL: Final = ("cohortName", "resourceGroups")
"""Queue fields fedcompute sets only sometimes: removed when it no longer wants them."""


def _differs(wanted: Json, observed: Json) -> bool:
    """Whether any field fedcompute sets differs (fields Kueue defaults are not compared)."""
    have = observed.get("spec") or {}
    return any(have.get(key) != value for key, value in wanted.items()) or any(
        key not in wanted for key in _OPTIONAL if key in have
    )


def plan_export(
    pool: RegionPool,
    views: Sequence[ProviderView],
    observed: Objects,
    *,
    installed: bool,
    enabled: bool = True,
    refused: str | None = None,
) -> KueuePlan:
    """The writes that make ``pool``'s Kueue objects what its providers say, and the
    condition that reports it. ``observed`` holds the exported objects seen (ours, and any
    object read back after a create found the name taken); ``refused`` a write Kueue (or
    the API server) refused last time."""
    owner = (POOLS, pool.name)
    leftovers = _leftovers(pool, observed)
    if pool.spec.kueue is None:
        deletes = _deletes(owner, leftovers, keep=set())
        return KueuePlan(tuple(deletes), None)
    if not enabled:
        return KueuePlan(
            (),
            (
                FALSE,
                Reason.KUEUE_EXPORT_DISABLED,
                "the operator runs without --kueue (chart value kueue.enabled): nothing is "
                "exported",
            ),
        )
    if not installed:
        return KueuePlan(
            (),
            (
                FALSE,
                Reason.KUEUE_NOT_INSTALLED,
                f"{GROUP_VERSION} is not served: install Kueue (its CRDs) to export this pool",
            ),
        )
    flavors, dropped = _flavors(pool, views)
    wanted: list[tuple[str, str, str, Json]] = [
        (FLAVORS, FLAVORS_PATH, f.name, _flavor_spec(pool, f)) for f in flavors
    ]
    queue = queue_name(pool)
    wanted.append((QUEUES, QUEUES_PATH, queue, _queue_spec(pool, flavors)))
    intents: list[Intent] = []
    taken: list[str] = []
    queue_intents: list[Intent] = []
    for collection, path, name, spec in wanted:
        body = observed.get(collection, {}).get(name)
        target = queue_intents if collection == QUEUES else intents
        if body is None:
            target.append(
                CreateObject(
                    owner,
                    collection,
                    path,
                    name,
                    {
                        "apiVersion": GROUP_VERSION,
                        "kind": "ClusterQueue" if collection == QUEUES else "ResourceFlavor",
                        "metadata": _metadata(pool, name),
                        "spec": spec,
                    },
                )
            )
        elif not owned_by(body, pool.name):
            taken.append(f"{'ClusterQueue' if collection == QUEUES else 'ResourceFlavor'} {name}")
        elif _differs(spec, body):
            patch: Json = {"spec": dict(spec)}
            for key in _OPTIONAL:
                if key in (body.get("spec") or {}) and key not in spec:
                    patch["spec"][key] = None
            target.append(PatchObject(owner, collection, path, name, patch))
    keep = {(c, n) for c, _, n, _ in wanted}
    # Flavors first (a new one must exist before the queue names it), then the queue, then
    # deletions (Kueue holds a flavor while a queue still names it).
    intents += queue_intents
    intents += _deletes(owner, leftovers, keep=keep)
    return KueuePlan(
        tuple(intents),
        _condition(queue, flavors, dropped=dropped, taken=taken, intents=intents, refused=refused),
    )


def _leftovers(pool: RegionPool, observed: Objects) -> list[tuple[str, str, Json]]:
    return [
        (collection, name, body)
        for collection in (QUEUES, FLAVORS)
        for name, body in sorted(observed.get(collection, {}).items())
        if owned_by(body, pool.name)
    ]


def _deletes(
    owner: tuple[str, str],
    leftovers: Iterable[tuple[str, str, Json]],
    *,
    keep: set[tuple[str, str]],
) -> list[Intent]:
    deletes: list[Intent] = []
    for collection, name, body in leftovers:
        meta = body.get("metadata") or {}
        if (collection, name) in keep or meta.get("deletionTimestamp"):
            continue
        path = QUEUES_PATH if collection == QUEUES else FLAVORS_PATH
        deletes.append(DeleteObject(owner, collection, path, name, str(meta.get("uid") or "")))
    return deletes


def _condition(
    queue: str,
    flavors: Sequence[_Flavor],
    *,
    dropped: int,
    taken: Sequence[str],
    intents: Sequence[Intent],
    refused: str | None,
) -> tuple[ConditionStatus, str, str]:
    if taken:
        return (
            FALSE,
            Reason.NAME_TAKEN,
            f"{', '.join(taken[:5])} exist{'s' if len(taken) == 1 else ''} and "
            f"{'was' if len(taken) == 1 else 'were'} not created by fedcompute: left as "
            "they are (rename spec.kueue.clusterQueue, or delete them)",
        )
    if refused is not None:
        return FALSE, Reason.WRITE_REJECTED, refused
    count = len(flavors)
    message = f"ClusterQueue {queue} with {count} flavor{'s' if count != 1 else ''}"
    if dropped:
        message += f" ({dropped} smallest left out: Kueue takes at most {MAX_FLAVORS})"
    if any(isinstance(i, CreateObject) and i.collection == QUEUES for i in intents):
        # Only before the queue first exists: quota updates keep the condition True, so a
        # changing figure costs no status write.
        return FALSE, Reason.EXPORT_PENDING, f"creating {message}"
    return TRUE, Reason.EXPORTED, f"{message}; quotas follow the pool's figures"
