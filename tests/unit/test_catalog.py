"""The accelerator catalog: entries, sources, lookups by any spelling, and overrides."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from fedcompute import quantities
from fedcompute.api.accelerator import AcceleratorModel
from fedcompute.api.common import PRECISIONS
from fedcompute.capacity import vendors
from fedcompute.capacity.catalog import (
    BUILTIN,
    GIB,
    Catalog,
    ModelSpec,
    from_object,
    model_key,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "accelerators.md"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
H100 = "NVIDIA-H100-80GB-HBM3"


def _override(name: str, *aliases: str, fp16: str = "1", vendor: str = "NVIDIA") -> ModelSpec:
    return ModelSpec(
        name=name,
        vendor=vendor,
        aliases=aliases,
        memory=Decimal(80) * GIB,
        tflops={"fp16": Decimal(fp16)},
        source="site measurement",
    )


# --- the built-in entries --------------------------------------------------------------


def test_at_least_30_models_and_30_with_figures() -> None:
    assert len(BUILTIN) >= 30
    assert sum(1 for s in BUILTIN if s.tflops) >= 30


def test_every_entry_has_a_source_and_a_label_safe_name() -> None:
    for spec in BUILTIN:
        assert spec.source.strip(), spec.name
        assert LABEL_VALUE.match(spec.name) and len(spec.name) <= 63, spec.name
        assert vendors.normalize_model(spec.name) == spec.name


def test_every_vendor_is_in_the_vendor_table() -> None:
    known = {v.name for v in vendors.VENDORS}
    assert {s.vendor for s in BUILTIN} <= known
    assert {"NVIDIA", "Huawei", "Hygon", "Cambricon", "AMD", "Intel"} <= {s.vendor for s in BUILTIN}


def test_figures_are_plausible() -> None:
    for spec in BUILTIN:
        assert set(spec.tflops) <= set(PRECISIONS), spec.name
        assert all(v > 0 for v in spec.tflops.values()), spec.name
        if spec.memory is not None:
            assert 8 * GIB <= spec.memory <= 512 * GIB, spec.name
        # A device's peak dense rate does not fall as precision narrows.
        order = [p for p in ("fp64", "fp32", "bf16", "fp8") if p in spec.tflops]
        rates = [spec.tflops[p] for p in order]
        assert rates == sorted(rates), spec.name


def test_entries_without_figures_say_so() -> None:
    bare = [s for s in BUILTIN if not s.tflops]
    assert bare
    for spec in bare:
        assert "left out" in spec.source, spec.name


def test_names_and_aliases_are_unique_across_entries() -> None:
    owner: dict[str, str] = {}
    for spec in BUILTIN:
        for spelling in (spec.name, *spec.aliases):
            key = model_key(spelling)
            assert owner.setdefault(key, spec.name) == spec.name, (spelling, owner[key])


def test_every_name_and_alias_resolves_to_its_entry() -> None:
    catalog = Catalog()
    for spec in BUILTIN:
        for spelling in (spec.name, *spec.aliases):
            assert catalog.lookup(spelling) is spec, spelling


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("NVIDIA-H100-80GB-HBM3", H100),
        ("NVIDIA H100 80GB HBM3", H100),
        ("nvidia-h100-80gb-hbm3", H100),
        ("nvidia-h100-80gb", H100),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"),
        ("A100-SXM4-40GB", "NVIDIA-A100-SXM4-40GB"),
        ("NVIDIA H200", "NVIDIA-H200"),
        ("Tesla T4", "Tesla-T4"),
        ("AMD_Instinct_MI300X_OAM", "AMD-Instinct-MI300X"),
        ("amd instinct mi250x", "AMD-Instinct-MI250X"),
        ("Gaudi3", "Intel-Gaudi3"),
        ("910B3", "Ascend910B3"),
        ("ascend910b4", "Ascend910B4"),
        ("310P3", "Ascend310P3"),
        ("K100_AI", "Hygon-DCU-K100-AI"),
        ("MXC500", "MetaX-C500"),
        ("MLU370-X8", "Cambricon-MLU370-X8"),
    ],
)
def test_lookup_by_label_dra_and_cloud_spellings(spelling: str, name: str) -> None:
    spec = Catalog().lookup(spelling)
    assert spec is not None and spec.name == name


@pytest.mark.parametrize(
    "model",
    [
        vendors.UNKNOWN_MODEL,
        "",
        f"{H100}-MIG-1g.10gb",
        "NVIDIA-A100-SXM4-40GB-SHARED",
        "AMD_Instinct_MI300X_OAM-cpx_nps4",
        "huawei-Ascend910",
        "Ascend-910B",
    ],
)
def test_partitions_families_and_unknown_names_resolve_to_nothing(model: str) -> None:
    assert Catalog().lookup(model) is None


def test_a_few_figures_against_their_datasheets() -> None:
    catalog = Catalog()
    h100 = catalog.lookup(H100)
    assert h100 is not None
    assert h100.memory == 80 * GIB
    assert h100.tflops["fp16"] == Decimal("989.5")
    assert h100.tflops["fp64"] == Decimal(67)
    a100 = catalog.lookup("NVIDIA-A100-SXM4-80GB")
    assert a100 is not None and a100.tflops["tf32"] == Decimal(156)
    mi300x = catalog.lookup("MI300X")
    assert mi300x is not None and mi300x.memory == 192 * GIB
    assert catalog.tflops("Gaudi3") == {"bf16": Decimal(1835), "fp8": Decimal(1835)}
    assert catalog.tflops("910B3") == {}
    assert catalog.tflops("no-such-model") == {}


def test_canonical_names() -> None:
    catalog = Catalog()
    assert catalog.canonical("NVIDIA H100 80GB HBM3") == H100
    assert catalog.canonical("nvidia-tesla-t4") == "Tesla-T4"
    assert catalog.canonical("Some-Model") == "Some-Model"


# --- overrides -------------------------------------------------------------------------


def test_override_by_name_in_any_case() -> None:
    override = _override("nvidia-h100-80gb-hbm3", fp16="900")
    catalog = Catalog([override])
    for spelling in (H100, "nvidia-h100-80gb-hbm3", "NVIDIA H100 80GB HBM3", "nvidia-h100-80gb"):
        spec = catalog.lookup(spelling)
        assert spec is not None, spelling
        assert spec.tflops == {"fp16": Decimal(900)}
        assert spec.source == "site measurement"
        # The entry keeps the name labels spell, so reports do not change names.
        assert spec.name == H100
    assert len(catalog) == len(BUILTIN)
    assert sum(1 for s in catalog if s.name == H100) == 1


def test_override_by_alias_takes_over_every_spelling() -> None:
    override = _override("site-h100", "NVIDIA H100 80GB HBM3", fp16="950")
    catalog = Catalog([override])
    for spelling in (H100, "site-h100", "nvidia-h100-mega-80gb"):
        spec = catalog.lookup(spelling)
        assert spec is not None and spec.tflops["fp16"] == Decimal(950), spelling
        assert spec.name == H100
        assert "site-h100" in spec.aliases
    assert len(catalog) == len(BUILTIN)


def test_override_spanning_two_entries_replaces_both() -> None:
    override = _override("a100-any", "NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-SXM4-80GB")
    catalog = Catalog([override])
    first = catalog.lookup("nvidia-tesla-a100")
    second = catalog.lookup("nvidia-a100-80gb")
    assert first is second and first is not None
    assert len(catalog) == len(BUILTIN) - 1


def test_new_model_is_added() -> None:
    override = _override("vendorx-z1", "VendorX Z1", vendor="VendorX")
    catalog = Catalog([override])
    assert catalog.lookup("VENDORX Z1") is override
    assert catalog.lookup("vendorx-z1") is override
    assert len(catalog) == len(BUILTIN) + 1


def test_later_overrides_win() -> None:
    first = _override("nvidia-h200", fp16="1")
    second = _override("site-h200", "NVIDIA H200", fp16="2")
    catalog = Catalog([first, second])
    spec = catalog.lookup("nvidia-h200-141gb")
    assert spec is not None and spec.tflops["fp16"] == Decimal(2)
    assert sum(1 for s in catalog if s.name == "NVIDIA-H200") == 1


def test_builtin_is_untouched_by_overrides() -> None:
    Catalog([_override("nvidia-h100-80gb-hbm3", fp16="900")])
    spec = Catalog().lookup(H100)
    assert spec is not None and spec.tflops["fp16"] == Decimal("989.5")


def test_from_object() -> None:
    obj = AcceleratorModel.model_validate(
        {
            "apiVersion": "fedcompute.io/v1alpha1",
            "kind": "AcceleratorModel",
            "metadata": {"name": "ascend910b3"},
            "spec": {
                "vendor": "Huawei",
                "aliases": ["910B3", "Ascend 910B3"],
                "memory": "64Gi",
                "tflops": {"fp16": "313", "int8": 626},
                "source": "Atlas 800T A2 acceptance test report, 2025-03",
            },
        }
    )
    spec = from_object(obj)
    assert spec == ModelSpec(
        name="ascend910b3",
        vendor="Huawei",
        aliases=("910B3", "Ascend 910B3"),
        memory=Decimal(64) * GIB,
        tflops={"fp16": Decimal(313), "int8": Decimal(626)},
        source="Atlas 800T A2 acceptance test report, 2025-03",
    )
    catalog = Catalog([spec])
    found = catalog.lookup("910B3")
    assert found is not None and found.name == "Ascend910B3"
    assert found.memory == Decimal(64) * GIB


def test_from_object_without_figures() -> None:
    obj = AcceleratorModel.model_validate(
        {"metadata": {"name": "x1"}, "spec": {"vendor": "X", "source": "vendor email"}}
    )
    spec = from_object(obj)
    assert (spec.memory, dict(spec.tflops), spec.aliases) == (None, {}, ())


def _doc_row(spec: ModelSpec) -> str:
    memory = f"{spec.memory / GIB:g} GiB" if spec.memory is not None else "-"
    cells = [
        quantities.format_plain(spec.tflops[p]) if p in spec.tflops else "-" for p in PRECISIONS
    ]
    aliases = ", ".join(f"`{a}`" for a in spec.aliases)
    return (
        f"| `{spec.name}`<br>{aliases} | {spec.vendor} | {memory} | "
        + " | ".join(cells)
        + f" | {spec.source} |"
    )


def test_the_documented_model_table_matches_the_catalog() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    documented = [row for row in rows if "<br>" in row]
    assert documented == [_doc_row(spec) for spec in BUILTIN], (
        "docs/accelerators.md's model table is out of date"
    )
