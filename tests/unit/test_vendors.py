"""The vendor table: resource names, model labels, DRA drivers, partitions and model names."""

from __future__ import annotations

import re

import pytest

from fedcompute.capacity import vendors
from fedcompute.capacity.vendors import (
    UNKNOWN_MODEL,
    VENDORS,
    is_partition,
    model_label_for,
    normalize_model,
    vendor_of_driver,
    vendor_of_resource,
)

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    ("resource", "vendor"),
    [
        ("nvidia.com/gpu", "NVIDIA"),
        ("nvidia.com/gpu.shared", "NVIDIA"),
        ("nvidia.com/mig-1g.10gb", "NVIDIA"),
        ("nvidia.com/mig-3g.40gb.shared", "NVIDIA"),
        ("huawei.com/Ascend910", "Huawei"),
        ("huawei.com/Ascend910-2c", "Huawei"),
        ("huawei.com/Ascend310P", "Huawei"),
        ("huawei.com/Ascend310P-1c", "Huawei"),
        ("huawei.com/Ascend910B3", "Huawei"),
        ("huawei.com/npu", "Huawei"),
        ("hygon.com/dcu", "Hygon"),
        ("hygon.com/dcu-share-30c-16g", "Hygon"),
        ("hygon.com/dcu-mig-2g-15gb", "Hygon"),
        ("cambricon.com/mlu", "Cambricon"),
        ("cambricon.com/mlu370", "Cambricon"),
        ("cambricon.com/mlu370.mim-2m.8gb", "Cambricon"),
        ("amd.com/gpu", "AMD"),
        ("amd.com/cpx_nps4", "AMD"),
        ("amd.com/spx_nps1", "AMD"),
        ("habana.ai/gaudi", "Intel"),
        ("metax-tech.com/gpu", "MetaX"),
        ("metax-tech.com/sgpu", "MetaX"),
        ("kunlunxin.com/xpu", "Kunlunxin"),
        ("kunlunxin.com/vxpu", "Kunlunxin"),
        ("enflame.com/gcu", "Enflame"),
        ("enflame.com/drs-gcu", "Enflame"),
    ],
)
def test_each_vendor_is_found_by_its_resources(resource: str, vendor: str) -> None:
    found = vendor_of_resource(resource)
    assert found is not None and found.name == vendor


@pytest.mark.parametrize(
    "resource",
    [
        "cpu",
        "memory",
        "pods",
        "ephemeral-storage",
        "hugepages-2Mi",
        "example.com/fpga",
        "nvidia.com/gpumem",
        "kunlunxin.com/vxpu-memory",
        "huawei.com/Ascend910B3-memory",
        "huawei.com/npu-core",
        "enflame.com/gcu-memory",
        "enflame.com/gcu-core",
        "enflame.com/vgcu-percentage",
        "cambricon.com/mlu.smlu.vmemory",
        "cambricon.com/mlu.smlu.vcore",
        "hygon.com/dcumem",
    ],
)
def test_other_resources_and_quantities_are_no_accelerators(resource: str) -> None:
    assert vendor_of_resource(resource) is None
    assert not is_partition(resource)
    assert model_label_for(resource, {"nvidia.com/gpu.product": "NVIDIA-H100"}) is None


@pytest.mark.parametrize(
    ("driver", "vendor", "attribute"),
    [
        ("gpu.nvidia.com", "NVIDIA", "productName"),
        ("gpu.amd.com", "AMD", "productName"),
        ("gaudi.intel.com", "Intel", "model"),
        ("dra.hygon.com", "Hygon", "productName"),
        ("ascend.project-hami.io", "Huawei", "model"),
    ],
)
def test_dra_drivers(driver: str, vendor: str, attribute: str) -> None:
    found = vendor_of_driver(driver)
    assert found is not None and found.name == vendor
    assert found.dra_model_attributes[0] == attribute


def test_unknown_drivers() -> None:
    assert vendor_of_driver("dra.net") is None
    assert vendor_of_driver("") is None


def test_table_is_consistent() -> None:
    names = [v.name for v in VENDORS]
    assert len(names) == len(set(names)) >= 9
    drivers = [d for v in VENDORS for d in v.dra_drivers]
    assert len(drivers) == len(set(drivers))
    for vendor in VENDORS:
        assert vendor.resources, vendor.name
        for resource in vendor.resources:
            assert vendor_of_resource(resource) is vendor, resource
        for prefix in vendor.resource_prefixes:
            assert vendor_of_resource(f"{prefix}x") is vendor, prefix


@pytest.mark.parametrize(
    ("resource", "partition"),
    [
        ("nvidia.com/gpu", False),
        ("nvidia.com/mig-1g.10gb", True),
        ("nvidia.com/mig-7g.80gb", True),
        ("nvidia.com/gpu.shared", True),
        ("amd.com/gpu", False),
        ("amd.com/spx_nps1", False),
        ("amd.com/cpx_nps4", True),
        ("amd.com/dpx_nps2", True),
        ("huawei.com/Ascend910", False),
        ("huawei.com/Ascend910-4c", True),
        ("huawei.com/Ascend310P-2c.1cpu", True),
        ("hygon.com/dcu", False),
        ("hygon.com/dcu-share-36c-16g", True),
        ("hygon.com/dcu-mig-4g-31gb", True),
        ("cambricon.com/mlu370", False),
        ("cambricon.com/mlu370.share", True),
        ("cambricon.com/mlu370.mim-2m.8gb", True),
        ("metax-tech.com/gpu", False),
        ("metax-tech.com/vfio-gpu", False),
        ("metax-tech.com/sgpu", True),
        ("kunlunxin.com/xpu", False),
        ("kunlunxin.com/vxpu", True),
        ("enflame.com/gcu", False),
        ("enflame.com/shared-gcu", True),
        ("habana.ai/gaudi", False),
    ],
)
def test_partitions(resource: str, partition: bool) -> None:
    assert is_partition(resource) is partition


# --- model labels ----------------------------------------------------------------------

A100 = "NVIDIA-A100-SXM4-40GB"


def test_nvidia_whole_gpus() -> None:
    labels = {"nvidia.com/gpu.product": A100, "nvidia.com/gpu.count": "8"}
    assert model_label_for("nvidia.com/gpu", labels) == A100


def test_nvidia_mig_single_strategy_names_the_slice_on_the_gpu_resource() -> None:
    # GPU feature discovery, mig.strategy=single: every GPU is cut into one profile and the
    # slices are advertised as nvidia.com/gpu; the product label says so.
    labels = {
        "nvidia.com/mig.strategy": "single",
        "nvidia.com/gpu.product": f"{A100}-MIG-1g.5gb",
    }
    assert model_label_for("nvidia.com/gpu", labels) == f"{A100}-MIG-1g.5gb"


def test_nvidia_mig_mixed_strategy_reads_each_profiles_own_label() -> None:
    labels = {
        "nvidia.com/mig.strategy": "mixed",
        "nvidia.com/gpu.product": A100,
        "nvidia.com/mig-1g.5gb.product": f"{A100}-MIG-1g.5gb",
        "nvidia.com/mig-3g.20gb.product": f"{A100}-MIG-3g.20gb",
    }
    assert model_label_for("nvidia.com/gpu", labels) == A100
    assert model_label_for("nvidia.com/mig-1g.5gb", labels) == f"{A100}-MIG-1g.5gb"
    assert model_label_for("nvidia.com/mig-3g.20gb", labels) == f"{A100}-MIG-3g.20gb"


def test_nvidia_mig_without_its_own_label_is_named_after_the_parent() -> None:
    labels = {"nvidia.com/gpu.product": A100}
    assert model_label_for("nvidia.com/mig-2g.10gb", labels) == f"{A100}-MIG-2g.10gb"


def test_nvidia_shared_replicas_are_never_named_as_whole_gpus() -> None:
    # renameByDefault: the replicas' own label carries the plain model name.
    labels = {"nvidia.com/gpu.shared.product": A100, "nvidia.com/gpu.product": A100}
    assert model_label_for("nvidia.com/gpu.shared", labels) == f"{A100}-SHARED"
    # Without renaming, GPU feature discovery appends -SHARED itself.
    labels = {"nvidia.com/gpu.product": f"{A100}-SHARED"}
    assert model_label_for("nvidia.com/gpu", labels) == f"{A100}-SHARED"
    labels = {"nvidia.com/mig-1g.5gb.shared.product": f"{A100}-MIG-1g.5gb"}
    assert model_label_for("nvidia.com/mig-1g.5gb.shared", labels) == f"{A100}-MIG-1g.5gb-SHARED"


def test_nvidia_falls_back_to_the_gke_label() -> None:
    labels = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert model_label_for("nvidia.com/gpu", labels) == "nvidia-h100-80gb"


def test_ascend_prefers_the_chip_name_labels() -> None:
    labels = {
        "accelerator": "huawei-Ascend910",
        "node.kubernetes.io/npu.chip.name": "910B3",
    }
    assert model_label_for("huawei.com/Ascend910", labels) == "910B3"
    labels["huawei.com/npu.chip.name"] = "910B2"
    assert model_label_for("huawei.com/Ascend910", labels) == "910B2"
    assert model_label_for("huawei.com/Ascend910", {"accelerator": "huawei-Ascend910"}) == (
        "huawei-Ascend910"
    )
    assert model_label_for("huawei.com/Ascend910-2c", labels) == "910B2-Ascend910-2c"


@pytest.mark.parametrize(
    ("resource", "labels", "model"),
    [
        ("hygon.com/dcu", {"hygon.com/dcu.name": "K100_AI"}, "K100_AI"),
        (
            "hygon.com/dcu-share-30c-16g",
            {"hygon.com/dcu.name": "K100_AI"},
            "K100_AI-dcu-share-30c-16g",
        ),
        ("cambricon.com/mlu", {"Model": "MLU370-X8"}, "MLU370-X8"),
        (
            "amd.com/gpu",
            {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"},
            "AMD_Instinct_MI300X_OAM",
        ),
        (
            "amd.com/gpu",
            {"beta.amd.com/gpu.product-name": "AMD_Instinct_MI210"},
            "AMD_Instinct_MI210",
        ),
        (
            "amd.com/cpx_nps4",
            {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"},
            "AMD_Instinct_MI300X_OAM-cpx_nps4",
        ),
        ("metax-tech.com/gpu", {"metax-tech.com/gpu.product": "MXC500"}, "MXC500"),
        ("metax-tech.com/sgpu", {"metax-tech.com/gpu.product": "MXC500"}, "MXC500-sgpu"),
        ("enflame.com/gcu", {"enflame.com/gcu.model": "S60"}, "S60"),
        ("habana.ai/gaudi", {"nvidia.com/gpu.product": A100}, None),
        ("kunlunxin.com/xpu", {}, None),
    ],
)
def test_vendor_model_labels(resource: str, labels: dict[str, str], model: str | None) -> None:
    assert model_label_for(resource, labels) == model


def test_blank_labels_name_nothing() -> None:
    assert model_label_for("nvidia.com/gpu", {}) is None
    assert model_label_for("nvidia.com/gpu", {"nvidia.com/gpu.product": "  "}) is None
    labels = {"nvidia.com/gpu.product": "", "cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert model_label_for("nvidia.com/gpu", labels) == "nvidia-l4"


def test_a_vendors_label_does_not_name_another_vendors_devices() -> None:
    labels = {"nvidia.com/gpu.product": A100}
    assert model_label_for("amd.com/gpu", labels) is None
    assert model_label_for("huawei.com/Ascend910", labels) is None


# --- normalize_model -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("NVIDIA H200", "NVIDIA-H200"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"),
        ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-80GB-HBM3"),
        ("  Tesla T4 ", "Tesla-T4"),
        ("AMD Instinct MI300X", "AMD-Instinct-MI300X"),
        ("K100_AI", "K100_AI"),
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"),
        ("a  /  b", "a-b"),
        ("Ascend 910 Pro+", "Ascend-910-Pro"),
        ("昇腾910B", "910B"),
        ("--x--", "x"),
        ("", UNKNOWN_MODEL),
        ("   ", UNKNOWN_MODEL),
        ("!!!", UNKNOWN_MODEL),
    ],
)
def test_normalize_model(text: str, normalized: str) -> None:
    assert normalize_model(text) == normalized


@pytest.mark.parametrize(
    "text",
    [
        "NVIDIA GeForce RTX 4090",
        "x" * 100,
        "a" * 62 + " b",
        "a" * 62 + "-.b",
        " leading and trailing. ",
        "mixed\tWHITE\nspace",
        "under_score.dot-dash",
        "ÄÖÜ accelerator",
        "".join(chr(c) for c in range(32, 127)),
    ],
)
def test_normalize_model_is_label_safe_idempotent_and_stable(text: str) -> None:
    once = normalize_model(text)
    assert LABEL_VALUE.match(once) and 0 < len(once) <= 63, once
    assert normalize_model(once) == once
    assert normalize_model(text) == once


def test_unknown_model_is_itself_normalized() -> None:
    assert normalize_model(vendors.UNKNOWN_MODEL) == vendors.UNKNOWN_MODEL
