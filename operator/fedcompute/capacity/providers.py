"""One provider's desired status from its spec, its last collections and its claim. Pure.

The rules that make the figures honest live here:

* a failed collection never zeroes the figures: the last good inventory stays, with
  ``Collected=False`` and the failure's reason;
* once ``staleAfter`` passes without a good collection, ``Ready=False`` reason ``Stale``;
* ``lastCollectionTime`` moves only when something else in the status changes, so a
  provider whose figures hold still costs no status writes (the metric
  ``fedcompute_provider_last_collection_timestamp_seconds`` carries every collection).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fedcompute.api.common import (
    FALSE,
    TRUE,
    UNKNOWN,
    Condition,
    ConditionSet,
    ReadyCount,
    TflopsByPrecision,
    find_condition,
)
from fedcompute.api.common import format_duration as fmt_duration
from fedcompute.api.provider import (
    ComputeProvider,
    ComputeProviderStatus,
    ConditionType,
    ProviderAcceleratorStatus,
    Reason,
)
from fedcompute.capacity import inventory
from fedcompute.capacity.claims import Claim
from fedcompute.quantities import Quantities


@dataclass(frozen=True)
class Collection:
    """What the collector last learned about a member-cluster provider."""

    inventory: inventory.MemberInventory | None = None
    """The last good inventory (kept across failures)."""
    succeeded_at: datetime | None = None
    """When ``inventory`` was collected."""
    attempted_at: datetime | None = None
    error_reason: str | None = None
    """Reason of the last attempt's failure; None when it succeeded."""
    error_message: str = ""

    def failed(self, at: datetime, reason: str, message: str) -> Collection:
        """The same figures, with a failed attempt recorded."""
        return Collection(self.inventory, self.succeeded_at, at, reason, message)


@dataclass(frozen=True)
class ProviderView:
    """A provider's desired status plus the facts pools and nodes are built from."""

    name: str
    region: str
    ready: bool
    """Ready: figures are fresh (or static)."""
    offered: bool
    """Ready and schedulable: counts toward its pool's allocatable and available."""
    claim: Claim | None
    status: ComputeProviderStatus
    capacity: Quantities = field(default_factory=dict)
    allocatable: Quantities = field(default_factory=dict)
    allocated: Quantities = field(default_factory=dict)
    available: Quantities = field(default_factory=dict)
    accelerators: tuple[inventory.AcceleratorInventory, ...] = ()
    compute_power: Quantities = field(default_factory=dict)
    ready_reason: str = ""
    ready_message: str = ""

    @functools.cached_property
    def status_wire(self) -> dict[str, Any]:
        """``status`` in its wire form (computed once)."""
        return self.status.to_wire()

    @property
    def has_figures(self) -> bool:
        """Whether any good inventory is known."""
        return self.status.capacity is not None


def static_inventory(provider: ComputeProvider) -> inventory.MemberInventory:
    """Figures of a statically declared provider."""
    static = provider.spec.source.static
    assert static is not None
    declared = [
        inventory.DeclaredAccelerator(a.model, a.count, a.resource_name)
        for a in static.accelerators or []
    ]
    return inventory.summarize_static(
        static.resources,
        declared,
        provider.spec.reserved or {},
        static.node_count or 0,
    )


def static_compute_power(provider: ComputeProvider) -> Quantities:
    """Sum of count x tflopsPerDevice per precision over the declared accelerators."""
    static = provider.spec.source.static
    if static is None:
        return {}
    return inventory.compute_power(
        (a.count, a.tflops_per_device.as_dict())
        for a in static.accelerators or []
        if a.tflops_per_device is not None
    )


def _accelerator_status(
    devices: tuple[inventory.AcceleratorInventory, ...],
) -> list[ProviderAcceleratorStatus]:
    merged: dict[str, ProviderAcceleratorStatus] = {}
    for d in devices:
        # One entry per model (the status list is keyed by model).
        prior = merged.get(d.model)
        if prior is None:
            merged[d.model] = ProviderAcceleratorStatus(
                model=d.model,
                resource_name=d.resource_name,
                count=d.allocatable,
                allocated=d.allocated,
                available=d.available,
            )
        else:
            merged[d.model] = prior.model_copy(
                update={
                    "count": prior.count + d.allocatable,
                    "allocated": prior.allocated + d.allocated,
                    "available": prior.available + d.available,
                }
            )
    return [merged[m] for m in sorted(merged)]


def _carried(
    previous: ComputeProviderStatus,
) -> tuple[inventory.MemberInventory | None, datetime | None, Condition] | None:
    """The figures and Ready condition a previous operator process last wrote, if any."""
    prior_ready = find_condition(previous.conditions, ConditionType.READY)
    if prior_ready is None:
        return None
    if previous.capacity is None:
        return None, previous.last_collection_time, prior_ready
    nodes = previous.nodes or ReadyCount()
    figures = inventory.MemberInventory(
        capacity=dict(previous.capacity),
        allocatable=dict(previous.allocatable or {}),
        allocated=dict(previous.allocated or {}),
        available=dict(previous.available or {}),
        nodes_total=nodes.total,
        nodes_ready=nodes.ready,
        nodes_counted=nodes.ready,
        accelerators=tuple(
            inventory.AcceleratorInventory(
                model=a.model,
                resource_name=a.resource_name,
                nodes=0,
                capacity=a.count,
                allocatable=a.count,
                allocated=a.allocated,
                available=a.available,
            )
            for a in previous.accelerators or []
        ),
    )
    return figures, previous.last_collection_time, prior_ready


def resumed_collection(provider: ComputeProvider) -> Collection:
    """The collection state a restarted operator starts from: the figures in status.

    A first collection that fails after a restart keeps these figures (never zeroes
    them); staleness is then judged from ``status.lastCollectionTime``.
    """
    carried = _carried(provider.status or ComputeProviderStatus())
    if carried is None or carried[0] is None:
        return Collection()
    return Collection(inventory=carried[0], succeeded_at=carried[1])


def plan_provider(
    provider: ComputeProvider,
    *,
    collection: Collection | None,
    claim: Claim | None,
    now: datetime,
) -> ProviderView:
    """Desired status of ``provider``; keeps transition times of unchanged conditions."""
    spec = provider.spec
    previous = provider.status or ComputeProviderStatus()
    generation = provider.metadata.generation
    conditions = ConditionSet(
        previous.conditions,
        generation=generation,
        now=now,
        order=(ConditionType.READY, ConditionType.COLLECTED, ConditionType.CLAIMED),
    )

    figures: inventory.MemberInventory | None
    power: Quantities = {}
    keep_ready = False
    succeeded_at: datetime | None
    if spec.source.static is not None:
        figures = static_inventory(provider)
        power = static_compute_power(provider)
        succeeded_at = now
        conditions.set(
            ConditionType.COLLECTED, TRUE, Reason.STATIC_INVENTORY, "inventory declared in spec"
        )
        ready, ready_reason, ready_message = True, Reason.STATIC_INVENTORY, "static inventory"
    elif collection is None and (carried := _carried(previous)) is not None:
        # Nothing collected yet by this process (it just started): what the previous one
        # wrote stands until the first collection, so a restart rewrites nothing.
        figures, succeeded_at, prior_ready = carried
        ready = prior_ready.status == TRUE
        ready_reason, ready_message = prior_ready.reason, prior_ready.message
        keep_ready = True
    else:
        c = collection or Collection()
        figures, succeeded_at = c.inventory, c.succeeded_at
        if c.error_reason is not None:
            conditions.set(ConditionType.COLLECTED, FALSE, c.error_reason, c.error_message)
        elif c.succeeded_at is not None:
            conditions.set(
                ConditionType.COLLECTED, TRUE, Reason.COLLECTED, "member cluster collected"
            )
        else:
            conditions.set(ConditionType.COLLECTED, UNKNOWN, Reason.PENDING, "not collected yet")
        stale_after = spec.monitoring.stale_after
        if c.succeeded_at is None:
            if c.error_reason is not None:
                ready, ready_reason = False, c.error_reason
                ready_message = f"never collected: {c.error_message}"
            else:
                ready, ready_reason, ready_message = False, Reason.PENDING, "not collected yet"
        elif now - c.succeeded_at > timedelta(seconds=stale_after):
            ready, ready_reason = False, Reason.STALE
            ready_message = (
                f"no good collection for more than {fmt_duration(stale_after)} "
                f"(last at {c.succeeded_at.strftime('%Y-%m-%dT%H:%M:%SZ')})"
            )
        elif figures is not None and figures.nodes_ready == 0:
            ready, ready_reason = False, Reason.NO_READY_NODES
            ready_message = f"none of the member's {figures.nodes_total} selected nodes is Ready"
        else:
            ready, ready_reason = True, Reason.FRESH
            ready_message = f"collected within staleAfter ({fmt_duration(stale_after)})"

    if keep_ready:
        pass
    elif ready:
        conditions.set(ConditionType.READY, TRUE, ready_reason, ready_message)
    elif ready_reason == Reason.PENDING:
        conditions.set(ConditionType.READY, UNKNOWN, ready_reason, ready_message)
    else:
        conditions.set(ConditionType.READY, FALSE, ready_reason, ready_message)

    if claim is not None:
        message = f"claimed by RegionPool {claim.pool} (priority {claim.priority})"
        if claim.contenders:
            message += f"; also matched by {', '.join(claim.contenders[:5])}"
        conditions.set(ConditionType.CLAIMED, TRUE, Reason.CLAIMED, message)
    else:
        conditions.set(
            ConditionType.CLAIMED, FALSE, Reason.NO_MATCHING_POOL, "no RegionPool selects it"
        )

    fields: dict[str, Any] = {
        "observed_generation": generation,
        "conditions": conditions.result(),
        "pool": claim.pool if claim else None,
        "last_collection_time": previous.last_collection_time,
    }
    if figures is not None:
        devices = _accelerator_status(figures.accelerators)
        fields.update(
            capacity=dict(figures.capacity),
            allocatable=dict(figures.allocatable),
            allocated=dict(figures.allocated),
            available=dict(figures.available),
            accelerators=devices or None,
            accelerator_count=sum(d.count for d in devices),
            nodes=ReadyCount(total=figures.nodes_total, ready=figures.nodes_ready),
            compute_power=TflopsByPrecision.from_dict(power) if power else None,
        )
    status = ComputeProviderStatus(**fields)
    # lastCollectionTime moves only together with a real change (see module docstring).
    if status.to_wire() != previous.to_wire() or previous.last_collection_time is None:
        status = status.model_copy(update={"last_collection_time": succeeded_at})

    offered = ready and not spec.unschedulable
    return ProviderView(
        name=provider.name,
        region=spec.region,
        ready=ready,
        offered=offered,
        claim=claim,
        status=status,
        capacity=dict(figures.capacity) if figures else {},
        allocatable=dict(figures.allocatable) if figures else {},
        allocated=dict(figures.allocated) if figures else {},
        available=dict(figures.available) if figures else {},
        accelerators=figures.accelerators if figures else (),
        compute_power=power,
        ready_reason=ready_reason,
        ready_message=ready_message,
    )
