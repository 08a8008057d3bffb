"""One provider's desired status from its spec, its last collections and its claim. Pure.

The rules that make the figures honest live here:

* a failed collection never zeroes the figures: the last good inventory stays, with
  ``Collected=False`` and the failure's reason;
* once ``staleAfter`` passes without a good collection, ``Ready=False`` reason ``Stale``;
* ``lastCollectionTime`` moves only when something else in the status changes, so a
  provider whose figures hold still costs no status writes (the metric
  ``fedcompute_provider_last_collection_timestamp_seconds`` carries every collection);
  a ``lastCollectionTime`` later than what the operator knows is never trusted;
* after a restart the figures and Ready condition in status stand until the first
  collection, but staleness is counted from the restart at the latest;
* a write the API server refused turns ``Ready=False`` reason ``WriteRejected``;
* what does not fit the status bounds is folded (:mod:`fedcompute.capacity.bounds`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fedcompute.api.common import (
    FALSE,
    TRUE,
    UNKNOWN,
    ConditionSet,
    ConditionStatus,
    Folded,
    ReadyCount,
    TflopsByPrecision,
    find_condition,
)
from fedcompute.api.common import format_duration as fmt_duration
from fedcompute.api.provider import (
    STALLED_REASONS,
    ComputeProvider,
    ComputeProviderStatus,
    ConditionType,
    ProviderAcceleratorStatus,
    Reason,
)
from fedcompute.capacity import bounds, inventory
from fedcompute.capacity.claims import Claim
from fedcompute.quantities import Quantities

Json = dict[str, Any]


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
    carried_ready: tuple[ConditionStatus, str, str] | None = None
    """Ready (status, reason, message) a previous operator process wrote; set only until
    this process's first attempt (see :func:`resumed_collection`)."""
    generation: int | None = None
    """The provider's ``metadata.generation`` when the last attempt started (for a
    resumed collection, the one its status was written for)."""

    def failed(
        self, at: datetime, reason: str, message: str, *, generation: int | None = None
    ) -> Collection:
        """The same figures, with a failed attempt (of ``generation``) recorded."""
        return Collection(
            self.inventory,
            self.succeeded_at,
            at,
            reason,
            message,
            generation=generation if generation is not None else self.generation,
        )

    @property
    def resumed(self) -> bool:
        """Carried over from status by a restarted operator, not yet attempted since."""
        return self.carried_ready is not None and self.attempted_at is None


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
    status_wire: dict[str, Any]
    """The desired ``status`` in its wire form: the one copy kept (a model of it is made
    only when asked for, so thousands of views stay light)."""
    capacity: Quantities = field(default_factory=dict)
    allocatable: Quantities = field(default_factory=dict)
    allocated: Quantities = field(default_factory=dict)
    available: Quantities = field(default_factory=dict)
    accelerators: tuple[inventory.AcceleratorInventory, ...] = ()
    compute_power: Quantities = field(default_factory=dict)
    ready_reason: str = ""
    ready_message: str = ""
    reconciling: bool = False
    """Its figures do not describe its current spec yet (see the Reconciling condition)."""

    @property
    def status(self) -> ComputeProviderStatus:
        """The desired status as a model (parsed on each call: for tests and rare reads)."""
        return ComputeProviderStatus.model_validate(self.status_wire)

    @property
    def last_collection_time(self) -> datetime | None:
        """``status.lastCollectionTime`` (cheap: no model is built)."""
        value = self.status_wire.get("lastCollectionTime")
        if not isinstance(value, str):
            return None
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    @property
    def has_figures(self) -> bool:
        """Whether any good inventory is known."""
        return "capacity" in self.status_wire


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


def member_summarizer(
    provider: ComputeProvider,
) -> Callable[[list[Json], list[Json]], inventory.MemberInventory]:
    """How a member provider's node and pod lists become its figures."""
    source = provider.spec.source.kubernetes
    reserved = provider.spec.reserved or {}

    def summarize(nodes: list[Json], pods: list[Json]) -> inventory.MemberInventory:
        if source is None:
            raise ValueError(f"ComputeProvider {provider.name} has no member cluster")
        return inventory.summarize_member(
            nodes,
            pods,
            accelerator_model_label=source.accelerator_model_label,
            accelerator_resources=source.accelerator_resources,
            reserved=reserved,
        )

    return summarize


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


def _carried_figures(previous: ComputeProviderStatus) -> inventory.MemberInventory | None:
    """The figures a previous operator process last wrote, if any."""
    if previous.capacity is None:
        return None
    nodes = previous.nodes or ReadyCount()
    return inventory.MemberInventory(
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


def resumed_collection(provider: ComputeProvider, now: datetime) -> Collection:
    """The collection state a restarted operator starts from: what its status says.

    The figures and Ready condition stand until the first collection, so a restart
    rewrites nothing. Their age is never taken on trust: a provider that was Ready is
    counted as collected at the restart (``now``), so it turns Stale no later than
    ``staleAfter`` after it if no collection succeeds; a ``lastCollectionTime`` in the
    future is never believed.
    """
    previous = provider.status or ComputeProviderStatus()
    ready = find_condition(previous.conditions, ConditionType.READY)
    if ready is None:
        return Collection()
    figures = _carried_figures(previous)
    last = previous.last_collection_time
    if figures is None:
        succeeded_at = None
    elif ready.status == TRUE or last is None or last > now:
        succeeded_at = now
    else:
        succeeded_at = last
    return Collection(
        inventory=figures,
        succeeded_at=succeeded_at,
        carried_ready=(ready.status, ready.reason, ready.message),
        generation=previous.observed_generation,
    )


@dataclass(frozen=True)
class _Readiness:
    """What the figures and the collection say about Ready and Collected."""

    figures: inventory.MemberInventory | None
    succeeded_at: datetime | None
    ready: ConditionStatus
    reason: str
    message: str
    collected: tuple[ConditionStatus, str, str] | None
    """(status, reason, message) of Collected; None keeps the observed one."""
    awaiting: str = ""
    """Why the figures do not describe the current spec yet ('' when they do)."""


def _static_readiness(provider: ComputeProvider, now: datetime) -> _Readiness:
    return _Readiness(
        figures=static_inventory(provider),
        succeeded_at=now,
        ready=TRUE,
        reason=Reason.STATIC_INVENTORY,
        message="static inventory",
        collected=(TRUE, Reason.STATIC_INVENTORY, "inventory declared in spec"),
    )


def _member_readiness(provider: ComputeProvider, c: Collection, now: datetime) -> _Readiness:
    stale_after = provider.spec.monitoring.stale_after
    collected: tuple[ConditionStatus, str, str] | None
    if c.resumed:
        collected = None
    elif c.error_reason is not None:
        collected = (FALSE, c.error_reason, c.error_message)
    elif c.succeeded_at is not None:
        collected = (TRUE, Reason.COLLECTED, "member cluster collected")
    else:
        collected = (UNKNOWN, Reason.PENDING, "not collected yet")

    generation = provider.metadata.generation
    if c.generation is None:
        awaiting = "waiting for the first collection"
    elif generation is not None and c.generation != generation:
        awaiting = f"waiting for a collection of generation {generation}"
    else:
        awaiting = ""

    def result(ready: ConditionStatus, reason: str, message: str) -> _Readiness:
        return _Readiness(c.inventory, c.succeeded_at, ready, reason, message, collected, awaiting)

    if c.succeeded_at is not None and now - c.succeeded_at > timedelta(seconds=stale_after):
        return result(
            FALSE,
            Reason.STALE,
            f"no good collection for more than {fmt_duration(stale_after)} "
            f"(last at {c.succeeded_at.strftime('%Y-%m-%dT%H:%M:%SZ')})",
        )
    if c.resumed and c.carried_ready is not None:
        return result(*c.carried_ready)
    if c.succeeded_at is None:
        if c.error_reason is not None:
            return result(FALSE, c.error_reason, f"never collected: {c.error_message}")
        return result(UNKNOWN, Reason.PENDING, "not collected yet")
    if c.inventory is not None and c.inventory.nodes_ready == 0:
        return result(
            FALSE,
            Reason.NO_READY_NODES,
            f"none of the member's {c.inventory.nodes_total} selected nodes is Ready",
        )
    return result(TRUE, Reason.FRESH, f"collected within staleAfter ({fmt_duration(stale_after)})")


ORDER: Final = (
    ConditionType.READY,
    ConditionType.COLLECTED,
    ConditionType.CLAIMED,
    ConditionType.RECONCILING,
    ConditionType.STALLED,
)
"""Condition types in the order the status lists them."""


def _progress(conditions: ConditionSet, *, awaiting: str, stalled: tuple[str, str] | None) -> None:
    """The abnormal-true conditions kstatus reads: Reconciling and Stalled."""
    if awaiting:
        conditions.set(ConditionType.RECONCILING, TRUE, Reason.AWAITING_COLLECTION, awaiting)
    else:
        conditions.set(ConditionType.RECONCILING, FALSE, Reason.RECONCILED, "")
    if stalled is not None:
        conditions.set(ConditionType.STALLED, TRUE, *stalled)
    else:
        conditions.set(ConditionType.STALLED, FALSE, Reason.NOT_STALLED, "")


def _claimed(conditions: ConditionSet, claim: Claim | None) -> None:
    if claim is None:
        conditions.set(
            ConditionType.CLAIMED, FALSE, Reason.NO_MATCHING_POOL, "no RegionPool selects it"
        )
        return
    message = f"claimed by RegionPool {claim.pool} (priority {claim.priority})"
    if claim.contenders:
        message += f"; also matched by {', '.join(claim.contenders[:5])}"
    conditions.set(ConditionType.CLAIMED, TRUE, Reason.CLAIMED, message)


def _figure_fields(
    figures: inventory.MemberInventory, power: Quantities
) -> tuple[dict[str, Any], Folded | None]:
    """Status fields for the figures, folded to the status bounds."""
    devices = _accelerator_status(figures.accelerators)
    maps, folded_resources = bounds.fold_maps(
        {
            "capacity": figures.capacity,
            "allocatable": figures.allocatable,
            "allocated": figures.allocated,
            "available": figures.available,
        },
        keep_first=(*bounds.PRIORITY_RESOURCES, *(d.resource_name for d in devices)),
    )
    devices, folded_models = bounds.fold_list(
        devices,
        limit=bounds.max_items(ComputeProviderStatus, "accelerators"),
        size=lambda d: d.count,
        name=lambda d: d.model,
        merge=lambda rest: ProviderAcceleratorStatus(
            model=bounds.OTHER_MODELS,
            resource_name=bounds.OTHER_RESOURCES,
            count=bounds.clamp(sum(d.count for d in rest)),
            allocated=bounds.clamp(sum(d.allocated for d in rest)),
            available=bounds.clamp(sum(d.available for d in rest)),
        ),
    )
    fields: dict[str, Any] = {
        **maps,
        "accelerators": devices or None,
        "accelerator_count": bounds.clamp(sum(d.count for d in devices)),
        "nodes": ReadyCount(
            total=bounds.clamp(figures.nodes_total), ready=bounds.clamp(figures.nodes_ready)
        ),
        "compute_power": TflopsByPrecision.from_dict(power) if power else None,
    }
    folded = None
    if folded_resources or folded_models:
        folded = Folded(resources=folded_resources or None, accelerators=folded_models or None)
    return fields, folded


def plan_provider(
    provider: ComputeProvider,
    *,
    collection: Collection | None,
    claim: Claim | None,
    now: datetime,
    rejected: str | None = None,
) -> ProviderView:
    """Desired status of ``provider``; keeps transition times of unchanged conditions.

    ``collection`` None means nothing was collected by this process yet (it resumes from
    the status). ``rejected`` describes a write the API server refused, if any.
    """
    spec = provider.spec
    previous = provider.status or ComputeProviderStatus()
    if spec.source.static is not None:
        r = _static_readiness(provider, now)
        power = static_compute_power(provider)
    else:
        r = _member_readiness(provider, collection or resumed_collection(provider, now), now)
        power = {}
    ready, reason, message = r.ready, r.reason, r.message
    if rejected is not None:
        ready, reason, message = FALSE, Reason.WRITE_REJECTED, rejected
    conditions = ConditionSet(
        previous.conditions, generation=provider.metadata.generation, now=now, order=ORDER
    )
    conditions.set(ConditionType.READY, ready, reason, message)
    if r.collected is not None:
        conditions.set(ConditionType.COLLECTED, *r.collected)
    _claimed(conditions, claim)
    stalled = ready == FALSE and reason in STALLED_REASONS
    awaiting = "" if stalled else r.awaiting
    _progress(conditions, awaiting=awaiting, stalled=(reason, message) if stalled else None)
    status = _status(
        provider, previous=previous, conditions=conditions, claim=claim, r=r, power=power
    )
    figures = r.figures
    return ProviderView(
        name=provider.name,
        region=spec.region,
        ready=ready == TRUE,
        offered=ready == TRUE and not spec.unschedulable,
        claim=claim,
        status_wire=status.to_wire(),
        capacity=dict(figures.capacity) if figures else {},
        allocatable=dict(figures.allocatable) if figures else {},
        allocated=dict(figures.allocated) if figures else {},
        available=dict(figures.available) if figures else {},
        accelerators=figures.accelerators if figures else (),
        compute_power=power,
        ready_reason=reason,
        ready_message=message,
        reconciling=bool(awaiting),
    )


def _status(
    provider: ComputeProvider,
    *,
    previous: ComputeProviderStatus,
    conditions: ConditionSet,
    claim: Claim | None,
    r: _Readiness,
    power: Quantities,
) -> ComputeProviderStatus:
    """The status; ``lastCollectionTime`` moves only with another change (or if untrusted)."""
    last = previous.last_collection_time
    known = r.succeeded_at
    trusted = last if last is not None and known is not None and last <= known else None
    fields: dict[str, Any] = {
        "observed_generation": provider.metadata.generation,
        "conditions": conditions.result(),
        "pool": claim.pool if claim else None,
        "last_collection_time": trusted,
    }
    if r.figures is not None:
        figure_fields, folded = _figure_fields(r.figures, power)
        fields.update(figure_fields, folded=folded)
    status = ComputeProviderStatus(**fields)
    if trusted is None or status.to_wire() != previous.to_wire():
        status = status.model_copy(update={"last_collection_time": known})
    return status
