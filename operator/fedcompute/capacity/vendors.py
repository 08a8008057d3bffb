"""Accelerator vendors: the resource names, node labels and DRA drivers that identify them.

A member cluster tells what accelerators a node has in three ways, none of them shared
across vendors: the extended resources a device plugin advertises (``nvidia.com/gpu``,
``huawei.com/Ascend910``), the node labels a feature-discovery tool sets to name the model
(``nvidia.com/gpu.product``), and, with Dynamic Resource Allocation, the ResourceSlices of a
DRA driver whose devices carry the model as an attribute (``productName``). This table maps
all three back to a vendor, so inventory code can count devices and name models without
knowing any vendor by heart.

Every entry names the project and file it was read from. Resource names, label keys and
attribute names are exactly as those projects write them; nothing is guessed. Where a
vendor's tools set no model label or ship no DRA driver, the tuple is empty, and the
provider's ``acceleratorModelLabel`` is the way to name a label the site sets itself.

Three kinds of resource name are told apart:

- a device: one unit is one physical accelerator (``nvidia.com/gpu``, ``amd.com/gpu``);
- a partition or share: one unit is a part of a device or a time-shared slot on it (an
  NVIDIA MIG instance, an AMD compute partition, an Ascend vNPU, a renamed time-slicing
  replica); :func:`is_partition` says which, and :func:`model_label_for` names such units
  after their parent with the partition appended, so that a whole device's datasheet
  figures are never credited to each of its parts;
- a quantity (device memory in MiB, core percentages such as ``kunlunxin.com/vxpu-memory``
  or ``huawei.com/npu-core``): not a count of devices at all. :func:`vendor_of_resource`
  does not recognise these, so they are never counted as accelerators.

Some plugin modes put partitions under a device's name (NVIDIA's MIG ``single`` strategy,
AMD's ``single`` naming with partitioned GPUs, NVIDIA time-slicing without renaming). The
resource name cannot tell; the model label does (``...-MIG-1g.10gb``, ``...-SHARED``), and
such models resolve to no catalog entry, so their figures stay unknown rather than wrong.

Pure data and string functions: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

UNKNOWN_MODEL: Final = "unknown"
"""The model name used when a node's labels name none."""

LABEL_VALUE_MAX: Final = 63


@dataclass(frozen=True)
class Vendor:
    """One accelerator vendor and the names its Kubernetes integrations use."""

    name: str
    """Display name, also :attr:`fedcompute.capacity.catalog.ModelSpec.vendor`."""
    resources: tuple[str, ...]
    """Exact extended resource names its device plugins advertise."""
    resource_prefixes: tuple[str, ...]
    """Prefixes of resource names built at run time (``nvidia.com/mig-``)."""
    model_labels: tuple[str, ...]
    """Node label keys whose value names the model, preferred first."""
    dra_drivers: tuple[str, ...]
    """DRA driver names (ResourceSlice ``spec.driver``)."""
    dra_model_attributes: tuple[str, ...]
    """Device attributes of those drivers that name the model, preferred first."""


NVIDIA: Final = Vendor(
    name="NVIDIA",
    # NVIDIA/k8s-device-plugin: nvidia.com/gpu; with time-slicing or MPS and
    # renameByDefault the replicas are advertised as <resource>.shared (README.md,
    # "Shared Access to GPUs"). MIG "mixed" strategy: nvidia.com/mig-<profile>
    # (NVIDIA/gpu-feature-discovery internal/lm/mig-strategy.go builds
    # "nvidia.com/mig-" + profile).
    resources=("nvidia.com/gpu", "nvidia.com/gpu.shared"),
    resource_prefixes=("nvidia.com/mig-",),
    # NVIDIA/gpu-feature-discovery internal/lm/resource.go: <resource>.product holds the
    # NVML device name with spaces replaced by '-' (e.g. NVIDIA-A100-SXM4-40GB), with
    # "-MIG-<profile>" for MIG devices and "-SHARED" for non-renamed replicas. The
    # per-resource keys (nvidia.com/mig-1g.10gb.product) are handled by model_label_for.
    # GKE sets cloud.google.com/gke-accelerator on its GPU node pools (lowercase names
    # such as nvidia-h100-80gb), used only when GPU feature discovery is not deployed.
    model_labels=("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator"),
    # kubernetes-sigs/dra-driver-nvidia-gpu (formerly NVIDIA/k8s-dra-driver-gpu)
    # cmd/gpu-kubelet-plugin/deviceinfo.go: driver gpu.nvidia.com, attribute productName
    # (the NVML name, e.g. "NVIDIA A100-SXM4-40GB"); MIG devices carry the parent's
    # productName and type "mig".
    dra_drivers=("gpu.nvidia.com",),
    dra_model_attributes=("productName",),
)

HUAWEI: Final = Vendor(
    name="Huawei",
    # Ascend/mind-cluster component/ascend-common/api/default_name.go: huawei.com/Ascend910
    # (910, 910B and 910A3 alike), huawei.com/Ascend310, huawei.com/Ascend310P and
    # huawei.com/npu (A5 and later); vNPUs are <resource>-<template> such as
    # huawei.com/Ascend910-2c or huawei.com/Ascend310P-1c (component/ascend-device-plugin
    # pkg/common/constants.go). Project-HAMi/ascend-device-plugin advertises one resource
    # per chip kind: huawei.com/Ascend910A, Ascend910B, Ascend910B2/B3/B4 (HAMi
    # docs/ascend910b-support.md); its -memory companions are quantities.
    resources=(
        "huawei.com/Ascend910",
        "huawei.com/Ascend310",
        "huawei.com/Ascend310P",
        "huawei.com/npu",
        "huawei.com/Ascend910A",
        "huawei.com/Ascend910B",
        "huawei.com/Ascend910B2",
        "huawei.com/Ascend910B3",
        "huawei.com/Ascend910B4",
    ),
    resource_prefixes=(
        "huawei.com/Ascend910-",
        "huawei.com/Ascend310P-",
        "huawei.com/Ascend310-",
    ),
    # Ascend/mind-cluster component/ascend-common/api/label/consts.go: the chip name
    # (910B3, 310P3) is huawei.com/npu.chip.name, formerly node.kubernetes.io/npu.chip.name
    # (still written alongside). accelerator=huawei-Ascend910 names only the family (910,
    # 910B and 910A3 share it), so it is the last resort.
    model_labels=(
        "huawei.com/npu.chip.name",
        "node.kubernetes.io/npu.chip.name",
        "accelerator",
    ),
    # Project-HAMi/ascend-dra-driver pkg/consts/consts.go: driver ascend.project-hami.io,
    # attributes model and productName (the chip type).
    dra_drivers=("ascend.project-hami.io",),
    dra_model_attributes=("model", "productName"),
)

HYGON: Final = Vendor(
    name="Hygon",
    # Hygon DCU Kubernetes deployment guide (developer.sourcefind.cn, standard and MIG
    # mode chapters): hygon.com/dcu for a whole card, hygon.com/dcu-share-<cu>c-<mem>g for
    # pre-created vDCUs, hygon.com/dcu-mig-<n>g-<mem>gb for MIG instances.
    resources=("hygon.com/dcu",),
    resource_prefixes=("hygon.com/dcu-share-", "hygon.com/dcu-mig-"),
    # The same guide, DCU-Label-Node chapter: hygon.com/dcu.name (e.g. K100_AI).
    model_labels=("hygon.com/dcu.name",),
    # HYGON-AI/k8s-hcu-dra-driver internal/driver/const.go and allocatable_device.go:
    # driver dra.hygon.com, attribute productName.
    dra_drivers=("dra.hygon.com",),
    dra_model_attributes=("productName",),
)

CAMBRICON: Final = Vendor(
    name="Cambricon",
    # Cambricon/cambricon-k8s-device-plugin device-plugin/pkg/mlu (const.go, server.go):
    # cambricon.com/mlu, or one resource per model (cambricon.com/mlu370) with its
    # env-share (.share) and MIM partition (.mim-<profile>) variants; dynamic-smlu's
    # vcore/vmemory are quantities.
    resources=("cambricon.com/mlu",),
    resource_prefixes=("cambricon.com/mlu",),
    # The same project, device-plugin/pkg/nodeLabel/nodelabel.go: the node label "Model"
    # (no prefix) holds the device model from cndev.
    model_labels=("Model",),
    dra_drivers=(),
    dra_model_attributes=(),
)

AMD: Final = Vendor(
    name="AMD",
    # ROCm/k8s-device-plugin (docs, resource naming strategy): amd.com/gpu; with the
    # "mixed" strategy partitioned GPUs are amd.com/<compute>_<memory> such as
    # amd.com/cpx_nps4 or amd.com/spx_nps1 (SPX: one partition, the whole GPU).
    resources=("amd.com/gpu",),
    resource_prefixes=(
        "amd.com/spx_",
        "amd.com/dpx_",
        "amd.com/tpx_",
        "amd.com/qpx_",
        "amd.com/cpx_",
    ),
    # The same project's node labeller: amd.com/gpu.product-name (e.g.
    # AMD_Instinct_MI300X_OAM) and its legacy twin beta.amd.com/gpu.product-name.
    model_labels=("amd.com/gpu.product-name", "beta.amd.com/gpu.product-name"),
    # ROCm/k8s-gpu-dra-driver (device attributes document): driver and DeviceClass
    # gpu.amd.com, attribute productName; partitions have type amdgpu-partition.
    dra_drivers=("gpu.amd.com",),
    dra_model_attributes=("productName",),
)

INTEL: Final = Vendor(
    name="Intel",
    # HabanaAI gaudi-device-plugin and Intel Gaudi's Kubernetes guide: habana.ai/gaudi.
    resources=("habana.ai/gaudi",),
    resource_prefixes=(),
    # The Gaudi device plugin sets no model label.
    model_labels=(),
    # intel/intel-resource-drivers-for-kubernetes doc/gaudi/USAGE.md: driver
    # gaudi.intel.com, attribute model (Gaudi2, Gaudi3).
    dra_drivers=("gaudi.intel.com",),
    dra_model_attributes=("model",),
)

METAX: Final = Vendor(
    name="MetaX",
    # MetaX Kubernetes component guide (developer.metax-tech.com, gpu-device):
    # metax-tech.com/gpu, metax-tech.com/vfio-gpu (a whole GPU bound to vfio-pci) and
    # metax-tech.com/sgpu (software-split GPU instances).
    resources=("metax-tech.com/gpu", "metax-tech.com/vfio-gpu", "metax-tech.com/sgpu"),
    resource_prefixes=(),
    # The MetaX GPU operator's node labels: metax-tech.com/gpu.product (e.g. MXC500).
    model_labels=("metax-tech.com/gpu.product",),
    dra_drivers=(),
    dra_model_attributes=(),
)

KUNLUNXIN: Final = Vendor(
    name="Kunlunxin",
    # Project-HAMi/HAMi Kunlunxin device documentation (P800-OAM): kunlunxin.com/xpu for
    # whole XPUs, kunlunxin.com/vxpu for virtual XPUs (vxpu-memory is a quantity). No
    # vendor-published device plugin documents other names.
    resources=("kunlunxin.com/xpu", "kunlunxin.com/vxpu"),
    resource_prefixes=(),
    # No published tool sets a model label.
    model_labels=(),
    dra_drivers=(),
    dra_model_attributes=(),
)

ENFLAME: Final = Vendor(
    name="Enflame",
    # EnflameTechnology/gcushare (config/topscloud.json, gcushare-device-plugin
    # pkg/consts/const.go): enflame.com/gcu, enflame.com/shared-gcu and
    # enflame.com/drs-gcu (DRS slices); Project-HAMi/HAMi adds enflame.com/vgcu (its
    # -percentage companion is a quantity).
    resources=(
        "enflame.com/gcu",
        "enflame.com/shared-gcu",
        "enflame.com/drs-gcu",
        "enflame.com/vgcu",
    ),
    resource_prefixes=(),
    # Enflame's GCU feature discovery: enflame.com/gcu.model (e.g. T10).
    model_labels=("enflame.com/gcu.model",),
    dra_drivers=(),
    dra_model_attributes=(),
)

VENDORS: Final[tuple[Vendor, ...]] = (
    NVIDIA,
    HUAWEI,
    HYGON,
    CAMBRICON,
    AMD,
    INTEL,
    METAX,
    KUNLUNXIN,
    ENFLAME,
)

# Resource names that are a part or a share of a device rather than a device. Exact names,
# prefixes and markers, each from the project cited on its vendor above.
_PARTITION_RESOURCES: Final = frozenset(
    {
        "metax-tech.com/sgpu",
        "kunlunxin.com/vxpu",
        "enflame.com/shared-gcu",
        "enflame.com/drs-gcu",
        "enflame.com/vgcu",
    }
)
_PARTITION_PREFIXES: Final = (
    "nvidia.com/mig-",
    "amd.com/dpx_",
    "amd.com/tpx_",
    "amd.com/qpx_",
    "amd.com/cpx_",
    "huawei.com/Ascend910-",
    "huawei.com/Ascend310P-",
    "huawei.com/Ascend310-",
    "hygon.com/dcu-share-",
    "hygon.com/dcu-mig-",
)
_PARTITION_MARKERS: Final = (".mim-",)
_PARTITION_SUFFIXES: Final = (".shared", ".share")

# A name part ending like this counts memory or compute units, not devices.
_QUANTITY_SUFFIXES: Final = ("memory", "mem", "core", "cores", "percentage")

# Vendors whose feature discovery labels each resource by its own name: <resource>.product.
_PER_RESOURCE_LABEL_SUFFIX: Final = {NVIDIA.name: ".product"}

_BY_DRIVER: Final = {driver: v for v in VENDORS for driver in v.dra_drivers}


def _is_quantity(resource: str) -> bool:
    return resource.rsplit("/", 1)[-1].lower().endswith(_QUANTITY_SUFFIXES)


def vendor_of_resource(name: str) -> Vendor | None:
    """The vendor whose devices (or parts of devices) ``name`` counts; None otherwise.

    Resources that count memory or cores (``kunlunxin.com/vxpu-memory``) are no
    accelerators and give None, so that they are never summed as devices.
    """
    if _is_quantity(name):
        return None
    for vendor in VENDORS:
        if name in vendor.resources or name.startswith(vendor.resource_prefixes):
            return vendor
    return None


def vendor_of_driver(driver: str) -> Vendor | None:
    """The vendor of a DRA driver name (a ResourceSlice's ``spec.driver``)."""
    return _BY_DRIVER.get(driver)


def is_partition(resource: str) -> bool:
    """Tell whether one unit of ``resource`` is a part or a share of a device.

    True for MIG instances, AMD compute partitions (not SPX, which is the whole GPU),
    Ascend vNPUs, Hygon vDCU and MIG instances, Cambricon MIM and shared MLUs, MetaX sGPUs,
    Kunlunxin vXPUs, Enflame shared and DRS slices, and renamed time-slicing replicas.
    """
    if vendor_of_resource(resource) is None:
        return False
    return (
        resource in _PARTITION_RESOURCES
        or resource.startswith(_PARTITION_PREFIXES)
        or any(marker in resource for marker in _PARTITION_MARKERS)
        or resource.endswith(_PARTITION_SUFFIXES)
    )


def _partition_parts(vendor: Vendor, resource: str) -> list[str]:
    """What to append to the parent's model to name one unit of a partition resource."""
    tail = resource.split("/", 1)[-1]
    if vendor is not NVIDIA:
        return [tail]
    parts = []
    if tail.startswith("mig-"):
        profile = tail.removeprefix("mig-").removesuffix(".shared")
        parts.append(f"MIG-{profile}")
    if tail.endswith(".shared"):
        parts.append("SHARED")
    return parts


def _first_label(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = labels.get(key, "").strip()
        if value:
            return value
    return None


def model_label_for(resource: str, labels: Mapping[str, str]) -> str | None:
    """The model a node's labels give for one unit of ``resource``; None when unknown.

    The resource's own label comes first where the vendor writes one (GPU feature
    discovery's ``nvidia.com/mig-1g.10gb.product`` under the MIG mixed strategy), then
    the vendor's model labels in order. A partition is named after its parent with the
    partition appended, as GPU feature discovery names MIG devices
    (``NVIDIA-A100-SXM4-40GB-MIG-1g.5gb``; ``AMD_Instinct_MI300X_OAM-cpx_nps4``), so it
    never resolves to the whole device's catalog entry. The result is
    :func:`normalize_model`'d.
    """
    vendor = vendor_of_resource(resource)
    if vendor is None:
        return None
    keys = vendor.model_labels
    suffix = _PER_RESOURCE_LABEL_SUFFIX.get(vendor.name)
    if suffix is not None:
        keys = (f"{resource}{suffix}", *keys)
    model = _first_label(labels, keys)
    if model is None:
        return None
    if is_partition(resource):
        for part in _partition_parts(vendor, resource):
            if f"-{part}".casefold() not in model.casefold():
                model = f"{model}-{part}"
    return normalize_model(model)


_NOT_LABEL_CHARS: Final = re.compile(r"[^A-Za-z0-9_.-]+")
_DASHES: Final = re.compile(r"-{2,}")
_EDGE: Final = "-_."


def normalize_model(text: str) -> str:
    """A label-value-safe spelling of a model name, the same for every way it is written.

    Spaces and other characters a label value cannot hold become ``-`` (as GPU feature
    discovery writes NVML names: ``NVIDIA H200`` -> ``NVIDIA-H200``), runs of ``-`` are
    collapsed, the ends are trimmed to alphanumerics and the result is cut to 63
    characters. Case is kept (labels are case-sensitive; lookups fold case themselves).
    Idempotent; an empty result is :data:`UNKNOWN_MODEL`.
    """
    value = _DASHES.sub("-", _NOT_LABEL_CHARS.sub("-", text.strip())).strip(_EDGE)
    value = value[:LABEL_VALUE_MAX].rstrip(_EDGE)
    return value or UNKNOWN_MODEL
