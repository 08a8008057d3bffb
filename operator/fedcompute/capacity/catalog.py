"""Accelerator models and their datasheet figures: memory and peak dense TFLOPS.

A member cluster says how many devices of which model a node has; what one device is
worth comes from here. Each entry names the model as node labels spell it (GPU feature
discovery writes NVML names with '-' for spaces), lists the other spellings labels and DRA
attributes use, and gives the vendor's figures with the document they come from.

How figures are read, so that entries compare:

- TFLOPS are peak dense rates of one device: sparse ("with sparsity") figures are halved,
  as vendors define them as twice the dense rate. Where a precision has a vector and a
  matrix (tensor core) rate, the higher is taken, as the device's peak at that precision.
  int8 is in TOPS.
- Memory is the device memory of one device; a datasheet's "80GB" of GPU memory is read
  as 80 GiB, as GPU memory sizes are binary.
- A figure the vendor does not publish is left out, and the source says so; an entry
  without figures still resolves the model's name, and an AcceleratorModel object can
  supply the figures (:class:`Catalog` overrides).

Pure data: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Final

from fedcompute.api.accelerator import AcceleratorModel
from fedcompute.capacity.vendors import normalize_model

GIB: Final = Decimal(2**30)


@dataclass(frozen=True)
class ModelSpec:
    """One accelerator model: its names, per-device figures and their source."""

    name: str
    """Canonical, label-value-safe name (``NVIDIA-H100-80GB-HBM3``)."""
    vendor: str
    """The vendor, as :data:`fedcompute.capacity.vendors.VENDORS` names it."""
    aliases: tuple[str, ...]
    """Other spellings labels and DRA attributes use (``NVIDIA H100 80GB HBM3``)."""
    memory: Decimal | None
    """Device memory of one device in bytes; None when not published."""
    tflops: Mapping[str, Decimal] = field(hash=False)
    """Precision (``fp64`` ... ``int8``) -> peak dense TFLOPS (TOPS for int8) of one device."""
    source: str
    """The document the figures come from, and how they were derived."""


def model_key(model: str) -> str:
    """The form names and aliases are compared in: normalized, then case-folded."""
    return normalize_model(model).casefold()


def _spec(
    name: str,
    vendor: str,
    aliases: tuple[str, ...],
    memory_gib: int | None,
    source: str,
    **tflops: str,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        vendor=vendor,
        aliases=aliases,
        memory=None if memory_gib is None else Decimal(memory_gib) * GIB,
        tflops={precision: Decimal(value) for precision, value in tflops.items()},
        source=source,
    )


_HALVED: Final = "dense figures are the datasheet's sparsity figures halved"

# NVIDIA: names as GPU feature discovery labels them (the NVML name, spaces -> '-');
# aliases: the NVML name itself (the DRA driver's productName), names older drivers
# report, and GKE's cloud.google.com/gke-accelerator values.
_NVIDIA: Final = (
    _spec(
        "NVIDIA-H100-80GB-HBM3",
        "NVIDIA",
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb", "nvidia-h100-mega-80gb"),
        80,
        "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column; fp64 is the FP64 Tensor "
        f"Core rate; {_HALVED}",
        fp64="67",
        fp32="67",
        tf32="494.5",
        bf16="989.5",
        fp16="989.5",
        fp8="1979",
        int8="1979",
    ),
    _spec(
        "NVIDIA-H100-PCIe",
        "NVIDIA",
        ("NVIDIA H100 PCIe",),
        80,
        "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe column; fp64 is the FP64 Tensor "
        f"Core rate; {_HALVED}",
        fp64="51",
        fp32="51",
        tf32="378",
        bf16="756.5",
        fp16="756.5",
        fp8="1513",
        int8="1513",
    ),
    _spec(
        "NVIDIA-H100-NVL",
        "NVIDIA",
        ("NVIDIA H100 NVL",),
        94,
        "NVIDIA H100 Tensor Core GPU datasheet, H100 NVL column (one GPU); fp64 is the FP64 "
        f"Tensor Core rate; {_HALVED}",
        fp64="60",
        fp32="60",
        tf32="417.5",
        bf16="835.5",
        fp16="835.5",
        fp8="1670.5",
        int8="1670.5",
    ),
    _spec(
        "NVIDIA-H200",
        "NVIDIA",
        ("NVIDIA H200", "nvidia-h200-141gb"),
        141,
        "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column; fp64 is the FP64 Tensor "
        f"Core rate; {_HALVED}",
        fp64="67",
        fp32="67",
        tf32="494.5",
        bf16="989.5",
        fp16="989.5",
        fp8="1979",
        int8="1979",
    ),
    _spec(
        "NVIDIA-H200-NVL",
        "NVIDIA",
        ("NVIDIA H200 NVL",),
        141,
        "NVIDIA H200 Tensor Core GPU datasheet, H200 NVL column; fp64 is the FP64 Tensor "
        f"Core rate; {_HALVED}",
        fp64="60",
        fp32="60",
        tf32="417.5",
        bf16="835.5",
        fp16="835.5",
        fp8="1670.5",
        int8="1670.5",
    ),
    _spec(
        "NVIDIA-H800",
        "NVIDIA",
        ("NVIDIA H800",),
        80,
        "NVIDIA H800 Tensor Core GPU datasheet, H800 SXM5 column (FP64 limited to 1 "
        f"TFLOPS); {_HALVED}",
        fp64="1",
        fp32="67",
        tf32="494.5",
        bf16="989.5",
        fp16="989.5",
        fp8="1979",
        int8="1979",
    ),
    _spec(
        "NVIDIA-H20",
        "NVIDIA",
        ("NVIDIA H20",),
        96,
        "NVIDIA H20 product brief as distributed to NVIDIA's partners (dense figures); "
        "NVIDIA publishes no H20 datasheet on its own site",
        fp64="1",
        fp32="44",
        tf32="74",
        bf16="148",
        fp16="148",
        fp8="296",
        int8="296",
    ),
    _spec(
        "NVIDIA-A100-SXM4-80GB",
        "NVIDIA",
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB", "nvidia-a100-80gb"),
        80,
        "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM column; fp64 is the FP64 "
        "Tensor Core rate; dense figures (without sparsity)",
        fp64="19.5",
        fp32="19.5",
        tf32="156",
        bf16="312",
        fp16="312",
        int8="624",
    ),
    _spec(
        "NVIDIA-A100-SXM4-40GB",
        "NVIDIA",
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB", "nvidia-tesla-a100"),
        40,
        "NVIDIA A100 Tensor Core GPU datasheet, A100 40GB SXM column; fp64 is the FP64 "
        "Tensor Core rate; dense figures (without sparsity)",
        fp64="19.5",
        fp32="19.5",
        tf32="156",
        bf16="312",
        fp16="312",
        int8="624",
    ),
    _spec(
        "NVIDIA-A100-80GB-PCIe",
        "NVIDIA",
        ("NVIDIA A100 80GB PCIe",),
        80,
        "NVIDIA A100 Tensor Core GPU datasheet, A100 80GB PCIe column; fp64 is the FP64 "
        "Tensor Core rate; dense figures (without sparsity)",
        fp64="19.5",
        fp32="19.5",
        tf32="156",
        bf16="312",
        fp16="312",
        int8="624",
    ),
    _spec(
        "NVIDIA-A100-PCIE-40GB",
        "NVIDIA",
        ("NVIDIA A100-PCIE-40GB", "A100-PCIE-40GB"),
        40,
        "NVIDIA A100 Tensor Core GPU datasheet, A100 40GB PCIe column; fp64 is the FP64 "
        "Tensor Core rate; dense figures (without sparsity)",
        fp64="19.5",
        fp32="19.5",
        tf32="156",
        bf16="312",
        fp16="312",
        int8="624",
    ),
    _spec(
        "NVIDIA-A800-SXM4-80GB",
        "NVIDIA",
        ("NVIDIA A800-SXM4-80GB",),
        80,
        "NVIDIA A800 Tensor Core GPU datasheet, A800 80GB SXM column; fp64 is the FP64 "
        "Tensor Core rate; dense figures (without sparsity)",
        fp64="19.5",
        fp32="19.5",
        tf32="156",
        bf16="312",
        fp16="312",
        int8="624",
    ),
    _spec(
        "NVIDIA-A800-80GB-PCIe",
        "NVIDIA",
        ("NVIDIA A800 80GB PCIe",),
        80,
        "NVIDIA A800 Tensor Core GPU datasheet, A800 80GB PCIe column; fp64 is the FP64 "
        "Tensor Core rate; dense figures (without sparsity)",
        fp64="19.5",
        fp32="19.5",
        tf32="156",
        bf16="312",
        fp16="312",
        int8="624",
    ),
    _spec(
        "NVIDIA-L40S",
        "NVIDIA",
        ("NVIDIA L40S",),
        48,
        "NVIDIA L40S GPU datasheet; dense figures (the datasheet gives both); FP64 is not "
        "published",
        fp32="91.6",
        tf32="183",
        bf16="362.05",
        fp16="362.05",
        fp8="733",
        int8="733",
    ),
    _spec(
        "NVIDIA-L40",
        "NVIDIA",
        ("NVIDIA L40",),
        48,
        "NVIDIA L40 GPU datasheet; dense figures (the datasheet gives both); FP64 is not published",
        fp32="90.5",
        tf32="90.5",
        bf16="181.05",
        fp16="181.05",
        fp8="362",
        int8="362",
    ),
    _spec(
        "NVIDIA-L4",
        "NVIDIA",
        ("NVIDIA L4", "nvidia-l4"),
        24,
        f"NVIDIA L4 Tensor Core GPU datasheet; {_HALVED}; FP64 is not published",
        fp32="30.3",
        tf32="60",
        bf16="121",
        fp16="121",
        fp8="242.5",
        int8="242.5",
    ),
    _spec(
        "NVIDIA-L20",
        "NVIDIA",
        ("NVIDIA L20",),
        None,
        "no public NVIDIA datasheet for the L20 could be found; memory and TFLOPS are left "
        "out (declare them with an AcceleratorModel)",
    ),
    _spec(
        "NVIDIA-A10",
        "NVIDIA",
        ("NVIDIA A10",),
        24,
        "NVIDIA A10 Tensor Core GPU datasheet; dense figures (the datasheet gives both); "
        "FP64 is not published",
        fp32="31.2",
        tf32="62.5",
        bf16="125",
        fp16="125",
        int8="250",
    ),
    _spec(
        "NVIDIA-A30",
        "NVIDIA",
        ("NVIDIA A30",),
        24,
        "NVIDIA A30 Tensor Core GPU datasheet; fp64 is the FP64 Tensor Core rate; dense "
        "figures (the datasheet gives both)",
        fp64="10.3",
        fp32="10.3",
        tf32="82",
        bf16="165",
        fp16="165",
        int8="330",
    ),
    _spec(
        "NVIDIA-A40",
        "NVIDIA",
        ("NVIDIA A40",),
        48,
        "NVIDIA A40 GPU datasheet; dense figures (the datasheet gives both); FP64 is not published",
        fp32="37.4",
        tf32="74.8",
        bf16="149.7",
        fp16="149.7",
        int8="299.3",
    ),
    _spec(
        "Tesla-V100-SXM2-32GB",
        "NVIDIA",
        ("Tesla V100-SXM2-32GB",),
        32,
        "NVIDIA Tesla V100 GPU datasheet, V100 SXM2 column; fp16 is the Tensor Performance "
        "(mixed precision) rate",
        fp64="7.8",
        fp32="15.7",
        fp16="125",
    ),
    _spec(
        "Tesla-V100-SXM2-16GB",
        "NVIDIA",
        ("Tesla V100-SXM2-16GB", "nvidia-tesla-v100"),
        16,
        "NVIDIA Tesla V100 GPU datasheet, V100 SXM2 column; fp16 is the Tensor Performance "
        "(mixed precision) rate",
        fp64="7.8",
        fp32="15.7",
        fp16="125",
    ),
    _spec(
        "Tesla-V100-PCIE-32GB",
        "NVIDIA",
        ("Tesla V100-PCIE-32GB",),
        32,
        "NVIDIA Tesla V100 GPU datasheet, V100 PCIe column; fp16 is the Tensor Performance "
        "(mixed precision) rate",
        fp64="7",
        fp32="14",
        fp16="112",
    ),
    _spec(
        "Tesla-V100-PCIE-16GB",
        "NVIDIA",
        ("Tesla V100-PCIE-16GB",),
        16,
        "NVIDIA Tesla V100 GPU datasheet, V100 PCIe column; fp16 is the Tensor Performance "
        "(mixed precision) rate",
        fp64="7",
        fp32="14",
        fp16="112",
    ),
    _spec(
        "Tesla-T4",
        "NVIDIA",
        ("Tesla T4", "nvidia-tesla-t4"),
        16,
        "NVIDIA T4 Tensor Core GPU datasheet; fp16 is the mixed precision (FP16/FP32) rate",
        fp32="8.1",
        fp16="65",
        int8="130",
    ),
    _spec(
        "NVIDIA-GeForce-RTX-4090",
        "NVIDIA",
        ("NVIDIA GeForce RTX 4090",),
        24,
        "NVIDIA Ada Lovelace GPU architecture whitepaper, GeForce RTX 4090 column; fp16 and "
        "fp8 are the FP16-accumulate rates, bf16 the FP32-accumulate rate; dense figures",
        fp32="82.6",
        tf32="82.6",
        bf16="165.2",
        fp16="330.3",
        fp8="660.6",
        int8="660.6",
    ),
    _spec(
        "NVIDIA-GeForce-RTX-3090",
        "NVIDIA",
        ("NVIDIA GeForce RTX 3090",),
        24,
        "NVIDIA Ampere GA102 GPU architecture whitepaper, GeForce RTX 3090 column; fp16 is "
        "the FP16-accumulate rate, bf16 the FP32-accumulate rate; dense figures",
        fp32="35.6",
        tf32="35.6",
        bf16="71",
        fp16="142",
        int8="284",
    ),
)

# AMD: aliases include the node labeller's amd.com/gpu.product-name values where known.
_AMD: Final = (
    _spec(
        "AMD-Instinct-MI300X",
        "AMD",
        ("AMD Instinct MI300X", "AMD_Instinct_MI300X_OAM", "MI300X"),
        192,
        "AMD Instinct MI300X accelerator data sheet; fp64 and fp32 are the matrix rates; "
        "dense figures (the data sheet gives both)",
        fp64="163.4",
        fp32="163.4",
        tf32="653.7",
        bf16="1307.4",
        fp16="1307.4",
        fp8="2614.9",
        int8="2614.9",
    ),
    _spec(
        "AMD-Instinct-MI325X",
        "AMD",
        ("AMD Instinct MI325X", "AMD_Instinct_MI325_OAM", "MI325X"),
        256,
        "AMD Instinct MI325X accelerator data sheet; fp64 and fp32 are the matrix rates; "
        "dense figures (the data sheet gives both)",
        fp64="163.4",
        fp32="163.4",
        tf32="653.7",
        bf16="1307.4",
        fp16="1307.4",
        fp8="2614.9",
        int8="2614.9",
    ),
    _spec(
        "AMD-Instinct-MI250X",
        "AMD",
        ("AMD Instinct MI250X", "MI250X"),
        128,
        "AMD Instinct MI250X accelerator data sheet; fp64 and fp32 are the matrix (packed) rates",
        fp64="95.7",
        fp32="95.7",
        bf16="383",
        fp16="383",
        int8="383",
    ),
    _spec(
        "AMD-Instinct-MI250",
        "AMD",
        ("AMD Instinct MI250", "MI250"),
        128,
        "AMD Instinct MI250 accelerator data sheet; fp64 and fp32 are the matrix (packed) rates",
        fp64="90.5",
        fp32="90.5",
        bf16="362.1",
        fp16="362.1",
        int8="362.1",
    ),
    _spec(
        "AMD-Instinct-MI210",
        "AMD",
        ("AMD Instinct MI210", "AMD_Instinct_MI210", "MI210"),
        64,
        "AMD Instinct MI210 accelerator data sheet; fp64 and fp32 are the matrix (packed) rates",
        fp64="45.3",
        fp32="45.3",
        bf16="181",
        fp16="181",
        int8="181",
    ),
    _spec(
        "AMD-Instinct-MI100",
        "AMD",
        ("AMD Instinct MI100", "MI100"),
        32,
        "AMD Instinct MI100 accelerator data sheet; fp32 is the matrix rate",
        fp64="11.5",
        fp32="46.1",
        bf16="92.3",
        fp16="184.6",
        int8="184.6",
    ),
)

# Intel Gaudi: the DRA driver's model attribute is Gaudi2 / Gaudi3.
_INTEL: Final = (
    _spec(
        "Intel-Gaudi2",
        "Intel",
        ("Gaudi2", "Gaudi 2", "Intel Gaudi 2"),
        96,
        "Intel Gaudi 2 AI accelerator white paper; matrix engine (MME) rates; other "
        "precisions are not published per device",
        bf16="432",
        fp8="865",
    ),
    _spec(
        "Intel-Gaudi3",
        "Intel",
        ("Gaudi3", "Gaudi 3", "Intel Gaudi 3"),
        128,
        "Intel Gaudi 3 AI accelerator white paper, OAM (HL-325L); matrix engine (MME) rates",
        bf16="1835",
        fp8="1835",
    ),
)

# Huawei Ascend: names follow the chip names huawei.com/npu.chip.name carries (910B3,
# 310P3), with "Ascend" in front as Huawei writes them.
_NO_910B_FIGURES: Final = (
    "Huawei publishes no per-variant datasheet for the Ascend 910B variants (the Atlas "
    "A2 product pages state per-server figures only); memory and TFLOPS are left out "
    "(declare them with an AcceleratorModel)"
)
_HUAWEI: Final = (
    _spec(
        "Ascend910",
        "Huawei",
        ("910A", "Ascend910A", "Ascend 910"),
        32,
        "Huawei press release 'Huawei launches Ascend 910' (23 August 2019) for TFLOPS; "
        "32 GB HBM2 per the Atlas 300T training card (model 9000) specifications",
        fp16="256",
        int8="512",
    ),
    _spec("Ascend910B1", "Huawei", ("910B1",), None, _NO_910B_FIGURES),
    _spec("Ascend910B2", "Huawei", ("910B2",), None, _NO_910B_FIGURES),
    _spec("Ascend910B3", "Huawei", ("910B3",), None, _NO_910B_FIGURES),
    _spec("Ascend910B4", "Huawei", ("910B4",), None, _NO_910B_FIGURES),
    _spec(
        "Ascend310P3",
        "Huawei",
        ("310P3",),
        None,
        "Huawei Atlas 300I Pro inference card specifications (one Ascend 310P per card); "
        "memory is left out as it depends on the card (24 GB on Atlas 300I Pro)",
        fp16="70",
        int8="140",
    ),
)

_NO_FIGURES: Final = (
    "no vendor datasheet with per-device figures could be found; memory and TFLOPS are "
    "left out (declare them with an AcceleratorModel)"
)
_OTHERS: Final = (
    _spec(
        "Cambricon-MLU370-X8",
        "Cambricon",
        ("MLU370-X8", "Cambricon MLU370-X8"),
        48,
        "Cambricon MLU370-X8 launch announcement (21 March 2022), figures per card (two "
        "MLU370 chips)",
        fp32="32",
        bf16="96",
        fp16="96",
        int8="256",
    ),
    _spec("Cambricon-MLU590", "Cambricon", ("MLU590",), None, _NO_FIGURES),
    _spec("Hygon-DCU-Z100", "Hygon", ("Z100",), None, _NO_FIGURES),
    _spec("Hygon-DCU-K100", "Hygon", ("K100",), None, _NO_FIGURES),
    _spec("Hygon-DCU-K100-AI", "Hygon", ("K100_AI", "K100-AI"), None, _NO_FIGURES),
    _spec("MetaX-C500", "MetaX", ("MXC500", "C500"), None, _NO_FIGURES),
    _spec("MetaX-C550", "MetaX", ("MXC550", "C550"), None, _NO_FIGURES),
    _spec("Kunlunxin-P800", "Kunlunxin", ("P800",), None, _NO_FIGURES),
    _spec("Kunlunxin-R200", "Kunlunxin", ("R200",), None, _NO_FIGURES),
    _spec("Enflame-S60", "Enflame", ("S60",), None, _NO_FIGURES),
    _spec("Enflame-i20", "Enflame", ("i20",), None, _NO_FIGURES),
)

BUILTIN: Final[tuple[ModelSpec, ...]] = (*_NVIDIA, *_AMD, *_INTEL, *_HUAWEI, *_OTHERS)


class Catalog:
    """The built-in models with the admin's AcceleratorModels over them.

    Names and aliases are compared by :func:`model_key`. An override takes the place of
    every entry that shares its name or one of its aliases, and answers to all their names
    too, so overriding a model by any one spelling overrides it for all. The entry in force
    keeps the displaced entry's name (as node labels spell it, so that reports name the
    model the same with or without an override) and lists the override's own name among
    its aliases; vendor, figures and source are the override's. Overrides apply in the
    order given; among them a later one wins a shared name.
    """

    def __init__(self, overrides: Iterable[ModelSpec] = ()) -> None:
        self._index: dict[str, ModelSpec] = {}
        self._entries: list[ModelSpec] = []
        for spec in BUILTIN:
            self._add(spec, inherited=())
        for override in overrides:
            spec = override
            displaced = [e for e in (self._index.get(k) for k in _keys(spec)) if e is not None]
            gone = {id(e) for e in displaced}
            inherited = tuple(k for k, e in self._index.items() if id(e) in gone)
            self._entries = [e for e in self._entries if id(e) not in gone]
            if displaced:
                name = displaced[0].name
                spellings = {model_key(a): a for a in (override.name, *override.aliases)}
                spellings.pop(model_key(name), None)
                spec = replace(override, name=name, aliases=tuple(spellings.values()))
            self._add(spec, inherited=inherited)

    def _add(self, spec: ModelSpec, *, inherited: tuple[str, ...]) -> None:
        self._entries.append(spec)
        for key in (*inherited, *_keys(spec)):
            self._index[key] = spec

    def lookup(self, model: str) -> ModelSpec | None:
        """The entry named or aliased ``model`` in any spelling; None when unknown."""
        return self._index.get(model_key(model))

    def canonical(self, model: str) -> str:
        """The catalog's name for ``model``; ``model`` itself when it is not known."""
        spec = self.lookup(model)
        return spec.name if spec is not None else model

    def tflops(self, model: str) -> Mapping[str, Decimal]:
        """Peak dense TFLOPS per precision of one device of ``model``; empty when unknown."""
        spec = self.lookup(model)
        return dict(spec.tflops) if spec is not None else {}

    def __iter__(self) -> Iterator[ModelSpec]:
        """Every entry in force: overrides and the built-in entries they left."""
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def _keys(spec: ModelSpec) -> tuple[str, ...]:
    return tuple(dict.fromkeys(model_key(n) for n in (spec.name, *spec.aliases)))


def from_object(obj: AcceleratorModel) -> ModelSpec:
    """An AcceleratorModel object as a catalog entry, named after the object."""
    spec = obj.spec
    tflops = spec.tflops.as_dict() if spec.tflops is not None else {}
    return ModelSpec(
        name=obj.name,
        vendor=spec.vendor,
        aliases=tuple(spec.aliases or ()),
        memory=spec.memory,
        tflops=tflops,
        source=spec.source,
    )
