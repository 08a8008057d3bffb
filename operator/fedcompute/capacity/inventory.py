"""Node and pod lists (or declared figures) -> one provider's capacity figures.

Pure: inputs are the wire JSON of Node and Pod objects as a raw ``GET /api/v1/nodes`` and
``GET /api/v1/pods`` return them, so the rules hold whatever client fetched them. The
member's data is untrusted: fields of the wrong type count as absent, and a malformed
quantity raises :class:`fedcompute.quantities.QuantityError` (a ``ValueError``).

The figures of a :class:`MemberInventory`, per resource name:

``capacity``
    Sum of ``status.capacity`` over every node given (the provider's selected nodes).
``allocatable``
    Sum of ``status.allocatable`` over *counted* nodes only: Ready and not cordoned.
``allocated``
    Sum of the effective requests (:func:`effective_pod_requests`) of non-terminal pods
    bound (``spec.nodeName``) to counted nodes. Pods on uncounted nodes are left out on
    purpose: their node's allocatable is not in the total, so subtracting their requests
    would remove capacity that was never added. Unbound (pending) pods are left out too.
``available``
    ``allocatable - allocated - reserved``, clamped at zero per resource, over the
    resources of ``allocatable``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

from fedcompute import quantities
from fedcompute.quantities import Quantities, QuantityError

UNKNOWN_MODEL = "unknown"
"""Model name of accelerator nodes that lack the model label."""

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

# Resources a pod-level ``spec.resources.requests`` may set (the apiserver rejects others).
_POD_LEVEL_RESOURCES = frozenset({"cpu", "memory"})
_POD_LEVEL_PREFIXES = ("hugepages-",)

Json = Mapping[str, Any]

# What parsing or adding a member's quantity can raise; within one node's or pod's figures
# they are turned into a QuantityError that names the field (see _reraise_named).
_QUANTITY_ERRORS = (ValueError, ArithmeticError, TypeError, AttributeError)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,252}")


@dataclass(frozen=True)
class AcceleratorInventory:
    """Devices of one model and one extended resource (e.g. A100 x ``nvidia.com/gpu``).

    Device counts are whole numbers, as the API requires of extended resources.
    """

    model: str
    """The node's model label value, or ``"unknown"`` when the label is missing."""
    resource_name: str
    """The extended resource that carries the devices, e.g. ``nvidia.com/gpu``."""
    nodes: int
    """Selected nodes that report such devices, counted or not (0 for static inventories,
    which do not say which node holds which device)."""
    capacity: int
    """Devices in ``status.capacity`` over all those nodes."""
    allocatable: int
    """Devices in ``status.allocatable`` on counted (Ready, schedulable) nodes."""
    allocated: int
    """Devices requested by non-terminal pods bound to those counted nodes."""
    available: int
    """``allocatable - allocated``, clamped at zero (``reserved`` is not split by model)."""


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
    """Sorted by model, then resource name."""


@dataclass(frozen=True)
class DeclaredAccelerator:
    """An accelerator entry of a static inventory."""

    model: str
    count: int
    resource_name: str = "nvidia.com/gpu"


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


@dataclass
class _Devices:
    nodes: int = 0
    capacity: int = 0
    allocatable: int = 0
    allocated: int = 0


def summarize_member(
    nodes: Iterable[Json],
    pods: Iterable[Json],
    *,
    accelerator_model_label: str,
    accelerator_resources: Sequence[str],
    reserved: Mapping[str, Decimal],
) -> MemberInventory:
    """Figures of a member cluster from its selected nodes and its pods.

    ``nodes`` are the provider's selected nodes (already filtered by its label selector);
    ``pods`` may be every pod of the cluster: those not bound to a counted node, and
    terminal ones, are ignored. Accelerators are grouped by the value of
    ``accelerator_model_label`` and by resource name among ``accelerator_resources``.
    """
    node_list = list(nodes)
    capacity: Quantities = {}
    allocatable: Quantities = {}
    counted: set[str] = set()
    ready = 0
    for node in node_list:
        status = _mapping(node.get("status"))
        try:
            capacity = quantities.add(capacity, _quantities(status.get("capacity")))
            if not is_node_ready(node):
                continue
            ready += 1
            name = _node_name(node)
            if name and name not in counted and is_node_schedulable(node):
                counted.add(name)
                allocatable = quantities.add(allocatable, _quantities(status.get("allocatable")))
        except _QUANTITY_ERRORS as exc:
            _reraise_named("node", node, _node_quantities(node), exc)

    per_node: dict[str, Quantities] = {}
    for pod in pods:
        bound_to = _string(_mapping(pod.get("spec")).get("nodeName"))
        if bound_to not in counted or is_pod_terminal(pod):
            continue
        try:
            requests = effective_pod_requests(pod)
        except _QUANTITY_ERRORS as exc:
            _reraise_named("pod", pod, _pod_quantities(pod), exc)
        per_node[bound_to] = quantities.add(per_node.get(bound_to, {}), requests)
    allocated = quantities.total_of(per_node.values())

    devices: dict[tuple[str, str], _Devices] = {}
    seen: set[str] = set()
    for node in node_list:
        name = _node_name(node)
        is_counted = name in counted and name not in seen
        seen.add(name)
        status = _mapping(node.get("status"))
        node_capacity = _quantities(status.get("capacity"))
        node_allocatable = _quantities(status.get("allocatable")) if is_counted else {}
        node_allocated = per_node.get(name, {}) if is_counted else {}
        label = _mapping(_mapping(node.get("metadata")).get("labels")).get(accelerator_model_label)
        model = label if isinstance(label, str) and label else UNKNOWN_MODEL
        for resource in accelerator_resources:
            try:
                in_capacity = _whole(node_capacity.get(resource, Decimal(0)))
                in_allocatable = _whole(node_allocatable.get(resource, Decimal(0)))
            except _QUANTITY_ERRORS as exc:
                _reraise_named("node", node, _node_quantities(node), exc)
            if in_capacity <= 0 and in_allocatable <= 0:
                continue
            tally = devices.setdefault((model, resource), _Devices())
            tally.nodes += 1
            tally.capacity += in_capacity
            tally.allocatable += in_allocatable
            tally.allocated += _whole(node_allocated.get(resource, Decimal(0)))

    return MemberInventory(
        capacity=capacity,
        allocatable=allocatable,
        allocated=allocated,
        available=quantities.subtract(allocatable, allocated, reserved),
        nodes_total=len(node_list),
        nodes_ready=ready,
        nodes_counted=len(counted),
        accelerators=tuple(
            AcceleratorInventory(
                model=model,
                resource_name=resource,
                nodes=tally.nodes,
                capacity=tally.capacity,
                allocatable=tally.allocatable,
                allocated=tally.allocated,
                available=max(0, tally.allocatable - tally.allocated),
            )
            for (model, resource), tally in sorted(devices.items())
        ),
    )


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
    way a member cluster's nodes do.
    """
    capacity: Quantities = dict(resources)
    by_resource: Quantities = {}
    grouped: dict[tuple[str, str], int] = {}
    for accelerator in accelerators:
        key = (accelerator.model, accelerator.resource_name)
        grouped[key] = grouped.get(key, 0) + accelerator.count
        by_resource = quantities.add(
            by_resource, {accelerator.resource_name: Decimal(accelerator.count)}
        )
    for name, count in by_resource.items():
        capacity.setdefault(name, count)
    allocatable = quantities.subtract(capacity, reserved)
    return MemberInventory(
        capacity=capacity,
        allocatable=allocatable,
        allocated={},
        available=dict(allocatable),
        nodes_total=node_count,
        nodes_ready=node_count,
        nodes_counted=node_count,
        accelerators=tuple(
            AcceleratorInventory(
                model=model,
                resource_name=resource,
                nodes=0,
                capacity=count,
                allocatable=count,
                allocated=0,
                available=count,
            )
            for (model, resource), count in sorted(grouped.items())
        ),
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
