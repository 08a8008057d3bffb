"""A pool's status from its claimed providers' views. Pure.

``capacity`` sums every claimed provider with known figures; ``allocatable``,
``allocated``, ``available`` and ``computePower`` sum only providers that are offered
(Ready and schedulable), because only those back the pool's virtual nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fedcompute import quantities
from fedcompute.api.common import (
    FALSE,
    TRUE,
    ConditionSet,
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
from fedcompute.capacity.providers import ProviderView

_LISTED = 5


def _names(views: Sequence[ProviderView]) -> str:
    names = [v.name for v in views[:_LISTED]]
    more = len(views) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def plan_pool(
    pool: RegionPool,
    views: Sequence[ProviderView],
    *,
    nodes: int,
    now: datetime,
) -> RegionPoolStatus:
    """Desired status of ``pool`` given its claimed providers (sorted by name)."""
    previous = pool.status or RegionPoolStatus()
    generation = pool.metadata.generation
    offered = [v for v in views if v.offered]
    ready = [v for v in views if v.ready]
    not_ready = [v for v in views if not v.ready]

    regions: list[RegionStatus] = []
    for region in sorted({v.region for v in views}):
        members = [v for v in views if v.region == region]
        serving = [v for v in members if v.offered]
        regions.append(
            RegionStatus(
                name=region,
                providers=len(members),
                ready_providers=sum(1 for v in members if v.ready),
                allocatable=quantities.total_of(v.allocatable for v in serving),
                available=quantities.total_of(v.available for v in serving),
            )
        )

    models: dict[str, list[int]] = {}
    for v in offered:
        for device in v.accelerators:
            tally = models.setdefault(device.model, [0, 0])
            tally[0] += device.allocatable
            tally[1] += device.available
    accelerators = [
        PoolAcceleratorStatus(model=m, count=c, available=a) for m, (c, a) in sorted(models.items())
    ]
    power = quantities.total_of(v.compute_power for v in offered)

    conditions = ConditionSet(
        previous.conditions,
        generation=generation,
        now=now,
        order=(ConditionType.READY, ConditionType.DEGRADED),
    )
    minimum = pool.spec.min_ready_providers

    suffix = " (paused: nodes are not updated)" if pool.spec.paused else ""
    if not views and minimum > 0:
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
    if not_ready:
        conditions.set(
            ConditionType.DEGRADED,
            TRUE,
            Reason.PROVIDERS_NOT_READY,
            f"{len(not_ready)} provider{'s' if len(not_ready) != 1 else ''} not Ready: "
            f"{_names(not_ready)}",
        )
    else:
        conditions.set(ConditionType.DEGRADED, FALSE, Reason.ALL_PROVIDERS_READY, "")

    fields: dict[str, Any] = {
        "observed_generation": generation,
        "conditions": conditions.result(),
        "providers": ReadyCount(total=len(views), ready=len(ready)),
        "capacity": quantities.total_of(v.capacity for v in views),
        "allocatable": quantities.total_of(v.allocatable for v in offered),
        "allocated": quantities.total_of(v.allocated for v in offered),
        "available": quantities.total_of(v.available for v in offered),
        "regions": regions or None,
        "accelerators": accelerators or None,
        "accelerator_count": sum(a.count for a in accelerators),
        "compute_power": TflopsByPrecision.from_dict(power) if power else None,
        "nodes": nodes,
    }
    return RegionPoolStatus(**fields)
