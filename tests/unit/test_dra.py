"""DRA devices (resource.k8s.io/v1) in a member's figures: pools, generations, partitions,
taints, claims and devices a DeviceClass also exposes as an extended resource.

Objects are in their Kubernetes 1.34 wire shape. Every expected figure is counted by hand
from the objects of its test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from fedcompute.capacity import dra, inventory
from fedcompute.capacity.classify import VendorClassifier
from fedcompute.capacity.inventory import AcceleratorInventory, MemberInventory

Json = dict[str, Any]

NV = "gpu.nvidia.com"
AMD = "gpu.amd.com"
GPU = "nvidia.com/gpu"
H100 = "NVIDIA H100 80GB HBM3"
H100_MODEL = "NVIDIA-H100-80GB-HBM3"  # the productName, normalized
A100 = "NVIDIA A100-SXM4-80GB"
A100_MODEL = "NVIDIA-A100-SXM4-80GB"
NO_SLOTS = {"1": 0, "2": 0, "4": 0, "8": 0, "16": 0}


# --- builders ------------------------------------------------------------------------------


def node(
    name: str,
    capacity: Mapping[str, str] | None = None,
    *,
    ready: bool = True,
    unschedulable: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Json:
    return {
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "capacity": dict(capacity or {"cpu": "8"}),
            "allocatable": dict(capacity or {"cpu": "8"}),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def device(
    name: str,
    product: str | None = H100,
    *,
    kind: str = "gpu",
    taints: Sequence[str] = (),
    consumes: Mapping[str, Mapping[str, str]] | None = None,
) -> Json:
    attributes: Json = {"type": {"string": kind}}
    if product is not None:
        attributes["productName"] = {"string": product}
    body: Json = {"name": name, "attributes": attributes}
    if taints:
        body["taints"] = [{"key": "example.com/health", "effect": e} for e in taints]
    if consumes is not None:
        body["consumesCounters"] = [
            {"counterSet": counter_set, "counters": {k: {"value": v} for k, v in counters.items()}}
            for counter_set, counters in consumes.items()
        ]
    return body


def resource_slice(
    name: str,
    node_name: str | None,
    devices: Sequence[Json],
    *,
    driver: str = NV,
    pool: str | None = None,
    generation: int = 1,
    slices: int = 1,
    counters: Mapping[str, Mapping[str, str]] | None = None,
) -> Json:
    spec: Json = {
        "driver": driver,
        "pool": {
            "name": pool or node_name or "shared",
            "generation": generation,
            "resourceSliceCount": slices,
        },
        "devices": list(devices),
    }
    if node_name is not None:
        spec["nodeName"] = node_name
    else:
        spec["allNodes"] = True
    if counters is not None:
        spec["sharedCounters"] = [
            {"name": counter_set, "counters": {k: {"value": v} for k, v in values.items()}}
            for counter_set, values in counters.items()
        ]
    return {"metadata": {"name": name}, "spec": spec}


def claim(pool: str, *devices: str, driver: str = NV, admin: bool = False) -> Json:
    results = []
    for name in devices:
        result: Json = {"request": "r", "driver": driver, "pool": pool, "device": name}
        if admin:
            result["adminAccess"] = True
        results.append(result)
    return {
        "metadata": {"name": f"claim-{'-'.join(devices)}", "namespace": "ml"},
        "status": {"allocation": {"devices": {"results": results}}},
    }


def device_class(resource: str, expression: str) -> Json:
    return {
        "metadata": {"name": resource.replace("/", "-")},
        "spec": {
            "selectors": [{"cel": {"expression": expression}}],
            "extendedResourceName": resource,
        },
    }


def summarize(
    nodes: Sequence[Json],
    *,
    slices: Sequence[Json] = (),
    claims: Sequence[Json] = (),
    classes: Sequence[Json] = (),
    pods: Sequence[Json] = (),
    previous: MemberInventory | None = None,
    whole_cluster: bool = True,
) -> MemberInventory:
    return inventory.summarize_member(
        nodes,
        pods,
        reserved={},
        whole_cluster=whole_cluster,
        device_classes=classes,
        resource_slices=slices,
        resource_claims=claims,
        previous=previous,
    )


def figures(summary: MemberInventory) -> list[tuple[str, int, int, int, int, int]]:
    """``(model, capacity, allocatable, allocated, available, unhealthy)`` per entry."""
    return [
        (a.model, a.capacity, a.allocatable, a.allocated, a.available, a.unhealthy)
        for a in summary.accelerators
    ]


def gpus(*names: str, product: str | None = H100) -> list[Json]:
    return [device(n, product) for n in names]


# --- whole devices -------------------------------------------------------------------------


def test_whole_devices_are_counted_per_model_and_node() -> None:
    nodes = [node("n1"), node("n2")]
    slices = [
        resource_slice("n1-gpus", "n1", gpus("gpu-0", "gpu-1", "gpu-2", "gpu-3")),
        resource_slice("n2-gpus", "n2", [*gpus("gpu-0", "gpu-1"), device("gpu-2", A100)]),
    ]
    claims = [claim("n1", "gpu-0", "gpu-1", "gpu-2"), claim("n2", "gpu-2")]
    summary = summarize(nodes, slices=slices, claims=claims)
    assert summary.dra_served
    assert summary.accelerators == (
        AcceleratorInventory(
            A100_MODEL,
            NV,
            nodes=1,
            capacity=1,
            allocatable=1,
            allocated=1,
            available=0,
            vendor="NVIDIA",
            resource_names=(NV,),
            slots=NO_SLOTS,
        ),
        # n1: 4 devices, 3 allocated, 1 free; n2: 2 devices, both free.
        AcceleratorInventory(
            H100_MODEL,
            NV,
            nodes=2,
            capacity=6,
            allocatable=6,
            allocated=3,
            available=3,
            vendor="NVIDIA",
            resource_names=(NV,),
            slots={"1": 3, "2": 1, "4": 0, "8": 0, "16": 0},
        ),
    )
    # DRA devices are no extended resource: the resource maps do not hold them.
    assert GPU not in summary.capacity


def test_a_device_without_a_model_attribute_is_counted_as_unknown() -> None:
    slices = [resource_slice("s", "n1", [*gpus("gpu-0"), *gpus("gpu-1", "gpu-2", product=None)])]
    summary = summarize([node("n1")], slices=slices)
    assert figures(summary) == [(H100_MODEL, 1, 1, 0, 1, 0), ("unknown-nvidia", 2, 2, 0, 2, 0)]
    assert [a.identified for a in summary.accelerators] == [True, False]


def test_without_dra_lists_the_member_is_not_dra_served() -> None:
    summary = inventory.summarize_member([node("n1")], [], reserved={})
    assert not summary.dra_served
    assert summary.accelerators == ()


# --- generations and incomplete pools ---------------------------------------------------------

OLD_GENERATION = [
    resource_slice("p-a", "n1", gpus("gpu-0", "gpu-1"), pool="p", generation=1, slices=2),
    resource_slice("p-b", "n1", gpus("gpu-2", "gpu-3"), pool="p", generation=1, slices=2),
]
NEW_GENERATION = [
    resource_slice("p-c", "n1", gpus("gpu-0", "gpu-1", "gpu-5"), pool="p", generation=2)
]


@pytest.mark.parametrize(
    "slices",
    [
        pytest.param([*OLD_GENERATION, *NEW_GENERATION], id="old first"),
        pytest.param([*NEW_GENERATION, *OLD_GENERATION], id="new first"),
        pytest.param([OLD_GENERATION[0], *NEW_GENERATION, OLD_GENERATION[1]], id="interleaved"),
    ],
)
def test_only_the_newest_generation_of_a_pool_counts(slices: list[Json]) -> None:
    """Generation 1 (4 devices in 2 slices) is being replaced by generation 2 (3 devices)."""
    summary = summarize([node("n1")], slices=slices)
    assert figures(summary) == [(H100_MODEL, 3, 3, 0, 3, 0)]
    assert summary.partial_pools == ()
    assert [(p.generation, len(p.devices)) for p in summary.device_pools.values()] == [(2, 3)]


def test_the_old_generation_alone_is_counted_whole() -> None:
    summary = summarize([node("n1")], slices=OLD_GENERATION)
    assert figures(summary) == [(H100_MODEL, 4, 4, 0, 4, 0)]


# Generation 3 of pool p is published as 2 slices; only the first (2 devices) is seen.
HALF_OF_GENERATION_3 = [
    resource_slice("p-d", "n1", gpus("gpu-0", "gpu-1"), pool="p", generation=3, slices=2)
]


def test_an_incomplete_pool_without_a_previous_view_counts_what_is_seen() -> None:
    summary = summarize([node("n1")], slices=HALF_OF_GENERATION_3)
    assert summary.partial_pools == ("gpu.nvidia.com/p",)
    assert figures(summary) == [(H100_MODEL, 2, 2, 0, 2, 0)]
    # Nothing complete to keep for the next collection.
    assert summary.device_pools == {}


def test_an_incomplete_pool_keeps_the_previous_complete_view() -> None:
    previous = summarize([node("n1")], slices=OLD_GENERATION)
    summary = summarize([node("n1")], slices=HALF_OF_GENERATION_3, previous=previous)
    assert summary.partial_pools == ("gpu.nvidia.com/p",)
    assert figures(summary) == [(H100_MODEL, 4, 4, 0, 4, 0)]
    kept = summary.device_pools[(NV, "p")]
    assert (kept.generation, kept.complete, len(kept.devices)) == (1, True, 4)

    # Still incomplete at the next collection: the same view is kept again.
    again = summarize([node("n1")], slices=HALF_OF_GENERATION_3, previous=summary)
    assert figures(again) == [(H100_MODEL, 4, 4, 0, 4, 0)]

    # Once complete, the new generation replaces the kept view.
    rest = resource_slice("p-e", "n1", gpus("gpu-6"), pool="p", generation=3, slices=2)
    done = summarize([node("n1")], slices=[*HALF_OF_GENERATION_3, rest], previous=again)
    assert done.partial_pools == ()
    assert figures(done) == [(H100_MODEL, 3, 3, 0, 3, 0)]
    assert done.device_pools[(NV, "p")].generation == 3


def test_claims_apply_to_the_kept_view_of_an_incomplete_pool() -> None:
    previous = summarize([node("n1")], slices=OLD_GENERATION)
    summary = summarize(
        [node("n1")],
        slices=HALF_OF_GENERATION_3,
        claims=[claim("p", "gpu-3")],  # in the kept view only
        previous=previous,
    )
    assert figures(summary) == [(H100_MODEL, 4, 4, 1, 3, 0)]


def test_the_kept_view_of_another_pool_does_not_replace_this_one() -> None:
    other = [resource_slice("q-a", "n1", gpus("gpu-0"), pool="q")]
    previous = summarize([node("n1")], slices=other)
    summary = summarize([node("n1")], slices=HALF_OF_GENERATION_3, previous=previous)
    assert figures(summary) == [(H100_MODEL, 2, 2, 0, 2, 0)]


# --- partitions ------------------------------------------------------------------------------

# Two GPUs with their counter sets; gpu-0 is also offered as two halves (partitions).
COUNTERS = {
    "gpu-0-cs": {"memory": "80Gi", "multiprocessors": "132"},
    "gpu-1-cs": {"memory": "80Gi", "multiprocessors": "132"},
}
PARTITIONED = [
    resource_slice(
        "n1-gpus",
        "n1",
        [
            device("gpu-0", consumes={"gpu-0-cs": {"memory": "80Gi", "multiprocessors": "132"}}),
            device(
                "gpu-0-half-0",
                kind="mig",
                consumes={"gpu-0-cs": {"memory": "40Gi", "multiprocessors": "66"}},
            ),
            device(
                "gpu-0-half-1",
                kind="mig",
                consumes={"gpu-0-cs": {"memory": "40Gi", "multiprocessors": "66"}},
            ),
            device("gpu-1", consumes={"gpu-1-cs": {"memory": "80Gi", "multiprocessors": "132"}}),
            # All of the memory but not the multiprocessors: still a partition.
            device("gpu-1-memory", consumes={"gpu-1-cs": {"memory": "80Gi"}}),
            device("gpu-2"),  # no shared counters: a whole device
        ],
        counters=COUNTERS,
    )
]


@pytest.mark.parametrize(
    ("allocated", "busy"),
    [
        pytest.param((), 0, id="nothing allocated"),
        pytest.param(("gpu-0-half-1",), 1, id="a partition makes its whole device busy"),
        pytest.param(("gpu-0-half-0", "gpu-0-half-1"), 1, id="two partitions of one device"),
        pytest.param(("gpu-1-memory",), 1, id="a partial-counter partition"),
        pytest.param(("gpu-0-half-0", "gpu-1-memory"), 2, id="partitions of two devices"),
        pytest.param(("gpu-2",), 1, id="a whole device"),
        pytest.param(("gpu-0", "gpu-0-half-0"), 1, id="a device and its own partition"),
    ],
)
def test_partitions_are_not_devices_but_make_their_device_busy(
    allocated: tuple[str, ...], busy: int
) -> None:
    claims = [claim("n1", name) for name in allocated]
    summary = summarize([node("n1")], slices=PARTITIONED, claims=claims)
    # Three whole devices: gpu-0, gpu-1 and gpu-2.
    assert figures(summary) == [(H100_MODEL, 3, 3, busy, 3 - busy, 0)]
    assert summary.accelerators[0].slots is not None
    assert summary.accelerators[0].slots["1"] == 3 - busy


def test_whole_devices_and_partitions_of_a_pool() -> None:
    reader = dra.SliceReader(VendorClassifier().device)
    reader.add(PARTITIONED)
    (pool,) = reader.pools()
    assert [d.name for d in pool.devices] == ["gpu-0", "gpu-1", "gpu-2"]
    assert dict(pool.partitions) == {
        "gpu-0-half-0": frozenset({"gpu-0-cs"}),
        "gpu-0-half-1": frozenset({"gpu-0-cs"}),
        "gpu-1-memory": frozenset({"gpu-1-cs"}),
    }
    assert dra.busy_devices(pool, {(NV, "n1", "gpu-0-half-0")}) == {"gpu-0"}
    assert dra.busy_devices(pool, {(NV, "other-pool", "gpu-0-half-0")}) == set()
    assert dra.busy_devices(pool, {("gpu.amd.com", "n1", "gpu-1")}) == set()


def test_counters_declared_in_another_slice_of_the_pool_are_used() -> None:
    counters_only = resource_slice("n1-counters", "n1", [], slices=2, counters=COUNTERS)
    devices = resource_slice(
        "n1-devices",
        "n1",
        [
            device("gpu-0", consumes={"gpu-0-cs": {"memory": "80Gi", "multiprocessors": "132"}}),
            device("gpu-0-half", consumes={"gpu-0-cs": {"memory": "40Gi"}}),
        ],
        slices=2,
    )
    for order in ([counters_only, devices], [devices, counters_only]):
        summary = summarize([node("n1")], slices=order)
        assert figures(summary) == [(H100_MODEL, 1, 1, 0, 1, 0)]


def test_a_device_consuming_an_undeclared_counter_set_is_not_whole() -> None:
    slices = [
        resource_slice(
            "s",
            "n1",
            [device("gpu-0", consumes={"missing-cs": {"memory": "80Gi"}}), device("gpu-1")],
        )
    ]
    summary = summarize([node("n1")], slices=slices)
    assert figures(summary) == [(H100_MODEL, 1, 1, 0, 1, 0)]


# --- taints and claims ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effects", "unhealthy"),
    [
        pytest.param(["NoSchedule"], True, id="NoSchedule"),
        pytest.param(["NoExecute"], True, id="NoExecute"),
        pytest.param(["PreferNoSchedule"], False, id="PreferNoSchedule"),
        pytest.param(["PreferNoSchedule", "NoExecute"], True, id="any unhealthy effect"),
    ],
)
def test_tainted_devices(effects: list[str], unhealthy: bool) -> None:
    slices = [resource_slice("s", "n1", [device("gpu-0", taints=effects), *gpus("gpu-1")])]
    summary = summarize([node("n1")], slices=slices)
    if unhealthy:
        assert figures(summary) == [(H100_MODEL, 2, 1, 0, 1, 1)]
    else:
        assert figures(summary) == [(H100_MODEL, 2, 2, 0, 2, 0)]


def test_an_allocated_tainted_device_is_unhealthy_not_allocated() -> None:
    slices = [resource_slice("s", "n1", [device("gpu-0", taints=["NoExecute"]), *gpus("gpu-1")])]
    summary = summarize([node("n1")], slices=slices, claims=[claim("n1", "gpu-0")])
    assert figures(summary) == [(H100_MODEL, 2, 1, 0, 1, 1)]


def test_admin_access_claims_are_not_allocations() -> None:
    slices = [resource_slice("s", "n1", gpus("gpu-0", "gpu-1", "gpu-2"))]
    claims = [
        claim("n1", "gpu-0", "gpu-1", admin=True),  # monitoring: takes nothing
        claim("n1", "gpu-1"),  # a real allocation of a monitored device
    ]
    summary = summarize([node("n1")], slices=slices, claims=claims)
    assert figures(summary) == [(H100_MODEL, 3, 3, 1, 2, 0)]


def test_claims_naming_other_drivers_pools_or_nothing_allocate_nothing() -> None:
    slices = [resource_slice("s", "n1", gpus("gpu-0"))]
    claims: list[Json] = [
        claim("n1", "gpu-0", driver=AMD),
        claim("n2", "gpu-0"),
        {"status": {"allocation": {"devices": {"results": "gpu-0"}}}},
        {"status": {}},
        {"metadata": {"name": "pending"}},
    ]
    summary = summarize([node("n1")], slices=slices, claims=claims)
    assert figures(summary) == [(H100_MODEL, 1, 1, 0, 1, 0)]


# --- which devices count ----------------------------------------------------------------------


def test_drivers_outside_the_vendor_table_are_ignored() -> None:
    slices = [
        resource_slice("nic", "n1", [device("eth0", "ConnectX-7")], driver="dra.net"),
        resource_slice("fpga", "n1", [device("fpga-0", "U250")], driver="fpga.example.com"),
        resource_slice("gpu", "n1", gpus("gpu-0")),
    ]
    summary = summarize([node("n1")], slices=slices)
    assert figures(summary) == [(H100_MODEL, 1, 1, 0, 1, 0)]
    kept = [(p.driver, len(p.devices)) for p in summary.device_pools.values() if p.devices]
    assert kept == [(NV, 1)]


def test_devices_on_nodes_the_provider_does_not_select_are_ignored() -> None:
    slices = [
        resource_slice("n1", "n1", gpus("gpu-0")),
        resource_slice("elsewhere", "elsewhere", gpus("gpu-0", "gpu-1")),
    ]
    summary = summarize([node("n1")], slices=slices, whole_cluster=False)
    assert figures(summary) == [(H100_MODEL, 1, 1, 0, 1, 0)]
    assert summary.accelerators[0].nodes == 1


def test_devices_reachable_from_every_node_count_only_for_the_whole_cluster() -> None:
    slices = [
        resource_slice("n1", "n1", gpus("gpu-0")),
        resource_slice("fabric", None, gpus("shared-0", "shared-1"), pool="fabric"),
    ]
    whole = summarize([node("n1")], slices=slices, whole_cluster=True)
    # Counted and offered, but on no one node: they are in no slot.
    assert figures(whole) == [(H100_MODEL, 3, 3, 0, 3, 0)]
    assert whole.accelerators[0].slots == {"1": 1, "2": 0, "4": 0, "8": 0, "16": 0}
    assert whole.accelerators[0].nodes == 1
    selected = summarize([node("n1")], slices=slices, whole_cluster=False)
    assert figures(selected) == [(H100_MODEL, 1, 1, 0, 1, 0)]


def test_dra_devices_offer_slots_only_on_ready_schedulable_nodes() -> None:
    nodes = [node("ok"), node("cordoned", unschedulable=True), node("down", ready=False)]
    slices = [
        resource_slice("ok", "ok", gpus("gpu-0", "gpu-1", "gpu-2", "gpu-3")),
        resource_slice(
            "cordoned", "cordoned", [*gpus("gpu-0"), device("gpu-1", taints=["NoSchedule"])]
        ),
        resource_slice("down", "down", gpus("gpu-0", "gpu-1", "gpu-2", "gpu-3")),
    ]
    summary = summarize(nodes, slices=slices, claims=[claim("ok", "gpu-3")])
    (entry,) = summary.accelerators
    # Capacity counts every selected node's devices; the rest only those on "ok".
    assert (entry.nodes, entry.capacity, entry.allocatable, entry.allocated) == (3, 10, 4, 1)
    assert (entry.available, entry.unhealthy) == (3, 0)
    assert entry.slots == {"1": 3, "2": 1, "4": 0, "8": 0, "16": 0}


def test_fields_of_the_wrong_type_count_as_absent() -> None:
    slices: list[Json] = [
        {"metadata": {"name": "no-spec"}},
        {"spec": "oops"},
        {"spec": {"driver": NV, "pool": "p", "nodeName": "n1", "devices": gpus("x")}},
        {"spec": {"driver": NV, "pool": {"name": "n1"}, "nodeName": "n1", "devices": "gpu-0"}},
        resource_slice("ok", "n1", [*gpus("gpu-0"), {"name": 7}, {"attributes": []}], pool="ok"),
    ]
    slices[-1]["spec"]["devices"].append("gpu-9")
    summary = summarize([node("n1")], slices=slices)
    assert figures(summary) == [(H100_MODEL, 1, 1, 0, 1, 0)]


# --- devices a DeviceClass also exposes as an extended resource ------------------------------

NV_CLASS = device_class(GPU, f'device.driver == "{NV}"')
LABELS = {"nvidia.com/gpu.product": H100_MODEL}


def test_a_device_reachable_both_ways_is_counted_once() -> None:
    """n1 advertises 2 nvidia.com/gpu that are its 2 DRA devices; n2 has no DRA driver."""
    nodes = [node("n1", {GPU: "2"}, labels=LABELS), node("n2", {GPU: "4"}, labels=LABELS)]
    slices = [resource_slice("n1", "n1", gpus("gpu-0", "gpu-1"))]
    summary = summarize(nodes, slices=slices, classes=[NV_CLASS])
    (entry,) = summary.accelerators
    assert (entry.model, entry.nodes, entry.capacity, entry.allocatable) == (H100_MODEL, 2, 6, 6)
    assert entry.resource_names == (NV, GPU)
    assert entry.resource_name == GPU  # 4 of the 6 devices
    assert entry.slots == {"1": 6, "2": 3, "4": 1, "8": 0, "16": 0}
    # The node's own figures are what it advertises, whatever DRA says.
    assert summary.capacity[GPU] == 6


def test_without_the_device_class_both_ways_add_up() -> None:
    nodes = [node("n1", {GPU: "2"}, labels=LABELS)]
    slices = [resource_slice("n1", "n1", gpus("gpu-0", "gpu-1"))]
    summary = summarize(nodes, slices=slices)
    assert figures(summary) == [(H100_MODEL, 4, 4, 0, 4, 0)]


@pytest.mark.parametrize(
    ("expression", "counted"),
    [
        pytest.param(f'device.driver == "{NV}"', 2, id="names the driver"),
        pytest.param(f"device.driver == '{NV}'", 2, id="single quotes"),
        pytest.param(f'device.driver == "{AMD}"', 4, id="names another driver"),
        pytest.param('device.attributes["gpu.nvidia.com"].type == "gpu"', 2, id="any driver"),
    ],
)
def test_which_drivers_a_device_class_names(expression: str, counted: int) -> None:
    nodes = [node("n1", {GPU: "2"}, labels=LABELS)]
    slices = [resource_slice("n1", "n1", gpus("gpu-0", "gpu-1"))]
    summary = summarize(nodes, slices=slices, classes=[device_class(GPU, expression)])
    assert [a.capacity for a in summary.accelerators] == [counted]


def test_a_device_class_dedupes_only_nodes_with_its_drivers_devices() -> None:
    """The node's only DRA devices are of a driver the vendor table does not know."""
    nodes = [node("n1", {GPU: "2"}, labels=LABELS)]
    slices = [resource_slice("nic", "n1", [device("eth0", "NIC")], driver="dra.net")]
    classes = [device_class(GPU, 'device.driver == "dra.net"')]
    summary = summarize(nodes, slices=slices, classes=classes)
    assert figures(summary) == [(H100_MODEL, 2, 2, 0, 2, 0)]
    assert summary.accelerators[0].resource_names == (GPU,)


def test_extended_resource_classes() -> None:
    classes = [
        device_class(GPU, f'device.driver == "{NV}"'),
        device_class(GPU, 'device.driver == "other.example.com"'),
        device_class("example.com/fpga", "device.attributes.size > 1"),
        device_class("amd.com/gpu", f'device.driver == "{AMD}"'),
        device_class("amd.com/gpu", "true"),
        {"spec": {"selectors": [{"cel": {"expression": f'device.driver == "{NV}"'}}]}},
    ]
    assert dra.extended_resource_classes(classes) == {
        GPU: frozenset({NV, "other.example.com"}),
        "example.com/fpga": None,
        "amd.com/gpu": None,
    }
