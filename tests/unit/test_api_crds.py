"""CRD generation: drift against crds/, structural schemas, bounds and CEL rules."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from fedcompute import cli
from fedcompute.api import common, crds, validation

ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = ROOT / "crds"
DOCS = crds.crd_documents()


def _schema(kind: str) -> dict[str, Any]:
    doc = next(d for d in DOCS if d["spec"]["names"]["kind"] == kind)
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")


KINDS = ("ComputeProvider", "RegionPool", "AcceleratorModel")
ALL_NODES = [(kind + path, node) for kind in KINDS for path, node in _nodes(_schema(kind))]


# --- drift -----------------------------------------------------------------------------


def test_crds_directory_matches_the_models() -> None:
    expected = crds.render_files()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in CRDS_DIR.glob("*.yaml")}
    assert set(on_disk) == {
        "computeproviders.fedcompute.io.yaml",
        "regionpools.fedcompute.io.yaml",
        "acceleratormodels.fedcompute.io.yaml",
    }
    for name, content in expected.items():
        assert on_disk[name] == content, (
            f"crds/{name} is out of date: run `fedcompute crds --output-dir crds`"
        )


def test_generation_is_deterministic_and_ordered() -> None:
    assert crds.crd_documents() == crds.crd_documents()
    assert crds.render_stream() == crds.render_stream()
    assert [d["spec"]["names"]["kind"] for d in DOCS] == list(KINDS)


def test_crds_command_prints_the_stream_and_writes_files(tmp_path: Path) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["crds"]) == 0
    assert out.getvalue() == crds.render_stream()
    assert list(yaml.safe_load_all(out.getvalue())) == DOCS

    with redirect_stdout(io.StringIO()):
        assert cli.main(["crds", "--output-dir", str(tmp_path / "out")]) == 0
    for name, content in crds.render_files().items():
        assert (tmp_path / "out" / name).read_text(encoding="utf-8") == content


# --- the resource definitions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [
        ("ComputeProvider", "computeproviders", "cprov"),
        ("RegionPool", "regionpools", "rpool"),
        ("AcceleratorModel", "acceleratormodels", "accmodel"),
    ],
)
def test_names_scope_and_subresources(kind: str, plural: str, short: str) -> None:
    doc = next(d for d in DOCS if d["spec"]["names"]["kind"] == kind)
    assert doc["metadata"]["name"] == f"{plural}.fedcompute.io"
    spec = doc["spec"]
    assert spec["group"] == "fedcompute.io"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["fedcompute"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    # An AcceleratorModel has no status, so no status subresource either.
    has_status = "status" in _schema(kind)["properties"]
    assert version.get("subresources") == ({"status": {}} if has_status else None)
    assert has_status is (kind != "AcceleratorModel")


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("ComputeProvider", ["Region", "Pool", "Ready", "CPU", "Memory", "GPU", "Age"]),
        ("RegionPool", ["Providers", "Ready Providers", "Ready", "CPU", "GPU", "Age"]),
        ("AcceleratorModel", ["Vendor", "Memory", "FP16", "BF16", "Age"]),
    ],
)
def test_printer_columns(kind: str, columns: list[str]) -> None:
    doc = next(d for d in DOCS if d["spec"]["names"]["kind"] == kind)
    printed = doc["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in printed if not c.get("priority")] == columns
    schema = _schema(kind)
    for column in printed:
        path = column["jsonPath"]
        if path.startswith(".metadata") or "[?(" in path:
            continue
        node = schema
        for part in path.strip(".").split("."):
            node = (
                node["properties"][part] if "properties" in node else node["additionalProperties"]
            )
        assert node.get("type", "string") == column["type"], column  # quantities print as text


# --- structural schema rules -----------------------------------------------------------


def test_only_known_keywords_and_no_refs_or_unions() -> None:
    for path, node in ALL_NODES:
        assert set(node) <= crds.SCHEMA_KEYWORDS, path
        assert "additionalProperties" not in node or "properties" not in node, path


def test_every_node_has_a_type() -> None:
    for path, node in ALL_NODES:
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path


def test_every_field_is_described_for_kubectl_explain() -> None:
    for path, node in ALL_NODES:
        last = path.rsplit(".", 1)[-1]
        if path.endswith(("[]", ".*")) or last in {"apiVersion", "kind", "metadata", "name"}:
            continue
        assert node.get("description"), path


def test_every_string_list_and_map_is_bounded() -> None:
    for path, node in ALL_NODES:
        if node.get("type") == "string" or node.get("x-kubernetes-int-or-string"):
            if path.split(".", 1)[-1] in {"apiVersion", "kind", "metadata.name"}:
                continue  # checked by the apiserver itself
            assert "maxLength" in node or "enum" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, path


def test_quantities_are_int_or_string_with_the_quantity_pattern() -> None:
    quantity_paths = [p for p, n in ALL_NODES if n.get("x-kubernetes-int-or-string")]
    assert any(p.endswith("static.resources.*") for p in quantity_paths)
    assert any(p.endswith("status.capacity.*") for p in quantity_paths)
    assert any(p.endswith("tflopsPerDevice.fp16") for p in quantity_paths)
    for path, node in ALL_NODES:
        if node.get("x-kubernetes-int-or-string"):
            assert node["pattern"] == common.NONNEGATIVE_QUANTITY_PATTERN, path
            assert node["minimum"] == 0


def test_only_declared_quantities_carry_the_range_rule() -> None:
    ranged = {
        path
        for path, node in ALL_NODES
        if common.QUANTITY_RANGE_RULE in node.get("x-kubernetes-validations", [])
    }
    assert ranged == {
        "ComputeProvider.spec.source.static.resources.*",
        "ComputeProvider.spec.reserved.*",
        "ComputeProvider.spec.source.static.accelerators[].memoryPerDevice",
        *(
            f"ComputeProvider.spec.source.static.accelerators[].tflopsPerDevice.{p}"
            for p in common.PRECISIONS
        ),
        "AcceleratorModel.spec.memory",
        *(f"AcceleratorModel.spec.tflops.{p}" for p in common.PRECISIONS),
    }
    for path, node in ALL_NODES:
        if node.get("x-kubernetes-int-or-string") and ".status." in path:
            assert path not in ranged


@pytest.mark.parametrize("kind", ["RegionPool", "AcceleratorModel"])
def test_pool_and_model_names_fit_a_label_value(kind: str) -> None:
    (name_rule,) = _schema(kind)["x-kubernetes-validations"]
    assert name_rule["rule"] == "self.metadata.name.size() <= 63"
    assert name_rule["fieldPath"] == ".metadata.name"


def test_accelerator_model_schema() -> None:
    spec = _schema("AcceleratorModel")["properties"]["spec"]
    assert spec["required"] == ["vendor", "source"]
    aliases = spec["properties"]["aliases"]
    assert aliases["x-kubernetes-list-type"] == "set"
    assert (aliases["maxItems"], aliases["items"]["maxLength"]) == (16, 128)
    assert set(spec["properties"]["tflops"]["properties"]) == set(common.PRECISIONS)
    provider = _schema("ComputeProvider")["properties"]["spec"]["properties"]["source"]
    static = provider["properties"]["static"]["properties"]["accelerators"]["items"]
    # The same declared shapes as a static provider's accelerators.
    assert spec["properties"]["memory"] == {
        **static["properties"]["memoryPerDevice"],
        "description": spec["properties"]["memory"]["description"],
    }


def test_list_map_keys_are_required() -> None:
    for path, node in ALL_NODES:
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", []))
            defaulted = {k for k, v in node["items"]["properties"].items() if "default" in v}
            assert set(node["x-kubernetes-list-map-keys"]) <= required | defaulted, path


def test_defaults_satisfy_their_own_schema() -> None:
    for path, node in ALL_NODES:
        if "default" in node:
            assert validation.schema_errors(node["default"], node) == [], path
            for rule in node.get("x-kubernetes-validations", []):
                assert validation.evaluate_rule(rule["rule"], node["default"]), (path, rule)


def test_status_has_a_schema_and_never_preserves_unknown_fields() -> None:
    for kind in ("ComputeProvider", "RegionPool"):
        status = _schema(kind)["properties"]["status"]
        assert status["type"] == "object" and status["properties"]
        for _, node in _nodes(status):
            assert "x-kubernetes-preserve-unknown-fields" not in node
        conditions = status["properties"]["conditions"]
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


# --- CEL rules -------------------------------------------------------------------------


def _rules() -> list[tuple[str, dict[str, str]]]:
    return [(p, r) for p, n in ALL_NODES for r in n.get("x-kubernetes-validations", [])]


def test_every_cel_rule_compiles_offline() -> None:
    env = celpy.Environment()
    for path, rule in _rules():
        env.compile(rule["rule"])
        assert rule["message"], path


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ("ComputeProvider.spec.source", "has(self.static) != has(self.kubernetes)"),
        ("RegionPool.spec", "has(self.regions) || has(self.providerSelector)"),
        ("ComputeProvider.spec.monitoring", "duration(self.staleAfter) >="),
        ("ComputeProvider.spec.monitoring", "duration(self.timeout) < duration(self.interval)"),
        ("ComputeProvider", "self.metadata.name.size() <= 60"),
    ],
)
def test_cross_field_rules_are_on_the_right_nodes(where: str, fragment: str) -> None:
    assert any(path == where and fragment in rule["rule"] for path, rule in _rules())
