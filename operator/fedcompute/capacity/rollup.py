"""A pool's status from its claimed providers' views. Pure.

``capacity`` sums every claimed provider with known figures; ``allocatable``,
``allocated``, ``available`` and ``computePower`` sum only providers that are offered
(Ready and schedulable), because only those back the pool's virtual nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from fedcompute import quantities
from fedcompute.api.common import (
    FALSE,
    TRUE,
    ConditionSet,
    ConditionStatus,
    Folded,
    ReadyCount,
    TflopsByPrecision,
)
from fedcompute.api.pool import (
    ConditionType,
    PoolAcceleratorStatus,
    Reason,
    RegionPool,
    RegionPoolStatus,
    RegionStatus,
)
from fedcompute.capacity import bounds, inventory
from fedcompute.capacity.providers import ProviderView

_LISTED = 5
ORDER: Final = (
    ConditionType.READY,
    ConditionType.DEGRADED,
    ConditionType.RECONCILING,
    ConditionType.STALLED,
    ConditionType.KUEUE_EXPORTED,
)
"""Condition types in the order the status lists them."""


def _names(views: Sequence[ProviderView]) -> str:
    names = [v.name for v in views[:_LISTED]]
    more = len(views) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _fold_one(values: quantities.Quantities) -> quantities.Quantities:
    """One region's map within its bound (its folded names count in the pool's figure)."""
    return bounds.fold_maps({"m": values}, keep_first=bounds.PRIORITY_RESOURCES)[0]["m"]


def _regions(views: Sequence[ProviderView]) -> tuple[list[RegionStatus], int]:
    regions: list[RegionStatus] = []
    for region in sorted({v.region for v in views}):
        members = [v for v in views if v.region == region]
        serving = [v for v in members if v.offered]
        regions.append(
            RegionStatus(
                name=region,
                providers=len(members),
                ready_providers=sum(1 for v in members if v.ready),
                allocatable=_fold_one(quantities.total_of(v.allocatable for v in serving)),
                available=_fold_one(quantities.total_of(v.available for v in serving)),
                compute_power=_power(quantities.total_of(v.compute_power for v in serving)),
            )
        )
    return bounds.fold_list(
        regions,
        limit=bounds.max_items(RegionPoolStatus, "regions"),
        size=lambda r: r.providers,
        name=lambda r: r.name,
        merge=lambda rest: RegionStatus(
            name=bounds.OTHER_REGIONS,
            providers=sum(r.providers for r in rest),
            ready_providers=sum(r.ready_providers for r in rest),
            allocatable=_fold_one(quantities.total_of(r.allocatable or {} for r in rest)),
            available=_fold_one(quantities.total_of(r.available or {} for r in rest)),
            compute_power=_power(
                quantities.total_of(
                    r.compute_power.as_dict() for r in rest if r.compute_power is not None
                )
            ),
        ),
    )


def _power(values: quantities.Quantities) -> TflopsByPrecision | None:
    return TflopsByPrecision.from_dict(values) if values else None


def _accelerators(offered: Sequence[ProviderView]) -> tuple[list[PoolAcceleratorStatus], int]:
    models: dict[str, list[inventory.AcceleratorInventory]] = {}
    for v in offered:
        for device in v.accelerators:
            models.setdefault(device.model, []).append(device)
    accelerators = [_pool_model(m, devices) for m, devices in sorted(models.items())]
    return bounds.fold_list(
        accelerators,
        limit=bounds.max_items(RegionPoolStatus, "accelerators"),
        size=lambda a: a.count,
        name=lambda a: a.model,
        merge=lambda rest: _merged(bounds.OTHER_MODELS, None, rest),
    )


def _pool_model(
    model: str, devices: Sequence[inventory.AcceleratorInventory]
) -> PoolAcceleratorStatus:
    slots: dict[str, int] | None = None
    for d in devices:
        slots = inventory.add_slots(slots, d.slots)
    vendors = {d.vendor for d in devices if bounds.valid_label_value(d.vendor)}
    return PoolAcceleratorStatus(
        model=model,
        vendor=vendors.pop() if len(vendors) == 1 else None,
        count=bounds.clamp(sum(d.allocatable for d in devices)),
        allocated=bounds.clamp(sum(d.allocated for d in devices)),
        available=bounds.clamp(sum(d.available for d in devices)),
        slots={k: bounds.clamp(v) for k, v in slots.items()} if slots is not None else None,
    )


def _merged(
    model: str, vendor: str | None, rest: Sequence[PoolAcceleratorStatus]
) -> PoolAcceleratorStatus:
    slots: dict[str, int] | None = None
    for a in rest:
        slots = inventory.add_slots(slots, a.slots)
    return PoolAcceleratorStatus(
        model=model,
        vendor=vendor,
        count=bounds.clamp(sum(a.count for a in rest)),
        allocated=bounds.clamp(sum(a.allocated or 0 for a in rest)),
        available=bounds.clamp(sum(a.available for a in rest)),
        slots={k: bounds.clamp(v) for k, v in slots.items()} if slots is not None else None,
    )


def _conditions(
    pool: RegionPool,
    views: Sequence[ProviderView],
    now: datetime,
    rejected: str | None,
) -> ConditionSet:
    previous = pool.status or RegionPoolStatus()
    conditions = ConditionSet(
        previous.conditions,
        generation=pool.metadata.generation,
        now=now,
        order=ORDER,
    )
    ready = [v for v in views if v.ready]
    not_ready = [v for v in views if not v.ready]
    minimum = pool.spec.min_ready_providers
    suffix = " (paused: nodes are not updated)" if pool.spec.paused else ""
    if rejected is not None:
        conditions.set(ConditionType.READY, FALSE, Reason.WRITE_REJECTED, rejected)
    elif not views and minimum > 0:
        conditions.set(
            ConditionType.READY, FALSE, Reason.NO_PROVIDERS, "no provider is claimed" + suffix
        )
    elif len(ready) >= minimum:
        conditions.set(
            ConditionType.READY,
            TRUE,
            Reason.ENOUGH_PROVIDERS_READY,
            f"{len(ready)} of {len(views)} providers Ready (minimum {minimum})" + suffix,
        )
    else:
        conditions.set(
            ConditionType.READY,
            FALSE,
            Reason.NOT_ENOUGH_PROVIDERS_READY,
            f"{len(ready)} of {len(views)} providers Ready, {minimum} needed" + suffix,
        )
    if rejected is not None:
        conditions.set(ConditionType.DEGRADED, TRUE, Reason.WRITE_REJECTED, rejected)
    elif not_ready:
        conditions.set(
            ConditionType.DEGRADED,
            TRUE,
            Reason.PROVIDERS_NOT_READY,
            f"{len(not_ready)} provider{'s' if len(not_ready) != 1 else ''} not Ready: "
            f"{_names(not_ready)}",
        )
    else:
        conditions.set(ConditionType.DEGRADED, FALSE, Reason.ALL_PROVIDERS_READY, "")
    _progress(conditions, [v for v in views if v.reconciling], rejected)
    return conditions


def _with_kueue(
    conditions: ConditionSet, kueue: tuple[ConditionStatus, str, str] | None
) -> ConditionSet:
    if kueue is None:
        conditions.discard(ConditionType.KUEUE_EXPORTED)
    else:
        status, reason, message = kueue
        conditions.set(ConditionType.KUEUE_EXPORTED, status, reason, message)
    return conditions


def _progress(
    conditions: ConditionSet, waiting: Sequence[ProviderView], rejected: str | None
) -> None:
    """Reconciling while claimed providers wait for a collection; Stalled when refused."""
    if waiting and rejected is None:
        conditions.set(
            ConditionType.RECONCILING,
            TRUE,
            Reason.AWAITING_COLLECTION,
            f"{len(waiting)} provider{'s' if len(waiting) != 1 else ''} waiting for a "
            f"collection: {_names(waiting)}",
        )
    else:
        conditions.set(ConditionType.RECONCILING, FALSE, Reason.RECONCILED, "")
    if rejected is not None:
        conditions.set(ConditionType.STALLED, TRUE, Reason.WRITE_REJECTED, rejected)
    else:
        conditions.set(ConditionType.STALLED, FALSE, Reason.NOT_STALLED, "")


def plan_pool(
    pool: RegionPool,
    views: Sequence[ProviderView],
    *,
    nodes: int,
    now: datetime,
    rejected: str | None = None,
    kueue: tuple[ConditionStatus, str, str] | None = None,
) -> RegionPoolStatus:
    """Desired status of ``pool`` given its claimed providers (sorted by name).

    ``rejected`` describes the pool's own write the API server refused, if any; ``kueue``
    is the ``KueueExported`` condition (None: the pool does not export, no condition).
    """
    offered = [v for v in views if v.offered]
    regions, folded_regions = _regions(views)
    accelerators, folded_models = _accelerators(offered)
    maps, folded_resources = bounds.fold_maps(
        {
            "capacity": quantities.total_of(v.capacity for v in views),
            "allocatable": quantities.total_of(v.allocatable for v in offered),
            "allocated": quantities.total_of(v.allocated for v in offered),
            "available": quantities.total_of(v.available for v in offered),
        },
        keep_first=(
            *bounds.PRIORITY_RESOURCES,
            *{d.resource_name for v in offered for d in v.accelerators},
        ),
    )
    power = quantities.total_of(v.compute_power for v in offered)
    folded = None
    if folded_regions or folded_models or folded_resources:
        folded = Folded(
            resources=folded_resources or None,
            accelerators=folded_models or None,
            regions=folded_regions or None,
        )
    fields: dict[str, Any] = {
        "observed_generation": pool.metadata.generation,
        "conditions": _with_kueue(_conditions(pool, views, now, rejected), kueue).result(),
        "providers": ReadyCount(total=len(views), ready=sum(1 for v in views if v.ready)),
        **maps,
        "regions": regions or None,
        "accelerators": accelerators or None,
        "accelerator_count": bounds.clamp(sum(a.count for a in accelerators)),
        "compute_power": _power(power),
        "compute_power_excluded_devices": bounds.clamp(
            sum(v.compute_power_excluded for v in offered)
        )
        or None,
        "nodes": nodes,
        "folded": folded,
    }
    return RegionPoolStatus(**fields)
