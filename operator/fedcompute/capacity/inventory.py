"""A member's objects (or declared figures) -> one provider's capacity figures.

Pure: inputs are the wire JSON of Nodes and Pods (and, where the member serves
``resource.k8s.io/v1``, DeviceClasses, ResourceSlices and ResourceClaims) as a raw list
returns them, so the rules hold whatever client fetched them. The
member's data is untrusted: fields of the wrong type count as absent, and a malformed
quantity raises :class:`fedcompute.quantities.QuantityError` (a ``ValueError``).

The figures of a :class:`MemberInventory`, per resource name:

``capacity``
    Sum of ``status.capacity`` over every node given (the provider's selected nodes).
``allocatable``
    Sum of ``status.allocatable`` over *counted* nodes only: Ready and not cordoned.
``allocated``
    Sum of the effective requests (:func:`effective_pod_requests`) of non-terminal pods
    bound (``spec.nodeName``) to counted nodes, and ``pods``: how many there are. Pods on
    uncounted nodes are left out on purpose: their node's allocatable is not in the
    total, so subtracting their requests would remove capacity that was never added.
    Unbound (pending) pods are left out too.
``available``
    ``allocatable - allocated - reserved``, clamped at zero per resource, over the
    resources of ``allocatable``.

Accelerators are counted per model and node (:class:`AcceleratorInventory`): extended
resources that the vendor table (or the provider's override) names, and whole DRA devices
(:mod:`fedcompute.capacity.dra`). A device reachable both ways (a DeviceClass with
``spec.extendedResourceName``) is counted once, as a DRA device. Slots
(:func:`slots_of`) say how many jobs of 1, 2, 4, 8 or 16 devices fit on one node now.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, NoReturn, Protocol

from fedcompute import quantities
from fedcompute.capacity import dra
from fedcompute.capacity.classify import VendorClassifier
from fedcompute.quantities import Quantities, QuantityError

UNKNOWN_MODEL = "unknown"
"""Prefix of the model name of devices whose model cannot be told (``unknown-nvidia``)."""


def unknown_model(vendor: str) -> str:
    """The explicit model name of a vendor's devices whose model cannot be told."""
    suffix = "".join(c if c.isalnum() else "-" for c in vendor.lower()).strip("-")[:40]
    return f"{UNKNOWN_MODEL}-{suffix}" if suffix else UNKNOWN_MODEL


TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

# Resources a pod-level ``spec.resources.requests`` may set (the apiserver rejects others).
_POD_LEVEL_RESOURCES = frozenset({"cpu", "memory"})
_POD_LEVEL_PREFIXES = ("hugepages-",)

Json = Mapping[str, Any]

# What parsing or adding a member's quantity can raise; within one node's or pod's figures
# they are turned into a QuantityError that names the field (see _reraise_named).
_QUANTITY_ERRORS = (ValueError, ArithmeticError, TypeError, AttributeError)
_VERSION = re.compile(r"v?[0-9]+\.[0-9]+[0-9A-Za-z.+_-]{0,58}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,252}")


SLOT_SIZES: Final = (1, 2, 4, 8, 16)
"""Job shapes whose fit is reported: this many devices of one model on one node."""


def slots_of(free_per_node: Iterable[int]) -> dict[str, int]:
    """Jobs of each size in :data:`SLOT_SIZES` that fit: sum over nodes of free // size."""
    result = dict.fromkeys((str(k) for k in SLOT_SIZES), 0)
    for free in free_per_node:
        if free > 0:
            for k in SLOT_SIZES:
                result[str(k)] += free // k
    return result


def add_slots(a: Mapping[str, int] | None, b: Mapping[str, int] | None) -> dict[str, int] | None:
    """Slots of two groups of nodes together; None (not known) stays None only if both are."""
    if a is None and b is None:
        return None
    return {str(k): (a or {}).get(str(k), 0) + (b or {}).get(str(k), 0) for k in SLOT_SIZES}


@dataclass(frozen=True)
class AcceleratorInventory:
    """Devices of one model (e.g. 16 x NVIDIA-H100-80GB-HBM3), over one or more resources.

    Device counts are whole numbers, as the API requires of extended resources.
    """

    model: str
    """The model (a label value), or ``unknown-<vendor>`` when it cannot be told."""
    resource_name: str
    """The resource carrying most of the devices: an extended resource (``nvidia.com/gpu``)
    or, for DRA devices, the driver's name (``gpu.nvidia.com``)."""
    nodes: int
    """Selected nodes that hold such devices, counted or not (0 for static inventories,
    which do not say which node holds which device)."""
    capacity: int
    """Devices present on all those nodes, healthy or not."""
    allocatable: int
    """Healthy devices on counted (Ready, schedulable) nodes."""
    allocated: int
    """Of those, devices requested by running pods or allocated to ResourceClaims."""
    available: int
    """``allocatable - allocated``, clamped at zero (and less any ``reserved``)."""
    vendor: str = ""
    resource_names: tuple[str, ...] = ()
    """Every resource (or DRA driver) whose devices were added into this entry, sorted."""
    unhealthy: int = 0
    """Devices on counted nodes that are not offered: tainted DRA devices, and extended
    resource devices in ``capacity`` but not in ``allocatable``."""
    slots: Mapping[str, int] | None = None
    """``"1"``..``"16"`` -> jobs needing that many devices on one node that fit now;
    None when it is not known (a static inventory without ``devicesPerNode``)."""
    identified: bool = True
    """False when the model could not be told (``model`` is then ``unknown-<vendor>``)."""


@dataclass(frozen=True)
class MemberInventory:
    """One provider's figures; see the module docstring for their exact meaning.

    The maps are plain dicts for cheap construction: treat them as read-only.
    """

    capacity: Quantities
    allocatable: Quantities
    allocated: Quantities
    available: Quantities
    nodes_total: int
    """Nodes given (the selected ones), whatever their state."""
    nodes_ready: int
    """Nodes whose ``Ready`` condition is ``True``, cordoned or not."""
    nodes_counted: int
    """Nodes that count toward ``allocatable``: Ready and not cordoned."""
    accelerators: tuple[AcceleratorInventory, ...] = field(default=())
    """Sorted by model, then vendor."""
    dra_served: bool = False
    """The member serves ``resource.k8s.io/v1`` and its devices were read."""
    partial_pools: tuple[str, ...] = ()
    """``driver/pool`` of DRA pools seen with fewer slices than their generation has; their
    figures are the last complete view's (or what was seen, if there was none)."""
    device_pools: Mapping[dra.PoolKey, dra.DevicePool] = field(default_factory=dict)
    """The last complete view of each DRA pool, kept for the next collection."""
    notes: tuple[str, ...] = ()
    """What could not be read (e.g. DRA lists the member forbids), for the condition."""
    kubernetes_version: str = ""
    """The member's ``/version`` (``gitVersion``), when it answered one."""


@dataclass(frozen=True)
class DeclaredAccelerator:
    """An accelerator entry of a static inventory."""

    model: str
    count: int
    resource_name: str = "nvidia.com/gpu"
    devices_per_node: int | None = None
    """Devices per node, when declared: the only way slots of a static inventory are known."""
    vendor: str = ""


# --- untrusted JSON access -----------------------------------------------------------------


def _mapping(value: object) -> Json:
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> list[Json]:
    if not isinstance(value, list | tuple):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _quantities(value: object) -> Quantities:
    return quantities.parse_map(_mapping(value))


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


# --- pods ----------------------------------------------------------------------------------


def is_pod_terminal(pod: Json) -> bool:
    """Whether the pod has finished (its requests no longer hold resources)."""
    return _mapping(pod.get("status")).get("phase") in TERMINAL_PHASES


def _resize_infeasible(status: Json) -> bool:
    # 1.33+ reports a PodResizePending condition; older releases set status.resize.
    if status.get("resize") == "Infeasible":
        return True
    return any(
        c.get("type") == "PodResizePending" and c.get("reason") == "Infeasible"
        for c in _items(status.get("conditions"))
    )


def _statuses_by_name(status: Json, key: str) -> dict[str, Json]:
    return {_string(s.get("name")): s for s in _items(status.get(key))}


def _container_requests(container: Json, status: Json | None, infeasible: bool) -> Quantities:
    """Requests of a running container, as the scheduler reads them during a resize.

    With in-place resize, the spec may differ from what the kubelet actuated; the
    scheduler takes the larger of the two (or, when the resize is infeasible, of what is
    actuated and what is allocated) so capacity is never handed out twice.
    """
    requested = _quantities(_mapping(container.get("resources")).get("requests"))
    if status is None or not isinstance(status.get("resources"), Mapping):
        return requested
    actuated = _quantities(_mapping(status.get("resources")).get("requests"))
    if infeasible:
        return quantities.maximum(actuated, _quantities(status.get("allocatedResources")))
    return quantities.maximum(requested, actuated)


def effective_pod_requests(pod: Json) -> Quantities:
    """The pod's requests as the scheduler accounts them on its node.

    Follows ``PodRequests`` of k8s.io/component-helpers: the containers' sum, with each
    restartable (sidecar) init container added to it, against the peak of the init phase
    (each regular init container plus the sidecars started before it, and the sidecars'
    running total), key-wise maximum; then pod-level requests replace the aggregate for
    the resources they set, and ``spec.overhead`` is added. Missing requests are zero;
    requests are read as stored (the apiserver already defaulted them from limits).
    """
    spec = _mapping(pod.get("spec"))
    status = _mapping(pod.get("status"))
    infeasible = _resize_infeasible(status)
    running = _statuses_by_name(status, "containerStatuses")
    init_running = _statuses_by_name(status, "initContainerStatuses")

    total: Quantities = {}
    for container in _items(spec.get("containers")):
        state = running.get(_string(container.get("name")))
        total = quantities.add(total, _container_requests(container, state, infeasible))

    sidecars: Quantities = {}
    init_peak: Quantities = {}
    for container in _items(spec.get("initContainers")):
        if container.get("restartPolicy") == "Always":
            state = init_running.get(_string(container.get("name")))
            requests = _container_requests(container, state, infeasible)
            total = quantities.add(total, requests)
            sidecars = quantities.add(sidecars, requests)
            phase_peak = sidecars
        else:
            requests = _quantities(_mapping(container.get("resources")).get("requests"))
            phase_peak = quantities.add(requests, sidecars)
        init_peak = quantities.maximum(init_peak, phase_peak)

    result = quantities.maximum(total, init_peak)
    pod_level = _quantities(_mapping(spec.get("resources")).get("requests"))
    for name, value in pod_level.items():
        if name in _POD_LEVEL_RESOURCES or name.startswith(_POD_LEVEL_PREFIXES):
            result[name] = value
    return quantities.add(result, _quantities(spec.get("overhead")))


# --- nodes ---------------------------------------------------------------------------------


def is_node_ready(node: Json) -> bool:
    """Whether the node's ``Ready`` condition is ``True``."""
    conditions = _items(_mapping(node.get("status")).get("conditions"))
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def is_node_schedulable(node: Json) -> bool:
    """Whether the node is not cordoned (``spec.unschedulable`` unset or false)."""
    return _mapping(node.get("spec")).get("unschedulable") is not True


def _node_name(node: Json) -> str:
    return _string(_mapping(node.get("metadata")).get("name"))


def _whole(value: Decimal) -> int:
    return int(value.to_integral_value())


class Classifier(Protocol):
    """Which resources and DRA devices are accelerators, and of which vendor and model.

    Built from the vendor table and a provider's overrides
    (:mod:`fedcompute.capacity.vendors`); a model of ``""`` means "an accelerator of this
    vendor whose model cannot be told".
    """

    def resource(self, name: str, labels: Mapping[str, str]) -> tuple[str, str] | None:
        """``(vendor, model)`` if extended resource ``name`` on a node with ``labels`` is an
        accelerator, else None."""

    def device(self, driver: str, attributes: Mapping[str, object]) -> tuple[str, str] | None:
        """``(vendor, model)`` if a DRA device of ``driver`` is an accelerator, else None."""


# One node's accelerators as an extended resource: (vendor, model, resource, capacity,
# allocatable).
_Entry = tuple[str, str, str, int, int]


@dataclass
class _Tally:
    """Running figures of one (model, vendor) while a summary is finished."""

    resources: dict[str, int] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    capacity: int = 0
    allocatable: int = 0
    allocated: int = 0
    unhealthy: int = 0
    free: list[int] = field(default_factory=list)
    """Free devices per (node, resource or driver) group, for slots."""


class MemberSummary:
    """A member's figures, fed page by page so that no list is held whole.

    Feed ``nodes`` first (the provider's selected nodes), then ``pods`` (any pods: those
    not bound to a counted node, and terminal ones, are ignored), then, when the member
    serves ``resource.k8s.io/v1``, ``deviceclasses``, ``resourceslices`` and
    ``resourceclaims`` in any order; :meth:`result` gives the figures. Only small per-node
    records are kept between pages.
    """

    KINDS: Final = (
        "version",
        "nodes",
        "pods",
        "deviceclasses",
        "resourceslices",
        "resourceclaims",
    )

    def __init__(
        self,
        classifier: Classifier,
        *,
        reserved: Mapping[str, Decimal],
        whole_cluster: bool,
        previous: MemberInventory | None = None,
    ) -> None:
        self._classifier = classifier
        self._reserved = reserved
        self._whole_cluster = whole_cluster
        self._previous_pools = previous.device_pools if previous is not None else {}
        self._capacity: Quantities = {}
        self._allocatable: Quantities = {}
        self._allocated: Quantities = {}
        self._seen: set[str] = set()
        self._counted: set[str] = set()
        self._ready = 0
        self._total = 0
        self._entries: dict[str, tuple[_Entry, ...]] = {}
        self._used: dict[str, dict[str, int]] = {}
        self._dra = False
        self._classes: dict[str, frozenset[str] | None] = {}
        self._slices = dra.SliceReader(classifier.device)
        self._claims = dra.ClaimReader()
        self._version = ""
        self._feeds = {
            "version": self._versions,
            "nodes": self._nodes,
            "pods": self._pods,
            "deviceclasses": self._device_classes,
            "resourceslices": self._resource_slices,
            "resourceclaims": self._claims.add,
        }

    def feed(self, kind: str, items: Iterable[Json]) -> None:
        """Take one page of objects of ``kind`` (one of :data:`KINDS`)."""
        if kind in ("deviceclasses", "resourceslices", "resourceclaims"):
            self._dra = True
        self._feeds[kind](items)

    def _versions(self, answers: Iterable[Json]) -> None:
        for answer in answers:
            version = answer.get("gitVersion")
            if isinstance(version, str) and _VERSION.fullmatch(version):
                self._version = version

    # --- nodes and pods ----------------------------------------------------------------------

    def _nodes(self, nodes: Iterable[Json]) -> None:
        for node in nodes:
            self._total += 1
            name = _node_name(node)
            status = _mapping(node.get("status"))
            try:
                node_capacity = _quantities(status.get("capacity"))
                _accumulate(self._capacity, node_capacity)
                ready = is_node_ready(node)
                counted = ready and bool(name) and name not in self._counted
                counted = counted and is_node_schedulable(node)
                node_allocatable = _quantities(status.get("allocatable")) if counted else {}
                if ready:
                    self._ready += 1
                if counted:
                    self._counted.add(name)
                    _accumulate(self._allocatable, node_allocatable)
                entries = self._node_entries(node, node_capacity, node_allocatable)
            except _QUANTITY_ERRORS as exc:
                _reraise_named("node", node, _node_quantities(node), exc)
            if name in self._seen:
                continue  # a duplicate name: its devices are counted once
            self._seen.add(name)
            if entries:
                self._entries[name] = entries

    def _node_entries(
        self, node: Json, capacity: Quantities, allocatable: Quantities
    ) -> tuple[_Entry, ...]:
        labels = {
            k: v
            for k, v in _mapping(_mapping(node.get("metadata")).get("labels")).items()
            if isinstance(k, str) and isinstance(v, str)
        }
        entries = []
        for resource in sorted(set(capacity) | set(allocatable)):
            described = self._classifier.resource(resource, labels)
            if described is None:
                continue
            in_capacity = _whole(capacity.get(resource, Decimal(0)))
            in_allocatable = _whole(allocatable.get(resource, Decimal(0)))
            if in_capacity > 0 or in_allocatable > 0:
                vendor, model = described
                model = model or unknown_model(vendor)
                entries.append((vendor, model, resource, in_capacity, in_allocatable))
        return tuple(entries)

    def _pods(self, pods: Iterable[Json]) -> None:
        allocated = self._allocated
        for pod in pods:
            bound_to = _string(_mapping(pod.get("spec")).get("nodeName"))
            if bound_to not in self._counted or is_pod_terminal(pod):
                continue
            try:
                requests = effective_pod_requests(pod)
            except _QUANTITY_ERRORS as exc:
                _reraise_named("pod", pod, _pod_quantities(pod), exc)
            requests["pods"] = requests.get("pods", Decimal(0)) + 1
            _accumulate(allocated, requests)
            entries = self._entries.get(bound_to)
            if entries:
                used = self._used.setdefault(bound_to, {})
                for _, _, resource, _, _ in entries:
                    if resource in requests:
                        used[resource] = used.get(resource, 0) + _whole(requests[resource])

    # --- DRA ---------------------------------------------------------------------------------

    def _device_classes(self, classes: Iterable[Json]) -> None:
        for resource, drivers in dra.extended_resource_classes(classes).items():
            known = self._classes.get(resource, frozenset())
            self._classes[resource] = None if drivers is None or known is None else known | drivers

    def _resource_slices(self, slices: Iterable[Json]) -> None:
        self._slices.add(slices)

    def _device_pools(
        self,
    ) -> tuple[list[dra.DevicePool], list[str], dict[dra.PoolKey, dra.DevicePool]]:
        """The pools to count (a partial one replaced by its last complete view)."""
        counted: list[dra.DevicePool] = []
        partial: list[str] = []
        complete: dict[dra.PoolKey, dra.DevicePool] = {}
        for pool in self._slices.pools():
            if pool.complete:
                counted.append(pool)
                complete[pool.key] = pool
                continue
            partial.append(f"{pool.driver}/{pool.name}")
            kept = self._previous_pools.get(pool.key)
            if kept is not None and kept.generation <= pool.generation:
                counted.append(kept)
                complete[pool.key] = kept
            else:
                counted.append(pool)
        return counted, partial, complete

    # --- the figures -------------------------------------------------------------------------

    def result(self, notes: Sequence[str] = ()) -> MemberInventory:
        """The figures of everything fed; ``notes`` say what could not be read."""
        tallies: dict[tuple[str, str], _Tally] = {}
        pools, partial, complete = self._device_pools()
        dra_drivers = self._dra_devices(pools, tallies)
        for name, entries in self._entries.items():
            counted = name in self._counted
            used = self._used.get(name, {})
            for vendor, model, resource, capacity, allocatable in entries:
                if self._double_reachable(resource, dra_drivers.get(name)):
                    continue
                tally = tallies.setdefault((model, vendor), _Tally())
                tally.nodes.add(name)
                tally.capacity += capacity
                tally.resources.setdefault(resource, 0)
                if not counted:
                    continue
                taken = min(allocatable, used.get(resource, 0))
                tally.allocatable += allocatable
                tally.resources[resource] += allocatable
                tally.allocated += taken
                tally.unhealthy += max(0, capacity - allocatable)
                tally.free.append(allocatable - taken)
        allocated = self._allocated
        return MemberInventory(
            capacity=self._capacity,
            allocatable=self._allocatable,
            allocated=allocated,
            available=quantities.subtract(self._allocatable, allocated, self._reserved),
            nodes_total=self._total,
            nodes_ready=self._ready,
            nodes_counted=len(self._counted),
            accelerators=_accelerators(tallies, self._reserved),
            dra_served=self._dra,
            partial_pools=tuple(partial),
            device_pools=complete,
            notes=tuple(notes),
            kubernetes_version=self._version,
        )

    def _dra_devices(
        self, pools: Iterable[dra.DevicePool], tallies: dict[tuple[str, str], _Tally]
    ) -> dict[str, set[str]]:
        """Add the pools' whole devices; returns node -> the DRA drivers with devices there."""
        drivers: dict[str, set[str]] = {}
        allocated = self._claims.allocated
        for pool in pools:
            busy = dra.busy_devices(pool, allocated)
            free: dict[tuple[str, str, str], int] = {}
            for device in pool.devices:
                node = device.node
                if node and node not in self._seen:
                    continue  # a node the provider does not select
                if not node and not self._whole_cluster:
                    continue  # reachable from several nodes, not only selected ones
                drivers.setdefault(node, set()).add(pool.driver)
                model = device.model or unknown_model(device.vendor)
                tally = tallies.setdefault((model, device.vendor), _Tally())
                tally.resources.setdefault(pool.driver, 0)
                if node:
                    tally.nodes.add(node)
                tally.capacity += 1
                if node and node not in self._counted:
                    continue
                if not device.healthy:
                    tally.unhealthy += 1
                    continue
                tally.allocatable += 1
                tally.resources[pool.driver] += 1
                if device.name in busy:
                    tally.allocated += 1
                elif node:  # devices reachable from several nodes are in no node's slots
                    group = (model, device.vendor, node)
                    free[group] = free.get(group, 0) + 1
            for (model, vendor, _), count in free.items():
                tallies[(model, vendor)].free.append(count)
        return drivers

    def _double_reachable(self, resource: str, drivers: set[str] | None) -> bool:
        """Whether a node's extended resource is DRA devices already counted as such."""
        if not drivers or resource not in self._classes:
            return False
        named = self._classes[resource]
        return named is None or bool(named & drivers)


def _accelerators(
    tallies: Mapping[tuple[str, str], _Tally], reserved: Mapping[str, Decimal]
) -> tuple[AcceleratorInventory, ...]:
    """The entries, with ``reserved`` devices taken off their models' available counts."""
    held = {name: _whole(value) for name, value in reserved.items() if value > 0}
    result = []
    for (model, vendor), tally in sorted(tallies.items()):
        primary = min(tally.resources, key=lambda r: (-tally.resources[r], r))
        available = max(0, tally.allocatable - tally.allocated)
        for resource in sorted(tally.resources):
            taken = min(available, held.get(resource, 0))
            if taken:
                available -= taken
                held[resource] -= taken
        result.append(
            AcceleratorInventory(
                model=model,
                resource_name=primary,
                nodes=len(tally.nodes),
                capacity=tally.capacity,
                allocatable=tally.allocatable,
                allocated=tally.allocated,
                available=available,
                vendor=vendor,
                resource_names=tuple(sorted(tally.resources)),
                unhealthy=tally.unhealthy,
                slots=slots_of(tally.free),
                identified=not model.startswith(UNKNOWN_MODEL),
            )
        )
    return tuple(result)


def _accumulate(total: Quantities, values: Mapping[str, Decimal]) -> None:
    """``total += values`` in place (one dict per summary, not one per pod)."""
    for name, value in values.items():
        total[name] = total.get(name, Decimal(0)) + value


def summarize_member(
    nodes: Iterable[Json],
    pods: Iterable[Json],
    *,
    reserved: Mapping[str, Decimal],
    classifier: Classifier | None = None,
    accelerator_model_label: str | None = None,
    accelerator_resources: Sequence[str] | None = None,
    whole_cluster: bool = True,
    device_classes: Iterable[Json] | None = None,
    resource_slices: Iterable[Json] | None = None,
    resource_claims: Iterable[Json] | None = None,
    previous: MemberInventory | None = None,
) -> MemberInventory:
    """Figures of a member from whole lists (see :class:`MemberSummary`); DRA objects are
    read when any of their lists is given. Without ``classifier`` the vendor table is
    used, with a provider's two overrides."""
    if classifier is None:
        classifier = VendorClassifier(
            model_label=accelerator_model_label, resources=accelerator_resources
        )
    summary = MemberSummary(
        classifier, reserved=reserved, whole_cluster=whole_cluster, previous=previous
    )
    summary.feed("nodes", nodes)
    summary.feed("pods", pods)
    for kind, items in (
        ("deviceclasses", device_classes),
        ("resourceslices", resource_slices),
        ("resourceclaims", resource_claims),
    ):
        if items is not None:
            summary.feed(kind, items)
    return summary.result()


# --- naming a bad quantity ------------------------------------------------------------------


def _node_quantities(node: Json) -> Iterator[tuple[str, object]]:
    """The quantity maps of a node that the figures read, with their field paths."""
    status = _mapping(node.get("status"))
    yield "status.capacity", status.get("capacity")
    yield "status.allocatable", status.get("allocatable")


def _pod_quantities(pod: Json) -> Iterator[tuple[str, object]]:
    """The quantity maps of a pod that :func:`effective_pod_requests` reads, with paths."""
    spec = _mapping(pod.get("spec"))
    status = _mapping(pod.get("status"))
    for key in ("containers", "initContainers"):
        for i, entry in _indexed(spec.get(key)):
            yield (
                f"spec.{key}[{i}].resources.requests",
                _mapping(entry.get("resources")).get("requests"),
            )
    yield "spec.resources.requests", _mapping(spec.get("resources")).get("requests")
    yield "spec.overhead", spec.get("overhead")
    for key in ("containerStatuses", "initContainerStatuses"):
        for i, entry in _indexed(status.get(key)):
            resources = _mapping(entry.get("resources"))
            yield f"status.{key}[{i}].resources.requests", resources.get("requests")
            yield f"status.{key}[{i}].allocatedResources", entry.get("allocatedResources")


def _indexed(value: object) -> Iterator[tuple[int, Json]]:
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                yield i, item


def _shown_name(value: object) -> str:
    """A member-supplied name as it can safely appear in a condition message."""
    if isinstance(value, str) and _PLAIN_NAME.fullmatch(value):
        return value
    return _shown_value(value)


def _shown_value(value: object) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        text = str(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__}"


def _reraise_named(
    kind: str, obj: Json, fields: Iterable[tuple[str, object]], error: Exception
) -> NoReturn:
    """Raise a :class:`QuantityError` naming the object and field whose quantity is unusable.

    Called only once the figures of ``obj`` failed, so the hot path pays nothing for the
    naming. When no single value is at fault (a sum out of range), ``error`` is re-raised.
    """
    metadata = _mapping(obj.get("metadata"))
    ident = _shown_name(metadata.get("name"))
    if kind == "pod" and metadata.get("namespace"):
        ident = f"{_shown_name(metadata.get('namespace'))}/{ident}"
    for field_path, values in fields:
        for key, value in _mapping(values).items():
            try:
                parsed = quantities.parse(value)
            except _QUANTITY_ERRORS as exc:
                text = str(exc)
                if not isinstance(exc, QuantityError) or len(text) > 160:
                    suffix = " (out of range)" if isinstance(exc, ArithmeticError) else ""
                    text = f"{_shown_value(value)} is not a quantity{suffix}"
            else:
                if parsed.is_finite():
                    continue
                text = f"{_shown_value(value)} is not a finite quantity"
            where = f"{kind} {ident} {field_path}[{_shown_name(key)}]"
            raise QuantityError(f"{where}: {text}") from error
    raise error


# --- static inventories --------------------------------------------------------------------


def _static_slots(available: int, per_node: int | None) -> dict[str, int] | None:
    """Slots of ``available`` devices packed on nodes of ``per_node`` (reserved devices are
    assumed held back on whole nodes)."""
    if per_node is None or per_node <= 0:
        return None
    full, rest = divmod(available, per_node)
    result = dict.fromkeys((str(k) for k in SLOT_SIZES), 0)
    for k in SLOT_SIZES:
        result[str(k)] = full * (per_node // k) + rest // k
    return result


def summarize_static(
    resources: Mapping[str, Decimal],
    accelerators: Sequence[DeclaredAccelerator],
    reserved: Mapping[str, Decimal],
    node_count: int,
) -> MemberInventory:
    """Figures of a static inventory: what is declared, minus what is reserved.

    Nothing is observed, so nothing is allocated and every declared node counts. Declared
    accelerators are added to ``capacity`` under their resource name when ``resources``
    does not state that resource itself, so a static provider reports its devices the same
    way a member cluster's nodes do. Reserved devices of a resource are taken off its
    models in name order.
    """
    capacity: Quantities = dict(resources)
    by_resource: Quantities = {}
    grouped: dict[tuple[str, str], DeclaredAccelerator] = {}
    for entry in accelerators:
        key = (entry.model, entry.vendor)
        prior = grouped.get(key)
        if prior is not None:
            entry = DeclaredAccelerator(  # noqa: PLW2901 - the same model declared twice
                entry.model,
                prior.count + entry.count,
                prior.resource_name,
                prior.devices_per_node,
                entry.vendor,
            )
        grouped[key] = entry
    for accelerator in accelerators:
        by_resource = quantities.add(
            by_resource, {accelerator.resource_name: Decimal(accelerator.count)}
        )
    for name, count in by_resource.items():
        capacity.setdefault(name, count)
    allocatable = quantities.subtract(capacity, reserved)
    held = {name: _whole(value) for name, value in reserved.items() if value > 0}
    devices = []
    for (model, vendor), declared in sorted(grouped.items()):
        taken = min(declared.count, held.get(declared.resource_name, 0))
        if taken:
            held[declared.resource_name] -= taken
        offered = declared.count - taken
        devices.append(
            AcceleratorInventory(
                model=model,
                resource_name=declared.resource_name,
                nodes=0,
                capacity=declared.count,
                allocatable=offered,
                allocated=0,
                available=offered,
                vendor=vendor,
                resource_names=(declared.resource_name,),
                slots=_static_slots(offered, declared.devices_per_node),
            )
        )
    return MemberInventory(
        capacity=capacity,
        allocatable=allocatable,
        allocated={},
        available=dict(allocatable),
        nodes_total=node_count,
        nodes_ready=node_count,
        nodes_counted=node_count,
        accelerators=tuple(devices),
    )


def compute_power(
    accelerators: Iterable[tuple[int, Mapping[str, Decimal]]],
) -> Quantities:
    """Total TFLOPS per precision: the sum of ``count x tflopsPerDevice`` over models."""
    total: Quantities = {}
    for count, per_device in accelerators:
        for precision, tflops in per_device.items():
            total[precision] = total.get(precision, Decimal(0)) + count * tflops
    return total
