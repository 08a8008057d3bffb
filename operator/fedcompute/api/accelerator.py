"""AcceleratorModel: datasheet figures for one accelerator model, declared by the admin.

fedcompute ships a catalog of accelerator models with their memory and peak TFLOPS
(:mod:`fedcompute.capacity.catalog`). An AcceleratorModel adds a model the catalog lacks or
overrides one it has, so that a site's figures (a clock-limited variant, a model released
after this version) count without a new release. Lookups compare names and aliases after
:func:`fedcompute.capacity.vendors.normalize_model` and case-folding, so the object
``nvidia-h100-80gb-hbm3`` overrides the built-in ``NVIDIA-H100-80GB-HBM3``.

The kind has no status: the operator only reads it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final

from pydantic import ConfigDict, Field

from fedcompute.api import API_VERSION, CATEGORY
from fedcompute.api.common import (
    ObjectMeta,
    SpecMemoryQuantity,
    SpecTflopsByPrecision,
    WireModel,
    rule,
)

KIND: Final = "AcceleratorModel"
PLURAL: Final = "acceleratormodels"
SINGULAR: Final = "acceleratormodel"
SHORT_NAMES: Final = ("accmodel",)

# The object's name is a model name, which the operator writes as a node label value.
NAME_MAX_LENGTH: Final = 63
ALIASES_MAX: Final = 16
ALIAS_MAX_LENGTH: Final = 128
VENDOR_MAX_LENGTH: Final = 64
SOURCE_MAX_LENGTH: Final = 1024
# Printable ASCII: node labels, NVML names and DRA attributes spell models with it, and a
# control character in a name would only hide in reports.
PRINTABLE_PATTERN: Final = r"^[ -~]+$"

Alias = Annotated[str, Field(min_length=1, max_length=ALIAS_MAX_LENGTH, pattern=PRINTABLE_PATTERN)]


class AcceleratorModelSpec(WireModel):
    """The figures of one accelerator model and where they come from."""

    vendor: str = Field(
        min_length=1,
        max_length=VENDOR_MAX_LENGTH,
        pattern=PRINTABLE_PATTERN,
        description="Vendor of the model, as the catalog names vendors (NVIDIA, Huawei, "
        "Hygon, Cambricon, AMD, Intel, MetaX, Kunlunxin, Enflame) or any other.",
    )
    aliases: list[Alias] | None = Field(
        default=None,
        max_length=ALIASES_MAX,
        description="Other spellings of the model as node labels and DRA device attributes "
        'write it (e.g. "NVIDIA H100 80GB HBM3"). Compared, like the object\'s name, after '
        "spaces and other characters a label value cannot hold become '-', and without "
        "regard to case.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    memory: SpecMemoryQuantity | None = Field(
        default=None, description="Device memory of one device, in bytes (e.g. 80Gi)."
    )
    tflops: SpecTflopsByPrecision | None = Field(
        default=None,
        description="Peak dense (not sparse) TFLOPS of one device per precision (TOPS for "
        "int8), from the vendor's datasheet.",
    )
    source: str = Field(
        min_length=1,
        max_length=SOURCE_MAX_LENGTH,
        description="Where the figures come from: the datasheet, its version or date, and "
        "how figures were derived (e.g. sparse figures halved).",
    )


class AcceleratorModel(WireModel):
    """An accelerator model's datasheet figures, adding to or overriding the catalog."""

    model_config = ConfigDict(extra="ignore")

    root_rules: ClassVar[list[dict[str, str]]] = [
        rule(
            f"self.metadata.name.size() <= {NAME_MAX_LENGTH}",
            f"metadata.name must be at most {NAME_MAX_LENGTH} characters (it is a model "
            "name, which becomes a node label value)",
            field_path=".metadata.name",
        )
    ]
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        {"name": "Vendor", "type": "string", "jsonPath": ".spec.vendor"},
        {
            "name": "Memory",
            "type": "string",
            "jsonPath": ".spec.memory",
            "description": "Device memory of one device.",
        },
        {
            "name": "FP16",
            "type": "string",
            "jsonPath": ".spec.tflops.fp16",
            "description": "Peak dense FP16 TFLOPS of one device.",
        },
        {
            "name": "BF16",
            "type": "string",
            "jsonPath": ".spec.tflops.bf16",
            "description": "Peak dense BF16 TFLOPS of one device.",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]

    api_version: str = Field(default=API_VERSION)
    kind: str = Field(default=KIND)
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AcceleratorModelSpec = Field(description="The model's figures, written by the admin.")

    @property
    def name(self) -> str:
        """The object's name (empty if unnamed)."""
        return self.metadata.name or ""


CATEGORIES: Final = (CATEGORY,)
