"""Which extended resources and DRA devices are accelerators, of which vendor and model:
the vendor table by default, a provider's two overrides, and devices of unknown model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from fedcompute.api.common import find_condition
from fedcompute.api.provider import ComputeProvider, Reason
from fedcompute.capacity import inventory
from fedcompute.capacity.classify import OLD_DEFAULT_MODEL_LABEL, VendorClassifier
from fedcompute.capacity.inventory import AcceleratorInventory, MemberInventory
from fedcompute.capacity.providers import Collection, plan_provider

Json = dict[str, Any]
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"
NV_LABEL = "nvidia.com/gpu.product"
ASCEND = "huawei.com/Ascend910"
SITE_LABEL = "site.example.com/accelerator"
H100 = "NVIDIA-H100-80GB-HBM3"


def node(
    name: str,
    devices: Mapping[str, str],
    *,
    labels: Mapping[str, str] | None = None,
    allocatable: Mapping[str, str] | None = None,
    unschedulable: bool = False,
) -> Json:
    capacity = {"cpu": "64", "memory": "512Gi", **devices}
    return {
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "capacity": capacity,
            "allocatable": {**capacity, **(allocatable or {})},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(node_name: str, requests: Mapping[str, str]) -> Json:
    return {
        "metadata": {"name": f"job-on-{node_name}", "namespace": "ml"},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "c", "resources": {"requests": dict(requests)}}],
        },
        "status": {"phase": "Running"},
    }


def slots(one: int, two: int, four: int, eight: int, sixteen: int = 0) -> dict[str, int]:
    return {"1": one, "2": two, "4": four, "8": eight, "16": sixteen}


def summarize(
    nodes: Sequence[Json],
    pods: Sequence[Json] = (),
    *,
    model_label: str | None = None,
    resources: Sequence[str] | None = None,
) -> MemberInventory:
    return inventory.summarize_member(
        nodes,
        pods,
        reserved={},
        accelerator_model_label=model_label,
        accelerator_resources=resources,
    )


# --- the classifier -------------------------------------------------------------------------

TABLE_CASES: list[tuple[str, dict[str, str], tuple[str, str] | None]] = [
    (GPU, {NV_LABEL: H100}, ("NVIDIA", H100)),
    (GPU, {"cloud.google.com/gke-accelerator": "nvidia-l4"}, ("NVIDIA", "nvidia-l4")),
    (GPU, {}, ("NVIDIA", "")),
    # A MIG unit is named after its parent GPU, never as the whole GPU.
    (
        "nvidia.com/mig-1g.10gb",
        {NV_LABEL: "NVIDIA-A100-SXM4-80GB"},
        ("NVIDIA", "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb"),
    ),
    (ASCEND, {"huawei.com/npu.chip.name": "910B3"}, ("Huawei", "910B3")),
    (ASCEND, {"node.kubernetes.io/npu.chip.name": "910B2"}, ("Huawei", "910B2")),
    ("hygon.com/dcu", {"hygon.com/dcu.name": "K100_AI"}, ("Hygon", "K100_AI")),
    ("cambricon.com/mlu370", {"Model": "MLU370-X8"}, ("Cambricon", "MLU370-X8")),
    (
        "amd.com/gpu",
        {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"},
        ("AMD", "AMD_Instinct_MI300X_OAM"),
    ),
    ("amd.com/gpu", {NV_LABEL: "AMD_Instinct_MI300X_OAM"}, ("AMD", "")),
    ("habana.ai/gaudi", {}, ("Intel", "")),
    ("cpu", {NV_LABEL: H100}, None),
    ("example.com/fpga", {NV_LABEL: H100}, None),
    ("huawei.com/npu-core", {"huawei.com/npu.chip.name": "910B3"}, None),
    ("kunlunxin.com/vxpu-memory", {}, None),
]


@pytest.mark.parametrize(
    ("resource", "labels", "expected"),
    [pytest.param(r, lb, e, id=f"{r} {sorted(lb)}") for r, lb, e in TABLE_CASES],
)
def test_the_vendor_table_names_each_vendors_devices(
    resource: str, labels: dict[str, str], expected: tuple[str, str] | None
) -> None:
    assert VendorClassifier().resource(resource, labels) == expected


@pytest.mark.parametrize(
    ("resource", "labels", "expected"),
    [pytest.param(r, lb, e, id=f"{r} {sorted(lb)}") for r, lb, e in TABLE_CASES],
)
def test_the_old_crd_defaults_mean_the_vendor_table(
    resource: str, labels: dict[str, str], expected: tuple[str, str] | None
) -> None:
    old = VendorClassifier(model_label=OLD_DEFAULT_MODEL_LABEL, resources=[GPU])
    assert old.resource(resource, labels) == expected


def test_accelerator_resources_replace_the_table() -> None:
    classifier = VendorClassifier(resources=[ASCEND, "example.com/fpga"])
    labels = {"huawei.com/npu.chip.name": "910B3", NV_LABEL: H100}
    assert classifier.resource(ASCEND, labels) == ("Huawei", "910B3")
    assert classifier.resource(GPU, labels) is None
    assert classifier.resource("amd.com/gpu", labels) is None
    # A resource the table does not know is its domain's; without a model label its model
    # cannot be told.
    assert classifier.resource("example.com/fpga", labels) == ("example.com", "")


def test_a_model_label_override_is_read_before_the_vendors_labels() -> None:
    classifier = VendorClassifier(model_label=SITE_LABEL)
    both = {SITE_LABEL: "H800 SXM5", NV_LABEL: H100}
    assert classifier.resource(GPU, both) == ("NVIDIA", "H800-SXM5")
    assert classifier.resource(GPU, {NV_LABEL: H100}) == ("NVIDIA", H100)
    assert classifier.resource(GPU, {SITE_LABEL: "  ", NV_LABEL: H100}) == ("NVIDIA", H100)
    assert classifier.resource("amd.com/gpu", {SITE_LABEL: "MI308X"}) == ("AMD", "MI308X")
    # Only the table's resources (or the overriding list) are accelerators at all.
    assert classifier.resource("example.com/fpga", {SITE_LABEL: "VU19P"}) is None
    both_overrides = VendorClassifier(model_label=SITE_LABEL, resources=["example.com/fpga"])
    assert both_overrides.resource("example.com/fpga", {SITE_LABEL: "VU19P"}) == (
        "example.com",
        "VU19P",
    )


def test_a_model_label_override_names_partitions_after_their_parent() -> None:
    classifier = VendorClassifier(model_label=SITE_LABEL)
    labels = {SITE_LABEL: "A100"}
    assert classifier.resource("nvidia.com/mig-1g.10gb", labels) == ("NVIDIA", "A100-MIG-1g.10gb")
    assert classifier.resource("metax-tech.com/sgpu", labels) == ("MetaX", "A100-sgpu")
    assert classifier.resource("amd.com/cpx_nps4", labels) == ("AMD", "A100-cpx_nps4")


def test_a_model_label_override_names_partitions_of_vendors_without_labels() -> None:
    classifier = VendorClassifier(model_label=SITE_LABEL)
    labels = {SITE_LABEL: "P800"}
    assert classifier.resource("kunlunxin.com/xpu", labels) == ("Kunlunxin", "P800")
    vendor, model = classifier.resource("kunlunxin.com/vxpu", labels) or ("", "")
    assert vendor == "Kunlunxin"
    assert model != "P800"


DEVICE_CASES: list[tuple[str, dict[str, object], tuple[str, str] | None]] = [
    ("gpu.nvidia.com", {"productName": "NVIDIA H100 80GB HBM3"}, ("NVIDIA", H100)),
    ("gpu.nvidia.com", {"gpu.nvidia.com/productName": "NVIDIA H100 80GB HBM3"}, ("NVIDIA", H100)),
    (
        "gpu.nvidia.com",
        {"productName": "NVIDIA A100-SXM4-40GB", "type": "mig", "profile": "1g.5gb"},
        ("NVIDIA", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),
    ),
    ("gpu.nvidia.com", {"type": "gpu"}, ("NVIDIA", "")),
    ("gpu.nvidia.com", {"productName": True}, ("NVIDIA", "")),
    (
        "gpu.amd.com",
        {"productName": "AMD Instinct MI300X", "type": "amdgpu-partition", "profile": "cpx_nps4"},
        ("AMD", "AMD-Instinct-MI300X-cpx_nps4"),
    ),
    ("ascend.project-hami.io", {"model": "910B3", "productName": "Ascend"}, ("Huawei", "910B3")),
    ("dra.hygon.com", {"productName": "K100_AI"}, ("Hygon", "K100_AI")),
    ("gaudi.intel.com", {"model": "Gaudi3"}, ("Intel", "Gaudi3")),
    ("dra.net", {"productName": "NVIDIA H100 80GB HBM3"}, None),
    ("gpu.example.com", {"productName": "NVIDIA H100 80GB HBM3"}, None),
]


@pytest.mark.parametrize(
    ("driver", "attributes", "expected"),
    [pytest.param(d, a, e, id=f"{d} {sorted(a)}") for d, a, e in DEVICE_CASES],
)
def test_dra_devices_by_driver_and_attributes(
    driver: str, attributes: dict[str, object], expected: tuple[str, str] | None
) -> None:
    assert VendorClassifier().device(driver, attributes) == expected
    # The overrides concern extended resources and node labels only.
    overridden = VendorClassifier(model_label=SITE_LABEL, resources=["example.com/fpga"])
    assert overridden.device(driver, attributes) == expected


# --- a member mixing vendors -----------------------------------------------------------------

MIXED_NODES = [
    node("nv-1", {GPU: "8"}, labels={NV_LABEL: H100}),
    node("nv-2", {GPU: "8"}, labels={NV_LABEL: H100}),
    node("asc-1", {ASCEND: "16"}, labels={"huawei.com/npu.chip.name": "910B3"}),
    # The legacy chip-name label; cordoned: its devices are capacity only.
    node(
        "asc-2",
        {ASCEND: "8"},
        labels={"node.kubernetes.io/npu.chip.name": "910B3"},
        unschedulable=True,
    ),
    # One DCU reported unhealthy by the device plugin (capacity 8, allocatable 7).
    node(
        "hyg-1",
        {"hygon.com/dcu": "8"},
        labels={"hygon.com/dcu.name": "K100_AI"},
        allocatable={"hygon.com/dcu": "7"},
    ),
    node("cam-1", {"cambricon.com/mlu370": "4"}, labels={"Model": "MLU370-X8"}),
    # Device memory is a quantity, never devices.
    node(
        "amd-1",
        {"amd.com/gpu": "8", "amd.com/gpu-memory": "1536"},
        labels={"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"},
    ),
    node("mystery", {ASCEND: "2"}),
    node("cpu-1", {}),
]
MIXED_PODS = [
    pod("nv-1", {GPU: "3", "cpu": "8"}),
    pod("nv-2", {GPU: "8"}),
    pod("asc-1", {ASCEND: "4"}),
]


def _entry(
    model: str,
    vendor: str,
    resource: str,
    figures: tuple[int, int, int, int, int, int],
    free: dict[str, int],
    *,
    identified: bool = True,
) -> AcceleratorInventory:
    nodes, capacity, allocatable, allocated, available, unhealthy = figures
    return AcceleratorInventory(
        model,
        resource,
        nodes=nodes,
        capacity=capacity,
        allocatable=allocatable,
        allocated=allocated,
        available=available,
        vendor=vendor,
        resource_names=(resource,),
        unhealthy=unhealthy,
        slots=free,
        identified=identified,
    )


# (nodes, capacity, allocatable, allocated, available, unhealthy), counted by hand.
MIXED_EXPECTED = (
    # asc-1: 16, 4 taken, 12 free; asc-2 cordoned.
    _entry("910B3", "Huawei", ASCEND, (2, 24, 16, 4, 12, 0), slots(12, 6, 3, 1)),
    _entry("AMD_Instinct_MI300X_OAM", "AMD", "amd.com/gpu", (1, 8, 8, 0, 8, 0), slots(8, 4, 2, 1)),
    _entry("K100_AI", "Hygon", "hygon.com/dcu", (1, 8, 7, 0, 7, 1), slots(7, 3, 1, 0)),
    _entry("MLU370-X8", "Cambricon", "cambricon.com/mlu370", (1, 4, 4, 0, 4, 0), slots(4, 2, 1, 0)),
    # nv-1: 5 free; nv-2: 0 free.
    _entry(H100, "NVIDIA", GPU, (2, 16, 16, 11, 5, 0), slots(5, 2, 1, 0)),
    _entry(
        "unknown-huawei", "Huawei", ASCEND, (1, 2, 2, 0, 2, 0), slots(2, 1, 0, 0), identified=False
    ),
)


def test_the_vendor_table_counts_a_mixed_member_per_model_and_node() -> None:
    summary = summarize(MIXED_NODES, MIXED_PODS)
    assert summary.accelerators == MIXED_EXPECTED
    assert "amd.com/gpu-memory" not in {r for a in summary.accelerators for r in a.resource_names}


def test_the_old_crd_defaults_count_a_mixed_member_the_same() -> None:
    summary = summarize(MIXED_NODES, MIXED_PODS, model_label=NV_LABEL, resources=[GPU])
    assert summary.accelerators == MIXED_EXPECTED


def test_accelerator_resources_count_only_the_resources_named() -> None:
    summary = summarize(MIXED_NODES, MIXED_PODS, resources=[ASCEND])
    assert summary.accelerators == (MIXED_EXPECTED[0], MIXED_EXPECTED[-1])


def test_a_model_label_override_on_a_member() -> None:
    nodes = [
        node("n1", {GPU: "4"}, labels={SITE_LABEL: "H800", NV_LABEL: H100}),
        node("n2", {GPU: "4"}, labels={NV_LABEL: H100}),
        node("n3", {"amd.com/gpu": "2"}, labels={SITE_LABEL: "MI308X"}),
        node("n4", {"example.com/fpga": "2", GPU: "1"}, labels={SITE_LABEL: "VU19P"}),
    ]
    summary = summarize(nodes, model_label=SITE_LABEL)
    assert [(a.model, a.vendor, a.nodes, a.capacity) for a in summary.accelerators] == [
        ("H800", "NVIDIA", 1, 4),
        ("MI308X", "AMD", 1, 2),
        (H100, "NVIDIA", 1, 4),
        # The site label names the node's only whole GPU too.
        ("VU19P", "NVIDIA", 1, 1),
    ]
    only_fpga = summarize(nodes, model_label=SITE_LABEL, resources=["example.com/fpga"])
    assert [(a.model, a.vendor, a.capacity) for a in only_fpga.accelerators] == [
        ("VU19P", "example.com", 2)
    ]


# --- devices of unknown model: counted, flagged, never dropped ---------------------------------


def member() -> ComputeProvider:
    return ComputeProvider.model_validate(
        {
            "metadata": {"name": "mixed", "generation": 1},
            "spec": {
                "region": "east",
                "source": {"kubernetes": {"kubeconfigSecretRef": {"name": "mixed"}}},
            },
        }
    )


def test_unknown_models_are_counted_per_vendor_and_flagged() -> None:
    nodes = [
        node("a", {GPU: "4"}),
        node("b", {GPU: "2"}, labels={"nvidia.com/gpu.count": "2"}),
        node("c", {"amd.com/gpu": "8"}, labels={NV_LABEL: "AMD_Instinct_MI300X_OAM"}),
        node("d", {"example.com/fpga": "3"}),
    ]
    summary = summarize(
        nodes, [pod("a", {GPU: "1"})], resources=[GPU, "amd.com/gpu", "example.com/fpga"]
    )
    assert [
        (a.model, a.vendor, a.nodes, a.capacity, a.allocated, a.available, a.identified)
        for a in summary.accelerators
    ] == [
        ("unknown-amd", "AMD", 1, 8, 0, 8, False),
        ("unknown-example-com", "example.com", 1, 3, 0, 3, False),
        ("unknown-nvidia", "NVIDIA", 2, 6, 1, 5, False),
    ]

    view = plan_provider(
        member(),
        collection=Collection(inventory=summary, succeeded_at=T0, attempted_at=T0, generation=1),
        claim=None,
        now=T0,
    )
    status = view.status.to_wire()
    assert [(a["model"], a["count"], a.get("modelUnknown")) for a in status["accelerators"]] == [
        ("unknown-amd", 8, True),
        ("unknown-example-com", 3, True),
        ("unknown-nvidia", 6, True),
    ]
    assert status["acceleratorCount"] == 17
    # Counted, but their worth is not known: none of them adds to computePower.
    assert "computePower" not in status
    assert status["computePowerExcludedDevices"] == 17
    collected = find_condition(view.status.conditions, "Collected")
    assert collected is not None
    assert (collected.status, collected.reason) == ("True", Reason.COLLECTED)
    assert collected.message == (
        "member cluster collected; 17 devices of unknown model "
        "(unknown-amd, unknown-example-com, unknown-nvidia)"
    )


def test_identified_models_need_no_note() -> None:
    summary = summarize([node("a", {GPU: "4"}, labels={NV_LABEL: H100})])
    view = plan_provider(
        member(),
        collection=Collection(inventory=summary, succeeded_at=T0, attempted_at=T0, generation=1),
        claim=None,
        now=T0,
    )
    collected = find_condition(view.status.conditions, "Collected")
    assert collected is not None and collected.message == "member cluster collected"
    assert [a.get("modelUnknown") for a in view.status.to_wire()["accelerators"]] == [None]
