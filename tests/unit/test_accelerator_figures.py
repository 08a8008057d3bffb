"""What accelerators are worth and where jobs fit: slots, reserved devices, compute power
from the catalog (and its AcceleratorModel overrides), one status entry per model, and the
figures a member's status carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from fedcompute import quantities
from fedcompute.api.accelerator import AcceleratorModel
from fedcompute.api.common import find_condition
from fedcompute.api.provider import ComputeProvider, Reason
from fedcompute.capacity import inventory
from fedcompute.capacity.catalog import BUILTIN, Catalog, ModelSpec, from_object
from fedcompute.capacity.inventory import DeclaredAccelerator, MemberInventory
from fedcompute.capacity.providers import Collection, ProviderView, plan_provider

Json = dict[str, Any]
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"
ASCEND = "huawei.com/Ascend910"
NV_LABEL = "nvidia.com/gpu.product"
GKE_LABEL = "cloud.google.com/gke-accelerator"
CHIP_LABEL = "huawei.com/npu.chip.name"
H100 = "NVIDIA-H100-80GB-HBM3"


def slots(one: int, two: int, four: int, eight: int, sixteen: int) -> dict[str, int]:
    return {"1": one, "2": two, "4": four, "8": eight, "16": sixteen}


def q(values: Mapping[str, str | int]) -> dict[str, Decimal]:
    return quantities.parse_map(values)


def node(
    name: str,
    devices: Mapping[str, str],
    *,
    labels: Mapping[str, str] | None = None,
    ready: bool = True,
    unschedulable: bool = False,
) -> Json:
    capacity = {"cpu": "64", "pods": "110", **devices}
    return {
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(node_name: str, requests: Mapping[str, str], phase: str = "Running") -> Json:
    return {
        "metadata": {"name": "job", "namespace": "ml"},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "c", "resources": {"requests": dict(requests)}}],
        },
        "status": {"phase": phase},
    }


def member() -> ComputeProvider:
    return ComputeProvider.model_validate(
        {
            "metadata": {"name": "member", "generation": 1},
            "spec": {
                "region": "east",
                "source": {"kubernetes": {"kubeconfigSecretRef": {"name": "member"}}},
            },
        }
    )


def static(
    accelerators: list[Json], resources: dict[str, str], reserved: dict[str, str] | None = None
) -> ComputeProvider:
    spec: Json = {
        "region": "east",
        "source": {"static": {"resources": resources, "accelerators": accelerators}},
    }
    if reserved is not None:
        spec["reserved"] = reserved
    return ComputeProvider.model_validate(
        {"metadata": {"name": "hpc", "generation": 1}, "spec": spec}
    )


def planned(
    figures: MemberInventory,
    catalog: Catalog | None = None,
    provider: ComputeProvider | None = None,
) -> ProviderView:
    collection = Collection(inventory=figures, succeeded_at=T0, attempted_at=T0, generation=1)
    return plan_provider(
        provider or member(), collection=collection, claim=None, now=T0, catalog=catalog
    )


def summarize(nodes: Sequence[Json], pods: Sequence[Json] = (), **dra: Any) -> MemberInventory:
    return inventory.summarize_member(nodes, pods, reserved={}, **dra)


def spec_named(name: str) -> ModelSpec:
    found = [s for s in BUILTIN if s.name == name]
    assert len(found) == 1, name
    return found[0]


def times(count: int, figures: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {precision: count * value for precision, value in figures.items()}


# --- slots -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "expected"),
    [
        pytest.param([], slots(0, 0, 0, 0, 0), id="no nodes"),
        pytest.param([2] * 8, slots(16, 8, 0, 0, 0), id="16 free, 2 per node"),
        pytest.param([16], slots(16, 8, 4, 2, 1), id="16 free on one node"),
        pytest.param([8, 8], slots(16, 8, 4, 2, 0), id="16 free, 8 per node"),
        pytest.param([3, 5, 7], slots(15, 6, 2, 0, 0), id="odd counts round down per node"),
        pytest.param([0, 1, 0], slots(1, 0, 0, 0, 0), id="empty nodes"),
        pytest.param([33], slots(33, 16, 8, 4, 2), id="more than 16 on one node"),
    ],
)
def test_slots_of(free: list[int], expected: dict[str, int]) -> None:
    assert inventory.slots_of(free) == expected


def test_add_slots() -> None:
    a = slots(3, 1, 0, 0, 0)
    b = slots(8, 4, 2, 1, 0)
    assert inventory.add_slots(a, b) == slots(11, 5, 2, 1, 0)
    assert inventory.add_slots(a, None) == a
    assert inventory.add_slots(None, b) == b
    assert inventory.add_slots(None, None) is None


def test_slots_come_from_ready_schedulable_nodes_only() -> None:
    labels = {NV_LABEL: H100}
    nodes = [
        node("ok-1", {GPU: "8"}, labels=labels),
        node("ok-2", {GPU: "2"}, labels=labels),
        node("cordoned", {GPU: "8"}, labels=labels, unschedulable=True),
        node("down", {GPU: "8"}, labels=labels, ready=False),
    ]
    pods = [pod("ok-1", {GPU: "3"}), pod("cordoned", {GPU: "1"}), pod("down", {GPU: "1"})]
    (entry,) = summarize(nodes, pods).accelerators
    # ok-1: 5 free, ok-2: 2 free; the other 16 devices are capacity only.
    assert (entry.capacity, entry.allocatable, entry.allocated, entry.available) == (26, 10, 3, 7)
    assert entry.slots == slots(7, 3, 1, 0, 0)


# --- static providers ---------------------------------------------------------------------------


def test_static_reserved_devices_come_off_models_in_name_order() -> None:
    summary = inventory.summarize_static(
        q({"cpu": "512", GPU: "28", ASCEND: "16"}),
        [
            DeclaredAccelerator("NVIDIA-H100-80GB-HBM3", 16, GPU, 8, "NVIDIA"),
            DeclaredAccelerator("NVIDIA-A100-SXM4-80GB", 12, GPU, 4, "NVIDIA"),
            DeclaredAccelerator("Ascend910B3", 16, ASCEND, 16, "Huawei"),
        ],
        q({GPU: "14", ASCEND: "1"}),
        4,
    )
    assert summary.allocatable == q({"cpu": "512", GPU: "14", ASCEND: "15"})
    assert [
        (a.model, a.capacity, a.allocatable, a.available, a.slots) for a in summary.accelerators
    ] == [
        # 15 on nodes of 16: one 16-device job no longer fits.
        ("Ascend910B3", 16, 15, 15, slots(15, 7, 3, 1, 0)),
        # All 12 A100 reserved first (name order), then 2 of the 16 H100.
        ("NVIDIA-A100-SXM4-80GB", 12, 0, 0, slots(0, 0, 0, 0, 0)),
        # 14 on nodes of 8: one full node (8) and one of 6.
        ("NVIDIA-H100-80GB-HBM3", 16, 14, 14, slots(14, 7, 3, 1, 0)),
    ]


def test_static_status_has_slots_only_with_devices_per_node() -> None:
    p = static(
        [
            {"model": "NVIDIA-H100-80GB-HBM3", "count": 24, "devicesPerNode": 8},
            {"model": "NVIDIA-A100-SXM4-80GB", "count": 16},
        ],
        {"cpu": "1000", GPU: "40"},
        reserved={GPU: "3"},
    )
    view = plan_provider(p, collection=None, claim=None, now=T0)
    status = view.status.to_wire()
    assert status["accelerators"] == [
        {
            "model": "NVIDIA-A100-SXM4-80GB",
            "vendor": "NVIDIA",
            "resourceName": GPU,
            "capacity": 16,
            "count": 13,
            "allocated": 0,
            "available": 13,
        },
        {
            "model": "NVIDIA-H100-80GB-HBM3",
            "vendor": "NVIDIA",
            "resourceName": GPU,
            "capacity": 24,
            "count": 24,
            "allocated": 0,
            "available": 24,
            "slots": {"1": 24, "2": 12, "4": 6, "8": 3, "16": 0},
        },
    ]
    assert status["acceleratorCount"] == 37
    assert status["allocatable"][GPU] == "37"


# --- compute power -----------------------------------------------------------------------------


def test_member_compute_power_comes_from_the_built_in_catalog() -> None:
    h100 = spec_named(H100)
    assert h100.tflops, "the test needs a model with figures"
    assert "nvidia-h100-80gb" in h100.aliases
    no_figures = next(s for s in BUILTIN if s.vendor == "Huawei" and not s.tflops)
    nodes = [
        node("h-1", {GPU: "8"}, labels={NV_LABEL: H100}),
        node("h-2", {GPU: "4"}, labels={GKE_LABEL: "nvidia-h100-80gb"}),  # GKE's alias
        node("h-3", {GPU: "8"}, labels={NV_LABEL: H100}, ready=False),  # not offered
        node("npu", {ASCEND: "8"}, labels={CHIP_LABEL: no_figures.name}),
        node("new", {GPU: "2"}, labels={NV_LABEL: "NVIDIA-Future-X1"}),  # not in the catalog
    ]
    view = planned(summarize(nodes, [pod("h-1", {GPU: "2"})]))
    # Offered (allocatable) devices count, allocated or not: 8 + 4 H100.
    expected = times(12, h100.tflops)
    assert view.compute_power == expected
    assert view.status.compute_power is not None
    assert view.status.compute_power.as_dict() == expected
    assert view.compute_power_excluded == 10
    assert view.status.to_wire()["computePowerExcludedDevices"] == 10


def test_catalog_overrides_give_figures_and_names() -> None:
    objects = [
        AcceleratorModel.model_validate(
            {
                "metadata": {"name": "ascend910b3"},
                "spec": {
                    "vendor": "Huawei",
                    "aliases": ["910B3"],
                    "tflops": {"fp16": "313", "int8": "626"},
                    "source": "site acceptance test",
                },
            }
        ),
        AcceleratorModel.model_validate(
            {
                "metadata": {"name": "site-x1"},
                "spec": {
                    "vendor": "NVIDIA",
                    "aliases": ["X1 Prototype"],
                    "tflops": {"fp16": "10"},
                    "source": "vendor email",
                },
            }
        ),
    ]
    nodes = [
        node("npu", {ASCEND: "8"}, labels={CHIP_LABEL: "910B3"}),
        node("proto", {GPU: "2"}, labels={NV_LABEL: "X1-Prototype"}),
    ]
    figures = summarize(nodes, [pod("npu", {ASCEND: "2"})])

    builtin = planned(figures)
    assert builtin.compute_power == {}
    assert builtin.compute_power_excluded == 10

    view = planned(figures, Catalog([from_object(o) for o in objects]))
    assert view.compute_power == q({"fp16": 8 * 313 + 2 * 10, "int8": 8 * 626})
    assert view.compute_power_excluded == 0
    assert view.status.to_wire()["computePower"] == {"fp16": "2524", "int8": "5008"}
    # The override keeps the built-in entry's name; a new model is named after its object.
    assert [(a.model, a.count) for a in view.status.accelerators or []] == [
        ("Ascend910B3", 8),
        ("site-x1", 2),
    ]


def test_static_tflops_per_device_win_over_the_catalog() -> None:
    h100 = spec_named(H100)
    p = static(
        [
            {"model": H100, "count": 8, "tflopsPerDevice": {"fp16": "900"}},
            {"model": "NVIDIA-A100-SXM4-80GB", "count": 4},  # the catalog's figures
        ],
        {"cpu": "64", GPU: "12"},
        reserved={GPU: "2"},  # taken off the A100 (first by name): 2 of them are offered
    )
    view = plan_provider(p, collection=None, claim=None, now=T0)
    a100 = spec_named("NVIDIA-A100-SXM4-80GB")
    expected = times(2, a100.tflops)
    expected["fp16"] = expected.get("fp16", Decimal(0)) + 8 * Decimal(900)
    assert view.compute_power == expected
    assert h100.tflops["fp16"] != Decimal(900)


def test_static_tflops_per_device_win_for_a_model_spelt_by_an_alias() -> None:
    p = static(
        [{"model": "A100-SXM4-80GB", "count": 2, "tflopsPerDevice": {"fp16": "1"}}],
        {"cpu": "64", GPU: "2"},
    )
    view = plan_provider(p, collection=None, claim=None, now=T0)
    assert [a.model for a in view.status.accelerators or []] == ["NVIDIA-A100-SXM4-80GB"]
    assert view.compute_power == {"fp16": Decimal(2)}


# --- one status entry per model ---------------------------------------------------------------


def test_spellings_of_one_model_merge_into_one_status_entry() -> None:
    nodes = [
        node("a", {GPU: "8"}, labels={NV_LABEL: H100}),
        node("b", {GPU: "4"}, labels={GKE_LABEL: "nvidia-h100-80gb"}),
        node("c", {GPU: "2"}, labels={NV_LABEL: H100.lower()}),
        node("d", {"cpu": "8"}),
    ]
    slices = [
        {
            "metadata": {"name": "d-gpus"},
            "spec": {
                "driver": "gpu.nvidia.com",
                "pool": {"name": "d", "generation": 1, "resourceSliceCount": 1},
                "nodeName": "d",
                "devices": [
                    {
                        "name": f"gpu-{i}",
                        "attributes": {"productName": {"string": "NVIDIA H100 80GB HBM3"}},
                    }
                    for i in range(3)
                ],
            },
        }
    ]
    figures = summarize(nodes, [pod("a", {GPU: "5"})], resource_slices=slices)
    # Three spellings in the member's figures (the DRA name normalizes to the label's).
    assert sorted(a.model for a in figures.accelerators) == sorted(
        [H100, "nvidia-h100-80gb", H100.lower()]
    )
    status = planned(figures).status.to_wire()
    assert status["accelerators"] == [
        {
            "model": H100,
            "vendor": "NVIDIA",
            "resourceName": GPU,
            "resourceNames": ["gpu.nvidia.com", GPU],
            "capacity": 17,
            "count": 17,
            "allocated": 5,
            "available": 12,
            # Free per node: a 3, b 4, c 2, d 3.
            "slots": {"1": 12, "2": 5, "4": 1, "8": 0, "16": 0},
        }
    ]
    assert status["acceleratorCount"] == 17


# --- what a member's status says ----------------------------------------------------------------


def test_running_pods_take_pod_slots_from_available() -> None:
    nodes = [node("n1", {}), node("n2", {}), node("off", {}, ready=False)]
    pods = [
        pod("n1", {"cpu": "1"}),
        pod("n1", {"cpu": "1"}, phase="Pending"),  # bound, starting: holds its slot
        pod("n2", {}),
        pod("n2", {"cpu": "1"}, phase="Succeeded"),
        pod("off", {"cpu": "1"}),
    ]
    status = planned(summarize(nodes, pods)).status.to_wire()
    assert status["capacity"]["pods"] == "330"
    assert status["allocated"] == {"cpu": "2", "pods": "3"}
    assert status["available"] == {"cpu": "126", "pods": "217"}


def test_an_incomplete_device_pool_is_collected_with_its_reason() -> None:
    def pool_slice(name: str, devices: int, generation: int) -> Json:
        return {
            "metadata": {"name": name},
            "spec": {
                "driver": "gpu.nvidia.com",
                "pool": {"name": "n1", "generation": generation, "resourceSliceCount": 2},
                "nodeName": "n1",
                "devices": [
                    {
                        "name": f"{name}-{i}",
                        "attributes": {"productName": {"string": "NVIDIA H100 80GB HBM3"}},
                    }
                    for i in range(devices)
                ],
            },
        }

    nodes = [node("n1", {})]
    complete = summarize(nodes, resource_slices=[pool_slice("a", 4, 1), pool_slice("b", 4, 1)])
    first = planned(complete)
    collected = find_condition(first.status.conditions, "Collected")
    assert collected is not None and collected.reason == Reason.COLLECTED

    partial = inventory.summarize_member(
        nodes, [], reserved={}, resource_slices=[pool_slice("c", 2, 2)], previous=complete
    )
    view = planned(partial)
    collected = find_condition(view.status.conditions, "Collected")
    assert collected is not None
    assert (collected.status, collected.reason) == ("True", Reason.PARTIAL_DEVICE_POOLS)
    assert collected.message.startswith("DRA pool gpu.nvidia.com/n1 published fewer")
    assert view.ready and view.ready_reason == Reason.FRESH
    # The last complete view's 8 devices, not the 2 seen so far.
    assert [(a.model, a.count) for a in view.status.accelerators or []] == [(H100, 8)]
