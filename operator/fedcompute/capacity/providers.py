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

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
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
from fedcompute.capacity import bounds, inventory, vendors
from fedcompute.capacity.catalog import Catalog
from fedcompute.capacity.claims import Claim
from fedcompute.capacity.classify import VendorClassifier
from fedcompute.quantities import Quantities

Json = dict[str, Any]
_LISTED: Final = 5


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
    compute_power_excluded: int = 0
    """Offered devices whose model has no figures (left out of ``compute_power``)."""
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
        inventory.DeclaredAccelerator(
            a.model,
            a.count,
            a.resource_name,
            a.devices_per_node,
            vendor_of(a.resource_name),
        )
        for a in static.accelerators or []
    ]
    return inventory.summarize_static(
        static.resources,
        declared,
        provider.spec.reserved or {},
        static.node_count or 0,
    )


def vendor_of(resource: str) -> str:
    """The vendor a resource name belongs to (its domain when the table does not know it)."""
    vendor = vendors.vendor_of_resource(resource)
    if vendor is not None:
        return vendor.name
    return resource.split("/", 1)[0] if "/" in resource else ""


def member_summarizer(
    provider: ComputeProvider, previous: inventory.MemberInventory | None = None
) -> inventory.MemberSummary:
    """A fresh summary for one collection of a member provider (its pages are fed to it).

    ``previous`` is the last good inventory: a DRA pool caught mid-republish keeps its
    last complete figures from it."""
    source = provider.spec.source.kubernetes
    return inventory.MemberSummary(
        VendorClassifier(
            model_label=source.accelerator_model_label if source else None,
            resources=source.accelerator_resources if source else None,
        ),
        reserved=provider.spec.reserved or {},
        whole_cluster=source is None or source.node_selector is None,
        previous=previous,
    )


@functools.cache
def builtin_catalog() -> Catalog:
    """The built-in catalog alone (no AcceleratorModel objects), built once."""
    return Catalog()


def _canonical(catalog: Catalog, model: str) -> str:
    spec = catalog.lookup(model)
    return spec.name if spec is not None else model


def _tflops(catalog: Catalog, model: str) -> Mapping[str, Decimal]:
    spec = catalog.lookup(model)
    return spec.tflops if spec is not None else {}


def _declared_tflops(
    provider: ComputeProvider, catalog: Catalog
) -> dict[str, Mapping[str, Decimal]]:
    """A static provider's declared figures, by the model's name as its entry is named."""
    static = provider.spec.source.static
    return {
        _canonical(catalog, a.model): a.tflops_per_device.as_dict()
        for a in (static.accelerators or [] if static is not None else [])
        if a.tflops_per_device is not None
    }


def _known_models(
    devices: tuple[inventory.AcceleratorInventory, ...], catalog: Catalog
) -> tuple[inventory.AcceleratorInventory, ...]:
    """Entries named as the catalog names them, merged where two spellings meet."""
    merged: dict[tuple[str, str], inventory.AcceleratorInventory] = {}
    for d in devices:
        name = _canonical(catalog, d.model) if d.identified else d.model
        key = (name, d.vendor)
        prior = merged.get(key)
        if prior is None:
            merged[key] = replace(d, model=name)
            continue
        resources = tuple(sorted({*prior.resource_names, *d.resource_names}))
        primary = prior if prior.allocatable >= d.allocatable else d
        merged[key] = replace(
            prior,
            resource_name=primary.resource_name,
            resource_names=resources,
            nodes=prior.nodes + d.nodes,
            capacity=prior.capacity + d.capacity,
            allocatable=prior.allocatable + d.allocatable,
            allocated=prior.allocated + d.allocated,
            available=prior.available + d.available,
            unhealthy=prior.unhealthy + d.unhealthy,
            slots=inventory.add_slots(prior.slots, d.slots),
        )
    return tuple(merged[k] for k in sorted(merged))


def compute_power(
    devices: tuple[inventory.AcceleratorInventory, ...],
    catalog: Catalog,
    declared: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> tuple[Quantities, int]:
    """TFLOPS per precision of the offered devices, and how many had no figures.

    A static accelerator's ``tflopsPerDevice`` (``declared``) wins over the catalog."""
    counted: list[tuple[int, Mapping[str, Decimal]]] = []
    excluded = 0
    for d in devices:
        figures = (declared or {}).get(d.model) or (
            _tflops(catalog, d.model) if d.identified else {}
        )
        if figures:
            counted.append((d.allocatable, figures))
        else:
            excluded += d.allocatable
    return inventory.compute_power(counted), excluded


def _accelerator_status(
    devices: tuple[inventory.AcceleratorInventory, ...],
) -> list[ProviderAcceleratorStatus]:
    merged: dict[str, inventory.AcceleratorInventory] = {}
    for d in devices:
        # One entry per model (the status list is keyed by model), whatever the vendor.
        prior = merged.get(d.model)
        if prior is None:
            merged[d.model] = d
        else:
            merged[d.model] = replace(
                prior,
                resource_names=tuple(sorted({*prior.resource_names, *d.resource_names})),
                nodes=prior.nodes + d.nodes,
                capacity=prior.capacity + d.capacity,
                allocatable=prior.allocatable + d.allocatable,
                allocated=prior.allocated + d.allocated,
                available=prior.available + d.available,
                unhealthy=prior.unhealthy + d.unhealthy,
                slots=inventory.add_slots(prior.slots, d.slots),
            )
    return [_device_status(merged[m]) for m in sorted(merged)]


def _device_status(d: inventory.AcceleratorInventory) -> ProviderAcceleratorStatus:
    names = [n for n in d.resource_names if bounds.valid_resource_name(n)][:16]
    valid = bounds.valid_resource_name(d.resource_name)
    return ProviderAcceleratorStatus(
        model=d.model,
        vendor=d.vendor if bounds.valid_label_value(d.vendor) else None,
        resource_name=d.resource_name if valid else bounds.OTHER_RESOURCES,
        resource_names=names if len(names) > 1 else None,
        capacity=bounds.clamp(d.capacity),
        count=bounds.clamp(d.allocatable),
        allocated=bounds.clamp(d.allocated),
        available=bounds.clamp(d.available),
        unhealthy=bounds.clamp(d.unhealthy) or None,
        slots={k: bounds.clamp(v) for k, v in d.slots.items()} if d.slots is not None else None,
        model_unknown=True if not d.identified else None,
    )


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
                capacity=a.capacity if a.capacity is not None else a.count,
                allocatable=a.count,
                allocated=a.allocated,
                available=a.available,
                vendor=a.vendor or "",
                resource_names=tuple(a.resource_names or [a.resource_name]),
                unhealthy=a.unhealthy or 0,
                slots=dict(a.slots) if a.slots is not None else None,
                identified=not a.model_unknown,
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


def _collected(figures: inventory.MemberInventory | None) -> tuple[ConditionStatus, str, str]:
    """Collected=True, with what the figures could not see said in the message."""
    if figures is None:
        return TRUE, Reason.COLLECTED, "member cluster collected"
    notes = list(figures.notes)
    unknown = [d for d in figures.accelerators if not d.identified]
    if unknown:
        count = sum(d.capacity for d in unknown)
        names = ", ".join(sorted({d.model for d in unknown})[:_LISTED])
        notes.append(f"{count} device{'s' if count != 1 else ''} of unknown model ({names})")
    if figures.partial_pools:
        pools = figures.partial_pools
        shown = ", ".join(pools[:_LISTED]) + (
            f" and {len(pools) - _LISTED} more" if len(pools) > _LISTED else ""
        )
        notes.insert(
            0,
            f"DRA pool{'s' if len(pools) != 1 else ''} {shown} published fewer ResourceSlices "
            "than the generation has: the last complete figures are kept where known, "
            "else the slices seen are counted",
        )
        return TRUE, Reason.PARTIAL_DEVICE_POOLS, "; ".join(notes)
    return TRUE, Reason.COLLECTED, "; ".join(["member cluster collected", *notes])


def _member_readiness(provider: ComputeProvider, c: Collection, now: datetime) -> _Readiness:
    stale_after = provider.spec.monitoring.stale_after
    collected: tuple[ConditionStatus, str, str] | None
    if c.resumed:
        collected = None
    elif c.error_reason is not None:
        collected = (FALSE, c.error_reason, c.error_message)
    elif c.succeeded_at is not None:
        collected = _collected(c.inventory)
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


def _merge_statuses(rest: Sequence[ProviderAcceleratorStatus]) -> ProviderAcceleratorStatus:
    """The remainder entry of accelerator models folded away."""
    slots: dict[str, int] | None = None
    for d in rest:
        slots = inventory.add_slots(slots, d.slots)
    return ProviderAcceleratorStatus(
        model=bounds.OTHER_MODELS,
        resource_name=bounds.OTHER_RESOURCES,
        capacity=bounds.clamp(sum(d.capacity or d.count for d in rest)),
        count=bounds.clamp(sum(d.count for d in rest)),
        allocated=bounds.clamp(sum(d.allocated for d in rest)),
        available=bounds.clamp(sum(d.available for d in rest)),
        unhealthy=bounds.clamp(sum(d.unhealthy or 0 for d in rest)) or None,
        slots={k: bounds.clamp(v) for k, v in slots.items()} if slots is not None else None,
    )


def _figure_fields(
    devices_in: tuple[inventory.AcceleratorInventory, ...],
    figures: inventory.MemberInventory,
    power: Quantities,
    excluded: int,
) -> tuple[dict[str, Any], Folded | None]:
    """Status fields for the figures, folded to the status bounds."""
    devices = _accelerator_status(devices_in)
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
        merge=_merge_statuses,
    )
    fields: dict[str, Any] = {
        **maps,
        "accelerators": devices or None,
        "accelerator_count": bounds.clamp(sum(d.count for d in devices)),
        "nodes": ReadyCount(
            total=bounds.clamp(figures.nodes_total), ready=bounds.clamp(figures.nodes_ready)
        ),
        "compute_power": TflopsByPrecision.from_dict(power) if power else None,
        "compute_power_excluded_devices": bounds.clamp(excluded) or None,
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
    catalog: Catalog | None = None,
) -> ProviderView:
    """Desired status of ``provider``; keeps transition times of unchanged conditions.

    ``collection`` None means nothing was collected by this process yet (it resumes from
    the status). ``rejected`` describes a write the API server refused, if any.
    ``catalog`` names models and gives their figures (the built-in catalog if None).
    """
    spec = provider.spec
    previous = provider.status or ComputeProviderStatus()
    catalog = catalog if catalog is not None else builtin_catalog()
    if spec.source.static is not None:
        r = _static_readiness(provider, now)
    else:
        r = _member_readiness(provider, collection or resumed_collection(provider, now), now)
    devices = _known_models(r.figures.accelerators, catalog) if r.figures else ()
    power, excluded = compute_power(devices, catalog, _declared_tflops(provider, catalog))
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
        provider,
        previous=previous,
        conditions=conditions,
        claim=claim,
        r=r,
        figures=(devices, power, excluded),
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
        accelerators=devices,
        compute_power=power,
        compute_power_excluded=excluded,
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
    figures: tuple[tuple[inventory.AcceleratorInventory, ...], Quantities, int],
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
        figure_fields, folded = _figure_fields(figures[0], r.figures, *figures[1:])
        fields.update(figure_fields, folded=folded)
    status = ComputeProviderStatus(**fields)
    if trusted is None or status.to_wire() != previous.to_wire():
        status = status.model_copy(update={"last_collection_time": known})
    return status
