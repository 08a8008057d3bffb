"""Builders of a mixed accelerator fleet, and its figures worked out by hand.

The figures are computed here from the member's objects as the member API serves them
back, with rules written out in this file from the documented meaning of each status
field (``ComputeProvider.status.accelerators[]`` and ``RegionPool.status.accelerators[]``),
never by calling the operator's summarizing code. What a model is called is data of this
file too (:data:`CANONICAL`); only the per-device TFLOPS come from the catalog's table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fedcompute.capacity.catalog import Catalog

Json = dict[str, Any]

DRIVER = "gpu.nvidia.com"
NIC_DRIVER = "nic.example.com"
CLAIM_NAMESPACE = "dra"
SLOT_SIZES = ("1", "2", "4", "8", "16")

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
ASCEND = "Ascend910B3"
MI300X = "AMD-Instinct-MI300X"
UNKNOWN_NVIDIA = "unknown-nvidia"

H100_NAME = "NVIDIA H100 80GB HBM3"
"""How the NVML (and so the DRA driver's productName) spells the H100 SXM."""
A100_NAME = "NVIDIA A100-SXM4-80GB"

# Extended resource -> (vendor, node label naming the model), as each vendor's device
# plugin and feature discovery publish them.
EXTENDED: Mapping[str, tuple[str, str]] = {
    "nvidia.com/gpu": ("NVIDIA", "nvidia.com/gpu.product"),
    "huawei.com/Ascend910": ("Huawei", "huawei.com/npu.chip.name"),
    "amd.com/gpu": ("AMD", "amd.com/gpu.product-name"),
}
DRA_VENDORS: Mapping[str, str] = {DRIVER: "NVIDIA"}

# Every spelling this fleet uses -> the catalog's name of the model.
CANONICAL: Mapping[str, str] = {
    H100: H100,
    H100_NAME: H100,
    A100: A100,
    A100_NAME: A100,
    "910B3": ASCEND,
    "AMD_Instinct_MI300X_OAM": MI300X,
}

TERMINAL = ("Succeeded", "Failed")
UNHEALTHY_EFFECTS = ("NoSchedule", "NoExecute")


# --- builders ------------------------------------------------------------------------------


def node(
    name: str,
    resources: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
    *,
    managed: bool = True,
    cordoned: bool = False,
    withheld: Mapping[str, str] | None = None,
) -> Json:
    """A Node; ``managed`` ones are kwok's (Ready, heartbeated, their pods made Running).
    ``withheld`` overrides allocatable (devices a device plugin reports unhealthy)."""
    figures = {"cpu": "64", "memory": "512Gi", "pods": "110", **resources}
    annotations = {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, **(labels or {})},
            "annotations": annotations if managed else {},
        },
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {"capacity": figures, "allocatable": {**figures, **(withheld or {})}},
    }


def pod(name: str, node_name: str, requests: Mapping[str, str]) -> Json:
    """A pod bound to ``node_name`` (no scheduler runs), limits equal to requests."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node_name,
            "containers": [
                {
                    "name": "main",
                    "image": "trainer:1",
                    "resources": {"requests": dict(requests), "limits": dict(requests)},
                }
            ],
        },
    }


def device(
    name: str,
    product: str | None,
    *,
    kind: str = "gpu",
    profile: str | None = None,
    taint: str | None = None,
    consumes: Mapping[str, Mapping[str, str]] | None = None,
) -> Json:
    """A DRA device as the NVIDIA driver publishes it (``productName``, ``type``)."""
    attributes: Json = {"type": {"string": kind}}
    if product is not None:
        attributes["productName"] = {"string": product}
    if profile is not None:
        attributes["profile"] = {"string": profile}
    body: Json = {"name": name, "attributes": attributes}
    if taint is not None:
        body["taints"] = [{"key": "example.com/gpu-fault", "value": "xid-79", "effect": taint}]
    if consumes:
        body["consumesCounters"] = [
            {"counterSet": s, "counters": {c: {"value": v} for c, v in counters.items()}}
            for s, counters in consumes.items()
        ]
    return body


def resource_slice(
    name: str,
    node_name: str,
    pool: str,
    devices: list[Json],
    *,
    generation: int = 1,
    count: int = 1,
    driver: str = DRIVER,
    shared: Mapping[str, Mapping[str, str]] | None = None,
) -> Json:
    """One ResourceSlice of pool ``pool`` (``count`` slices make up a generation)."""
    spec: Json = {
        "driver": driver,
        "nodeName": node_name,
        "pool": {"name": pool, "generation": generation, "resourceSliceCount": count},
        "devices": devices,
    }
    if shared:
        spec["sharedCounters"] = [
            {"name": s, "counters": {c: {"value": v} for c, v in counters.items()}}
            for s, counters in shared.items()
        ]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": spec,
    }


def device_class() -> Json:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": DRIVER},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
    }


def claim(name: str, *, admin: bool = False) -> Json:
    """A ResourceClaim asking for one device of the NVIDIA class."""
    exactly: Json = {"deviceClassName": DRIVER, "allocationMode": "ExactCount", "count": 1}
    if admin:
        exactly["adminAccess"] = True
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": CLAIM_NAMESPACE},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": exactly}]}},
    }


def allocation(node_name: str, pool: str, device_name: str, *, admin: bool = False) -> Json:
    """``status`` of a claim that the scheduler allocated ``device_name`` to."""
    result: Json = {"request": "gpu", "driver": DRIVER, "pool": pool, "device": device_name}
    if admin:
        result["adminAccess"] = True
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    return {
        "allocation": {
            "devices": {"results": [result]},
            "nodeSelector": {"nodeSelectorTerms": [term]},
        }
    }


# --- figures by hand -------------------------------------------------------------------------


@dataclass
class _Model:
    vendor: str
    capacity: int = 0
    count: int = 0
    allocated: int = 0
    unhealthy: int = 0
    offered: dict[str, int] = field(default_factory=dict)
    """Resource (or DRA driver) -> devices offered through it."""
    free: list[int] = field(default_factory=list)
    """Free devices per node (and resource or driver)."""


@dataclass(frozen=True)
class Truth:
    """A provider's accelerator figures, in the shape its status carries them."""

    accelerators: dict[str, Json]
    """Model -> the ``status.accelerators[]`` entry."""
    compute_power: dict[str, Decimal]
    excluded: int
    nodes: Json
    resources: dict[str, dict[str, int]]
    """``capacity``, ``allocatable``, ``allocated``, ``available`` of the accelerator
    resources (:data:`EXTENDED`) in the provider's resource maps."""

    @property
    def accelerator_count(self) -> int:
        return sum(e["count"] for e in self.accelerators.values())


def slots(free: Iterable[int]) -> dict[str, int]:
    """Jobs of k devices on one node: the sum over nodes of free // k."""
    free = list(free)
    return {k: sum(f // int(k) for f in free if f > 0) for k in SLOT_SIZES}


def _ready(n: Json) -> bool:
    conditions = (n.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _model(spelling: str | None, vendor: str) -> str:
    if not spelling:
        return f"unknown-{vendor.lower()}"
    return CANONICAL[spelling]


def _newest_complete(slices: list[Json]) -> dict[tuple[str, str], list[Json]]:
    """Per (driver, pool), the slices of the newest generation that has all its slices."""
    by_pool: dict[tuple[str, str], dict[int, list[Json]]] = {}
    for s in slices:
        spec = s["spec"]
        key = (spec["driver"], spec["pool"]["name"])
        by_pool.setdefault(key, {}).setdefault(spec["pool"]["generation"], []).append(s)
    chosen = {}
    for key, generations in by_pool.items():
        for generation in sorted(generations, reverse=True):
            group = generations[generation]
            wanted = max(s["spec"]["pool"]["resourceSliceCount"] for s in group)
            if len(group) >= wanted:
                chosen[key] = group
                break
    return chosen


def _whole(d: Json, counters: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether a device consumes every counter of each counter set it names, in full."""
    return all(
        all(
            (c["counters"].get(k) or {}).get("value") == v
            for k, v in counters[c["counterSet"]].items()
        )
        for c in d.get("consumesCounters") or []
    )


def member_truth(
    nodes: list[Json], pods: list[Json], slices: list[Json], claims: list[Json]
) -> Truth:
    """The figures of a member with no acceleratorResources or model label configured.

    * A node counts when its Ready condition is True and it is not cordoned; devices of
      other nodes are in ``capacity`` only.
    * Extended resources: ``capacity`` from ``status.capacity``; on counted nodes the
      offered devices are ``status.allocatable`` (the rest unhealthy), and the allocated ones
      what non-terminal pods bound there request (at most what is offered).
    * DRA: per pool only the newest complete generation; a device consuming less than every
      counter of a shared counter set is a partition, not a device, but when a claim holds
      it the device whose counters it shares is busy; a NoSchedule/NoExecute taint makes a
      device unhealthy; claim results with adminAccess take nothing.
    * A model with catalog TFLOPS adds ``count x TFLOPS``; others' devices are excluded.
    """
    models: dict[str, _Model] = {}
    counted = {
        n["metadata"]["name"]
        for n in nodes
        if _ready(n) and not (n.get("spec") or {}).get("unschedulable")
    }
    requested: dict[tuple[str, str], int] = {}
    for p in pods:
        if (p.get("status") or {}).get("phase") in TERMINAL:
            continue
        where = p["spec"].get("nodeName", "")
        for c in p["spec"]["containers"]:
            for resource, value in ((c.get("resources") or {}).get("requests") or {}).items():
                if resource in EXTENDED:
                    key = (where, resource)
                    requested[key] = requested.get(key, 0) + int(value)

    for n in nodes:
        name = n["metadata"]["name"]
        labels = n["metadata"].get("labels") or {}
        capacity = n["status"].get("capacity") or {}
        allocatable = n["status"].get("allocatable") or {}
        for resource, (vendor, label) in EXTENDED.items():
            if resource not in capacity:
                continue
            m = models.setdefault(_model(labels.get(label), vendor), _Model(vendor))
            m.capacity += int(capacity[resource])
            m.offered.setdefault(resource, 0)
            if name not in counted:
                continue
            offered = int(allocatable.get(resource, "0"))
            taken = min(offered, requested.get((name, resource), 0))
            m.count += offered
            m.offered[resource] += offered
            m.allocated += taken
            m.unhealthy += int(capacity[resource]) - offered
            m.free.append(offered - taken)

    held = set()
    for c in claims:
        allocation_ = (c.get("status") or {}).get("allocation") or {}
        for r in (allocation_.get("devices") or {}).get("results") or []:
            if r.get("adminAccess") is not True:
                held.add((r["driver"], r["pool"], r["device"]))
    node_names = {n["metadata"]["name"] for n in nodes}
    for (driver, pool), group in sorted(_newest_complete(slices).items()):
        if driver not in DRA_VENDORS:
            continue
        vendor = DRA_VENDORS[driver]
        counters: dict[str, dict[str, str]] = {}
        devices: list[tuple[str, Json]] = []
        for s in group:
            for counter_set in s["spec"].get("sharedCounters") or []:
                counters[counter_set["name"]] = {
                    k: v["value"] for k, v in counter_set["counters"].items()
                }
            devices += [(s["spec"]["nodeName"], d) for d in s["spec"].get("devices") or []]

        busy_sets = {
            c["counterSet"]
            for _, d in devices
            if not _whole(d, counters) and (driver, pool, d["name"]) in held
            for c in d["consumesCounters"]
        }
        free: dict[tuple[str, str], int] = {}
        for where, d in devices:
            if not _whole(d, counters) or where not in node_names:
                continue
            product = (d["attributes"].get("productName") or {}).get("string")
            model = _model(product, vendor)
            m = models.setdefault(model, _Model(vendor))
            m.capacity += 1
            m.offered.setdefault(driver, 0)
            if where not in counted:
                continue
            if any(t["effect"] in UNHEALTHY_EFFECTS for t in d.get("taints") or []):
                m.unhealthy += 1
                continue
            m.count += 1
            m.offered[driver] += 1
            sets = {c["counterSet"] for c in d.get("consumesCounters") or []}
            if (driver, pool, d["name"]) in held or sets & busy_sets:
                m.allocated += 1
            else:
                free[(model, where)] = free.get((model, where), 0) + 1
        for (model, _), n_free in free.items():
            models[model].free.append(n_free)

    catalog = Catalog()
    power: dict[str, Decimal] = {}
    excluded = 0
    entries = {}
    for model, m in sorted(models.items()):
        names = sorted(m.offered)
        entry: Json = {
            "model": model,
            "vendor": m.vendor,
            "resourceName": min(names, key=lambda r: (-m.offered[r], r)),
            "capacity": m.capacity,
            "count": m.count,
            "allocated": m.allocated,
            "available": m.count - m.allocated,
            "slots": slots(m.free),
        }
        if len(names) > 1:
            entry["resourceNames"] = names
        if m.unhealthy:
            entry["unhealthy"] = m.unhealthy
        spec = None
        if model.startswith("unknown-"):
            entry["modelUnknown"] = True
        else:
            spec = catalog.lookup(model)
        entries[model] = entry
        if spec is not None and spec.tflops:
            for precision, tflops in spec.tflops.items():
                power[precision] = power.get(precision, Decimal(0)) + m.count * tflops
        else:
            excluded += m.count
    ready = sum(1 for n in nodes if _ready(n))
    return Truth(
        entries,
        power,
        excluded,
        {"total": len(nodes), "ready": ready},
        _resource_maps(nodes, counted, requested),
    )


def _resource_maps(
    nodes: list[Json], counted: set[str], requested: Mapping[tuple[str, str], int]
) -> dict[str, dict[str, int]]:
    """The resource maps' accelerator entries: capacity of every node, allocatable of the
    counted ones, allocated the requests of pods on those (not capped per node), available
    the difference (at least zero) over what is allocatable."""
    maps: dict[str, dict[str, int]] = {"capacity": {}, "allocatable": {}, "allocated": {}}
    for n in nodes:
        name = n["metadata"]["name"]
        for figure, source in (("capacity", "capacity"), ("allocatable", "allocatable")):
            if figure == "allocatable" and name not in counted:
                continue
            for resource, value in (n["status"].get(source) or {}).items():
                if resource in EXTENDED:
                    maps[figure][resource] = maps[figure].get(resource, 0) + int(value)
    for (where, resource), value in requested.items():
        if where in counted:
            maps["allocated"][resource] = maps["allocated"].get(resource, 0) + value
    maps["available"] = {
        r: max(0, v - maps["allocated"].get(r, 0)) for r, v in maps["allocatable"].items()
    }
    return maps


def static_truth(model: str, count: int, per_node: int, resource: str) -> Truth:
    """A static provider's figures: ``count`` devices packed ``per_node`` to a node."""
    free = [per_node] * (count // per_node) + ([count % per_node] if count % per_node else [])
    spec = Catalog().lookup(model)
    assert spec is not None
    entry = {
        "model": model,
        "vendor": "NVIDIA",
        "resourceName": resource,
        "capacity": count,
        "count": count,
        "allocated": 0,
        "available": count,
        "slots": slots(free),
    }
    power = {p: count * t for p, t in spec.tflops.items()}
    declared = {resource: count}
    maps = {"capacity": declared, "allocatable": declared, "allocated": {}, "available": declared}
    return Truth({model: entry}, power, 0, {"total": len(free), "ready": len(free)}, maps)


def pool_accelerators(*providers: Truth) -> dict[str, Json]:
    """``RegionPool.status.accelerators[]`` by model: the Ready providers' entries summed."""
    result: dict[str, Json] = {}
    vendors: dict[str, set[str]] = {}
    for truth in providers:
        for model, e in truth.accelerators.items():
            vendors.setdefault(model, set()).add(e["vendor"])
            into = result.setdefault(
                model,
                {
                    "model": model,
                    "count": 0,
                    "allocated": 0,
                    "available": 0,
                    "slots": dict.fromkeys(SLOT_SIZES, 0),
                },
            )
            for key in ("count", "allocated", "available"):
                into[key] += e[key]
            for k in SLOT_SIZES:
                into["slots"][k] += e["slots"][k]
    for model, found in vendors.items():
        if len(found) == 1:
            result[model]["vendor"] = found.pop()
    return result


def total_resources(*providers: Truth) -> dict[str, dict[str, int]]:
    """The pool's resource maps (accelerator resources only): its Ready providers' summed."""
    maps: dict[str, dict[str, int]] = {}
    for truth in providers:
        for figure, values in truth.resources.items():
            into = maps.setdefault(figure, {})
            for resource, value in values.items():
                into[resource] = into.get(resource, 0) + value
    return maps


def total_power(*providers: Truth) -> dict[str, Decimal]:
    power: dict[str, Decimal] = {}
    for truth in providers:
        for precision, value in truth.compute_power.items():
            power[precision] = power.get(precision, Decimal(0)) + value
    return power
