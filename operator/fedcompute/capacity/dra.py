"""Dynamic Resource Allocation (``resource.k8s.io/v1``): devices, pools and claims. Pure.

A DRA driver publishes its devices in ResourceSlices, grouped in pools; a pool is
published as ``pool.resourceSliceCount`` slices of one ``pool.generation``, and a driver
that republishes a pool raises the generation, so for a while both generations exist.
The rules, in the order they apply:

* per ``(driver, pool)`` only the slices of the newest generation count;
* a pool with fewer of those slices than ``resourceSliceCount`` is *partial*: the caller
  keeps the pool's last complete view (:class:`DevicePool`) rather than counting what is
  missing as gone, and flags it;
* only whole devices are counted. A device that consumes shared counters (KEP-4815
  partitionable devices) is a partition unless it consumes every counter of every
  counter set it names in full; partitions are not added to the device count, but an
  allocated partition makes the whole devices sharing its counter sets busy;
* a device with a ``NoSchedule`` or ``NoExecute`` taint is unhealthy: present, not
  offered;
* a device is allocated when a ResourceClaim's ``status.allocation`` names it
  (``driver``, ``pool``, ``device``), except for results with ``adminAccess`` (monitoring
  access that does not take the device from anyone).

The member's data is untrusted: fields of the wrong type count as absent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from fedcompute import quantities

Json = Mapping[str, Any]
PoolKey = tuple[str, str]
"""``(driver, pool name)``."""
DeviceKey = tuple[str, str, str]
"""``(driver, pool name, device name)``, as a claim's allocation result names a device."""

Describe = Callable[[str, Mapping[str, object]], tuple[str, str] | None]
"""``(driver, attributes) -> (vendor, model)`` for accelerators, None for other devices
(NICs, storage, ...). ``attributes`` maps an attribute name (as published, qualified or
not) to its plain value (a string, integer, boolean or version string)."""

UNHEALTHY_EFFECTS: Final = frozenset({"NoSchedule", "NoExecute"})
_DRIVER_IN_SELECTOR = re.compile(r"""device\.driver\s*==\s*["']([^"']{1,253})["']""")


def _mapping(value: object) -> Json:
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> list[Json]:
    if not isinstance(value, list | tuple):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


# --- devices -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    """One accelerator device of a slice, reduced to what the figures need."""

    name: str
    node: str
    """The node that holds it; ``""`` for a device reachable from several nodes."""
    vendor: str
    model: str
    """The model as the driver spells it (normalized later); ``""`` when not told."""
    healthy: bool
    """Not tainted NoSchedule or NoExecute."""
    consumes: tuple[tuple[str, tuple[tuple[str, Decimal], ...]], ...] = ()
    """Shared counters it consumes: ``(counter set, ((counter, amount), ...))``."""


def attributes(device: Json) -> dict[str, object]:
    """A device's attributes as plain values (``{"productName": "NVIDIA H100 ..."}``)."""
    plain: dict[str, object] = {}
    for name, value in _mapping(device.get("attributes")).items():
        if not isinstance(name, str) or not isinstance(value, Mapping):
            continue
        for kind in ("string", "version", "int", "bool"):
            if kind in value:
                item = value[kind]
                if isinstance(item, str | int | bool):
                    plain[name] = item
                break
    return plain


def _taints_unhealthy(device: Json) -> bool:
    return any(taint.get("effect") in UNHEALTHY_EFFECTS for taint in _items(device.get("taints")))


def _counter_amount(value: object) -> Decimal | None:
    try:
        raw = _mapping(value).get("value")
        return quantities.parse(raw) if isinstance(raw, str | int) else None
    except (ValueError, ArithmeticError):
        return None


def _consumption(device: Json) -> tuple[tuple[str, tuple[tuple[str, Decimal], ...]], ...]:
    sets = []
    for entry in _items(device.get("consumesCounters")):
        counters = []
        for name, value in _mapping(entry.get("counters")).items():
            amount = _counter_amount(value)
            if isinstance(name, str) and amount is not None:
                counters.append((name, amount))
        sets.append((_string(entry.get("counterSet")), tuple(sorted(counters))))
    return tuple(sets)


# --- slices and pools ------------------------------------------------------------------------


@dataclass
class _PoolSlices:
    generation: int
    slice_count: int
    slices: set[str] = field(default_factory=set)
    devices: dict[str, Device] = field(default_factory=dict)
    counters: dict[str, dict[str, Decimal]] = field(default_factory=dict)


@dataclass(frozen=True)
class DevicePool:
    """The accelerators of one ``(driver, pool)`` at one generation."""

    driver: str
    name: str
    generation: int
    complete: bool
    """All ``resourceSliceCount`` slices of the generation were seen."""
    devices: tuple[Device, ...]
    """Whole devices only, sorted by name."""
    partitions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Partition device name -> the counter sets it shares with whole devices."""
    whole_sets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Whole device name -> the counter sets it consumes."""

    @property
    def key(self) -> PoolKey:
        """``(driver, pool name)``."""
        return (self.driver, self.name)


class SliceReader:
    """Fold ResourceSlices, page by page, into pools (newest generation only)."""

    def __init__(self, describe: Describe) -> None:
        self._describe = describe
        self._pools: dict[PoolKey, _PoolSlices] = {}

    def add(self, slices: Iterable[Json]) -> None:
        """Take one page of ResourceSlices."""
        for item in slices:
            self._add(item)

    def _add(self, item: Json) -> None:
        spec = _mapping(item.get("spec"))
        driver = _string(spec.get("driver"))
        pool = _mapping(spec.get("pool"))
        name = _string(pool.get("name"))
        if not driver or not name:
            return
        generation = _count(pool.get("generation"))
        key = (driver, name)
        current = self._pools.get(key)
        if current is None or generation > current.generation:
            current = _PoolSlices(generation, _count(pool.get("resourceSliceCount")))
            self._pools[key] = current
        elif generation < current.generation:
            return  # an older generation still being replaced: ignored
        current.slice_count = max(current.slice_count, _count(pool.get("resourceSliceCount")))
        current.slices.add(_string(_mapping(item.get("metadata")).get("name")))
        for counter_set in _items(spec.get("sharedCounters")):
            counters = {}
            for counter, value in _mapping(counter_set.get("counters")).items():
                amount = _counter_amount(value)
                if isinstance(counter, str) and amount is not None:
                    counters[counter] = amount
            current.counters[_string(counter_set.get("name"))] = counters
        slice_node = _string(spec.get("nodeName"))
        per_device = spec.get("perDeviceNodeSelection") is True
        for device in _items(spec.get("devices")):
            device_name = _string(device.get("name"))
            if not device_name or device_name in current.devices:
                continue
            described = self._describe(driver, attributes(device))
            if described is None:
                continue
            node = _string(device.get("nodeName")) if per_device else slice_node
            current.devices[device_name] = Device(
                name=device_name,
                node=node,
                vendor=described[0],
                model=described[1],
                healthy=not _taints_unhealthy(device),
                consumes=_consumption(device),
            )

    def pools(self) -> list[DevicePool]:
        """Every pool seen, its whole devices and partitions sorted out."""
        return [_finish(driver, name, p) for (driver, name), p in sorted(self._pools.items())]


def _is_whole(device: Device, counters: Mapping[str, Mapping[str, Decimal]]) -> bool:
    """Whole when it consumes no shared counter, or every counter of its sets in full."""
    for counter_set, consumed in device.consumes:
        declared = counters.get(counter_set)
        if not declared:
            return False
        taken = dict(consumed)
        if any(taken.get(name, Decimal(0)) < amount for name, amount in declared.items()):
            return False
    return True


def _finish(driver: str, name: str, p: _PoolSlices) -> DevicePool:
    whole: list[Device] = []
    partitions: dict[str, frozenset[str]] = {}
    whole_sets: dict[str, frozenset[str]] = {}
    for device in p.devices.values():
        sets = frozenset(s for s, _ in device.consumes)
        if _is_whole(device, p.counters):
            whole.append(device)
            if sets:
                whole_sets[device.name] = sets
        else:
            partitions[device.name] = sets
    return DevicePool(
        driver=driver,
        name=name,
        generation=p.generation,
        complete=len(p.slices) >= p.slice_count,
        devices=tuple(sorted(whole, key=lambda d: d.name)),
        partitions=partitions,
        whole_sets=whole_sets,
    )


# --- claims and classes ----------------------------------------------------------------------


class ClaimReader:
    """Fold ResourceClaims, page by page, into the set of allocated devices."""

    def __init__(self) -> None:
        self.allocated: set[DeviceKey] = set()

    def add(self, claims: Iterable[Json]) -> None:
        """Take one page of ResourceClaims."""
        for claim in claims:
            allocation = _mapping(_mapping(claim.get("status")).get("allocation"))
            for result in _items(_mapping(allocation.get("devices")).get("results")):
                if result.get("adminAccess") is True:
                    continue
                key = (
                    _string(result.get("driver")),
                    _string(result.get("pool")),
                    _string(result.get("device")),
                )
                if all(key):
                    self.allocated.add(key)


def busy_devices(pool: DevicePool, allocated: set[DeviceKey]) -> set[str]:
    """Whole devices of ``pool`` that are taken: allocated themselves, or sharing a
    counter set with an allocated partition."""
    busy = {d.name for d in pool.devices if (pool.driver, pool.name, d.name) in allocated}
    taken_sets: set[str] = set()
    for partition, sets in pool.partitions.items():
        if (pool.driver, pool.name, partition) in allocated:
            taken_sets |= sets
    if taken_sets:
        busy |= {name for name, sets in pool.whole_sets.items() if sets & taken_sets}
    return busy


def extended_resource_classes(classes: Iterable[Json]) -> dict[str, frozenset[str] | None]:
    """``spec.extendedResourceName`` of DeviceClasses -> the drivers their selectors name.

    None stands for "any driver": a selector that does not name its driver by a plain
    ``device.driver == "..."`` comparison.
    """
    found: dict[str, frozenset[str] | None] = {}
    for item in classes:
        spec = _mapping(item.get("spec"))
        resource = _string(spec.get("extendedResourceName"))
        if not resource:
            continue
        drivers: set[str] = set()
        for selector in _items(spec.get("selectors")):
            drivers.update(
                _DRIVER_IN_SELECTOR.findall(
                    _string(_mapping(selector.get("cel")).get("expression"))
                )
            )
        previous = found.get(resource, frozenset())
        if not drivers or previous is None:
            found[resource] = None
        else:
            found[resource] = previous | drivers
    return found
