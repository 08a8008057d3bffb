"""Offline validation: the corpus, the apiserver's ordering of checks, and the CLI."""

from __future__ import annotations

import io
import json
import re
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedcompute import cli
from fedcompute.api import crds, validation
from fedcompute.api.validation import ErrorType, validate_document, validate_status

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).resolve().parent / "api_cases"
EXAMPLES = ROOT / "examples"
INVALID = sorted((CASES / "invalid").glob("*.yaml"))
INVALID_STATUS = sorted((CASES / "invalid_status").glob("*.yaml"))


def _expected(path: Path) -> set[str]:
    match = re.search(r"^# expect: (.+)$", path.read_text(), re.MULTILINE)
    assert match, path
    return {p.strip() for p in match.group(1).split(",")}


def _paths(errors: list[validation.FieldError]) -> set[str]:
    return {e.path for e in errors if e.path}


def _provider(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "region": "east-china",
        "source": {"static": {"resources": {"cpu": "8"}}},
    }
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": "p"},
        "spec": {**base, **spec},
    }


def _run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(list(argv))
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


# --- the corpus ------------------------------------------------------------------------


def test_corpus_has_at_least_25_invalid_manifests() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_names_the_expected_fields(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    errors = validate_document(doc)
    assert errors
    assert _paths(errors) == _expected(path), [str(e) for e in errors]


@pytest.mark.parametrize("path", INVALID_STATUS, ids=lambda p: p.stem)
def test_invalid_status_names_the_expected_fields(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert _paths(validate_status(doc)) == _expected(path)


@pytest.mark.parametrize(
    "path",
    sorted((CASES / "valid").glob("*.yaml")) + sorted(EXAMPLES.rglob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_valid_manifests_and_examples_pass(path: Path) -> None:
    reports = validation.validate_text(path.read_text(), file=str(path))
    assert all(r.valid for r in reports), [r.lines() for r in reports]


def test_examples_hold_every_kind() -> None:
    reports = validation.validate_paths([EXAMPLES])
    assert {r.kind for r in reports} == {"ComputeProvider", "RegionPool", "AcceleratorModel"}


def test_corpus_covers_every_kind() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in INVALID}
    assert kinds == set(crds.RESOURCES_BY_KIND)


def test_every_cel_rule_is_exercised_by_the_corpus() -> None:
    messages = {
        rule["message"]
        for doc in crds.crd_documents()
        for node in _walk(doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        for rule in node.get("x-kubernetes-validations", [])
    }
    seen = {str(e) for path in INVALID for e in validate_document(yaml.safe_load(path.read_text()))}
    seen |= {
        str(e) for path in INVALID_STATUS for e in validate_status(yaml.safe_load(path.read_text()))
    }
    for message in messages:
        assert any(message in line for line in seen), f"no invalid case breaks: {message}"


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("properties", {}).values():
        found += _walk(child)
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"])
    if "items" in node:
        found += _walk(node["items"])
    return found


# --- how checks are ordered, as in kube-apiserver --------------------------------------


def test_unknown_fields_are_reported_alone_like_strict_decoding() -> None:
    doc = _provider(region="BAD", colour="red", source={"static": {"resources": {"cpu": "8"}}})
    doc["metadata"]["owner"] = "me"
    errors = validate_document(doc)
    assert [(e.path, e.type) for e in errors] == [
        ("metadata.owner", ErrorType.UNKNOWN),
        ("spec.colour", ErrorType.UNKNOWN),
    ]


def test_blocking_errors_skip_cel_rules() -> None:
    doc = _provider(displayName="x" * 200, source={})
    errors = validate_document(doc)
    assert [e.path for e in errors] == ["spec.displayName", ""]
    assert validation.RULES_NOT_CHECKED in errors[-1].detail


def test_non_blocking_errors_still_run_cel_rules() -> None:
    errors = validate_document(_provider(region="BAD", source={}))
    assert [e.path for e in errors] == ["spec.region", "spec.source"]


def test_nulls_are_pruned_and_defaults_applied_before_validation() -> None:
    doc = _provider(zone=None, monitoring=None, unschedulable=None)
    assert validate_document(doc) == []
    defaulted = validation.apply_defaults(
        json.loads(json.dumps(doc)), validation._schemas()["ComputeProvider"]
    )
    assert defaulted["spec"]["monitoring"] == {
        "interval": "30s",
        "timeout": "10s",
        "staleAfter": "3m",
    }
    assert defaulted["spec"]["unschedulable"] is False
    assert "zone" not in defaulted["spec"]


def test_partial_monitoring_gets_the_other_defaults() -> None:
    assert validate_document(_provider(monitoring={"interval": "1m"})) == []
    errors = validate_document(_provider(monitoring={"interval": "2m"}))
    assert [e.path for e in errors] == ["spec.monitoring.staleAfter"]


def test_status_is_ignored_on_the_main_resource_but_checked_on_the_subresource() -> None:
    doc = _provider()
    doc["status"] = {"capacity": {"cpu": "lots"}}
    assert validate_document(doc) == []
    assert [e.path for e in validate_status(doc)] == ["status.capacity.cpu"]


def test_metadata_name_rules() -> None:
    doc = _provider()
    doc["metadata"] = {"name": "Not_A_Name"}
    assert [e.path for e in validate_document(doc)] == ["metadata.name"]
    doc["metadata"] = {}
    assert next((e.path, e.type) for e in validate_document(doc)) == (
        "metadata.name",
        ErrorType.REQUIRED,
    )
    doc["metadata"] = {"generateName": "provider-"}
    assert validate_document(doc) == []
    doc["metadata"] = {"generateName": "p" * 56}
    assert [e.path for e in validate_document(doc)] == ["metadata.name"]


def test_wrong_api_version_and_foreign_kinds() -> None:
    doc = _provider()
    doc["apiVersion"] = "fedcompute.io/v1"
    assert validation.is_api_document(doc)
    assert [(e.path, e.type) for e in validate_document(doc)] == [
        ("apiVersion", ErrorType.UNSUPPORTED)
    ]
    assert not validation.is_api_document({"apiVersion": "v1", "kind": "Secret"})
    assert not validation.is_api_document({"apiVersion": "other.io/v1", "kind": "RegionPool"})
    assert not validation.is_api_document("text")


def test_integral_floats_count_as_integers_like_the_apiserver() -> None:
    doc = _provider(source={"static": {"resources": {"cpu": "8"}, "nodeCount": 3.0}})
    assert validate_document(doc) == []


def test_error_strings_read_like_kubectl() -> None:
    (error,) = validate_document(_provider(region="East_China"))
    assert str(error) == (
        'spec.region: Invalid value: "East_China": spec.region in body should match '
        "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"
    )
    errors = validate_document(_provider(region=None))
    assert str(errors[0]) == "spec.region: Required value"


def _model(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "AcceleratorModel",
        "metadata": {"name": "m"},
        "spec": {"vendor": "NVIDIA", "source": "datasheet", **spec},
    }


def test_accelerator_model_has_no_status_to_ignore() -> None:
    # Without a status subresource, status is an undeclared field on every write.
    doc = _model()
    doc["status"] = {"observedGeneration": 1}
    assert [(e.path, e.type) for e in validate_document(doc)] == [("status", ErrorType.UNKNOWN)]
    assert [(e.path, e.type) for e in validate_status(doc)] == [("status", ErrorType.UNKNOWN)]


def test_accelerator_model_quantities_have_the_range_rule() -> None:
    assert validate_document(_model(memory="9223372036854775807", tflops={"fp8": 1})) == []
    errors = validate_document(_model(memory="8Ei", tflops={"fp8": "1e19"}))
    assert [e.path for e in errors] == ["spec.memory", "spec.tflops.fp8"]


# --- quantities above 2^63-1 ----------------------------------------------------------
# Each outcome below was measured on kube-apiserver 1.34.4 with the generated CRD.


def _with_memory(value: object) -> dict[str, Any]:
    return _provider(source={"static": {"resources": {"cpu": "8", "memory": value}}})


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("9223372036854775807", True),
        (9223372036854775807, True),
        ("9223372036854775807000m", True),
        ("8191Pi", True),
        ("7.99999Ei", True),
        ("1e-999", True),
        ("8Ei", False),  # 2^63, which Kubernetes caps to 2^63-1: refused
        ("9223372036854775808", False),
        ("9223372036854775807.000000001", False),
        ("99999999999999999999", False),
        ("1e19", False),
        ("1e999", False),
        ("1e999999999", False),  # refused by its exponent, before quantity() expands it
        ("1e-1000", False),
        ("0e1000", False),
    ],
)
def test_quantity_range_matches_the_apiserver(value: object, valid: bool) -> None:
    errors = validate_document(_with_memory(value))
    if valid:
        assert errors == []
    else:
        assert [e.path for e in errors] == ["spec.source.static.resources[memory]"]
        assert "9223372036854775807 (2^63-1)" in errors[0].detail
        # Like the apiserver, the error names the schema's type, empty for int-or-string.
        assert str(errors[0]).startswith(
            'spec.source.static.resources[memory]: Invalid value: "": '
        )


def test_an_integer_beyond_int64_is_a_number_to_the_apiserver() -> None:
    errors = validate_document(_with_memory(2**63))
    assert [(e.path, e.type) for e in errors] == [
        ("spec.source.static.resources.memory", ErrorType.TYPE_INVALID),
        ("", ErrorType.INVALID),
    ]
    assert '"number"' in errors[0].detail
    assert validate_document(_provider(source={"static": {"resources": {"cpu": 2.0**60}}}))


def test_status_quantities_have_no_range_rule() -> None:
    doc = _provider()
    doc["status"] = {"capacity": {"memory": "8Ei", "cpu": "99999999999999999999"}}
    assert validate_status(doc) == []


def test_patterns_end_where_go_ends_them() -> None:
    # Python's "$" also matches before a final newline; Go's does not.
    assert [e.path for e in validate_document(_with_memory("8Gi\n"))] == [
        "spec.source.static.resources.memory"
    ]
    assert validation.go_regex(r"^[$a]+$") == r"^[$a]+\Z"
    assert validation.go_regex(r"^\$[]$]$") == r"^\$[]$]\Z"


@pytest.mark.parametrize(
    "expression",
    [
        "quantity('8Ei') == quantity('9223372036854775807')",  # the binary cap
        "quantity('9223372036854775808').isGreaterThan(quantity('8Ei'))",
        "quantity('1Ki').compareTo(quantity('1k')) == 1",
        "quantity('1k').compareTo(quantity('1000')) == 0",
        "quantity('50M').isLessThan(quantity('50Mi'))",
        "!quantity('50Mi').isLessThan(quantity('50M'))",
        "quantity('150Mi').isGreaterThan(quantity('100Mi'))",
        "quantity('-1n').isLessThan(quantity('0'))",
        "isQuantity('1.3Gi') && isQuantity('.') && !isQuantity('200K') && !isQuantity('1 ')",
        "isQuantity(self) && quantity(self) == quantity('1000m')",
    ],
)
def test_cel_quantity_library_offline(expression: str) -> None:
    assert validation.evaluate_rule(expression, "1")


def test_cel_quantity_of_a_non_quantity_is_an_evaluation_error() -> None:
    with pytest.raises(Exception, match="not a quantity"):
        validation.evaluate_rule("quantity(self).isLessThan(quantity('100'))", "lots")


# --- files and the command -------------------------------------------------------------


def test_validate_text_skips_other_kinds_and_counts_documents() -> None:
    text = "\n---\n".join(
        [
            yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            yaml.safe_dump(_provider()),
            "",
            yaml.safe_dump(_provider(region="BAD")),
        ]
    )
    reports = validation.validate_text(text, file="m.yaml")
    assert [(r.index, r.valid) for r in reports] == [(2, True), (4, False)]
    assert reports[1].lines()[0].startswith("m.yaml:4: ComputeProvider/p: spec.region: ")


def test_validate_text_reports_unparseable_yaml() -> None:
    (report,) = validation.validate_text("a: [unclosed", file="bad.yaml")
    assert not report.valid and report.index == 0
    assert "not YAML" in report.errors[0].detail


def test_cli_exit_codes_and_text_output(tmp_path: Path) -> None:
    code, out, err = _run("validate", str(EXAMPLES))
    assert code == 0, out
    assert out == ""
    assert "all valid" in err

    bad = tmp_path / "nested" / "bad.yml"
    bad.parent.mkdir()
    bad.write_text(yaml.safe_dump(_provider(region="BAD")))
    code, out, err = _run("validate", str(EXAMPLES), str(tmp_path))
    assert code == 1
    assert out.splitlines() == [
        f'{bad}:1: ComputeProvider/p: spec.region: Invalid value: "BAD": spec.region in body '
        "should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"
    ]
    assert "1 invalid" in err


def test_cli_json_output(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(_provider()) + "---\n" + yaml.safe_dump(_provider(source={})))
    code, out, _ = _run("validate", "-o", "json", str(path))
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    assert (report["objects"], report["invalid"]) == (2, 1)
    first, second = report["results"]
    assert first == {
        "file": str(path),
        "document": 1,
        "kind": "ComputeProvider",
        "name": "p",
        "valid": True,
        "errors": [],
    }
    assert second["errors"] == [
        {
            "field": "spec.source",
            "type": "invalid",
            "message": '"object": exactly one of static or kubernetes must be set',
        }
    ]


def test_cli_reads_stdin_and_reports_missing_paths(tmp_path: Path) -> None:
    code, _, _ = _run("validate", "-", stdin=yaml.safe_dump(_provider()))
    assert code == 0
    code, out, _ = _run("validate", str(tmp_path / "missing.yaml"))
    assert code == 1
    assert "no such file or directory" in out
