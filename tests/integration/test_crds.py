"""The generated CRDs on a real kube-apiserver, and the offline validator agreeing with it.

Every manifest of the corpus in ``tests/unit/api_cases`` goes through both paths: the
apiserver (strict field validation, server-side dry run, so nothing is stored) and
``fedcompute.api.validation``. They must accept and reject the same documents and name the
same field paths. The host cluster is shared with other tests: the CRDs are applied
idempotently and every stored object has a unique name and is deleted afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fedcompute.api import GROUP, VERSION, crds, validation
from fedcompute.api.common import Condition
from fedcompute.api.provider import ComputeProviderStatus, ProviderAcceleratorStatus
from fedcompute.local.cluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "unit" / "api_cases"
EXAMPLES = ROOT / "examples"
PLURALS = {r.kind: r.plural for r in crds.RESOURCES}
FIELD_MANAGER = "fedcompute-tests"


def _expected(path: Path) -> set[str]:
    match = re.search(r"^# expect: (.+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path} has no '# expect:' line"
    return {p.strip() for p in match.group(1).split(",")}


def _offline_paths(errors: list[validation.FieldError]) -> set[str]:
    return {e.path for e in errors if e.path}


def _server_paths(exc: ApiException) -> tuple[set[str], str]:
    """Field paths the apiserver named, and its message."""
    body = json.loads(exc.body)
    message = str(body.get("message", ""))
    causes = (body.get("details") or {}).get("causes") or []
    paths = {c["field"] for c in causes if c.get("field") and c["field"] != "<nil>"}
    paths |= set(re.findall(r'unknown field "([^"]+)"', message))
    return paths, message


def _unique(name: str) -> str:
    return f"{name[:50]}-{uuid.uuid4().hex[:6]}"


class Kubectl:
    """The host's kubectl with a discovery cache of its own, never stale from earlier runs."""

    def __init__(self, host: Cluster, cache: Path) -> None:
        self.host = host
        self.cache = cache

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.host.kubectl(f"--cache-dir={self.cache}", *args, input=input, check=check)


@pytest.fixture(scope="module")
def kubectl(host: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(host, tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture(scope="module")
def cluster_with_crds(host: Cluster, kubectl: Kubectl) -> Cluster:
    """The host with the CRDs from crds/ applied (idempotent) and served."""
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        str(ROOT / "crds"),
    )
    names = [f"crd/{r.crd_name}" for r in crds.RESOURCES]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    # Established comes slightly before the kinds show in discovery; wait for them.
    deadline = time.monotonic() + 60
    while True:
        out = kubectl("api-resources", f"--api-group={GROUP}", "-o", "name", check=False)
        if all(f"{r.plural}.{GROUP}" in out.stdout for r in crds.RESOURCES):
            return host
        assert time.monotonic() < deadline, out.stdout + out.stderr
        time.sleep(1)


@pytest.fixture(scope="module")
def custom(cluster_with_crds: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster_with_crds.api_client())


def _dry_run_create(api: client.CustomObjectsApi, doc: dict[str, Any]) -> None:
    api.create_cluster_custom_object(
        GROUP, VERSION, PLURALS[doc["kind"]], doc, dry_run="All", field_validation="Strict"
    )


@pytest.fixture
def stored(custom: client.CustomObjectsApi) -> Iterator[list[tuple[str, str]]]:
    """Objects created for real by a test, deleted afterwards."""
    created: list[tuple[str, str]] = []
    yield created
    for plural, name in created:
        try:
            custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
        except ApiException as exc:  # pragma: no cover - best effort cleanup
            if exc.status != 404:
                raise


def _create(
    api: client.CustomObjectsApi, stored: list[tuple[str, str]], doc: dict[str, Any]
) -> dict[str, Any]:
    plural = PLURALS[doc["kind"]]
    result: dict[str, Any] = api.create_cluster_custom_object(
        GROUP, VERSION, plural, doc, field_validation="Strict"
    )
    stored.append((plural, doc["metadata"]["name"]))
    return result


# --- the CRDs themselves ---------------------------------------------------------------


def _explain(kubectl: Kubectl, field: str) -> str:
    """``kubectl explain``, retried while the apiserver publishes the new OpenAPI schema."""
    deadline = time.monotonic() + 60
    while True:
        result = kubectl("explain", field, check=False)
        if result.returncode == 0:
            return result.stdout
        assert time.monotonic() < deadline, result.stderr
        time.sleep(1)


def test_crds_established_with_descriptions_in_kubectl_explain(
    cluster_with_crds: Cluster, kubectl: Kubectl
) -> None:
    out = _explain(kubectl, "computeprovider.spec.source")
    assert "exactly one of static or kubernetes" in out
    assert "kubernetes\t<Object>" in out and "static\t<Object>" in out
    assert "Capacity declared by hand" in out

    out = _explain(kubectl, "regionpool.spec.priority")
    assert "highest priority claims it" in out

    out = _explain(kubectl, "cprov.spec.monitoring.staleAfter")
    assert "at least twice the interval" in out

    out = _explain(kubectl, "acceleratormodel.spec")
    assert "aliases\t<[]string>" in out and "tflops\t<Object>" in out
    assert "Where the figures come from" in out and "-required-" in out

    out = _explain(kubectl, "accmodel.spec.tflops.fp16")
    assert "Half precision tensor TFLOPS" in out


def test_crds_on_the_server_match_the_generated_ones(
    cluster_with_crds: Cluster, kubectl: Kubectl
) -> None:
    for doc in crds.crd_documents():
        out = kubectl("get", f"crd/{doc['metadata']['name']}", "-o", "json")
        served = json.loads(out.stdout)
        conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
        assert conditions.get("Established") == "True"
        assert conditions.get("NamesAccepted") == "True"
        assert served["spec"]["scope"] == "Cluster"
        assert served["spec"]["names"]["categories"] == ["fedcompute"]
        version = served["spec"]["versions"][0]
        generated = doc["spec"]["versions"][0]
        assert version.get("subresources") == generated.get("subresources")
        assert version["additionalPrinterColumns"] == generated["additionalPrinterColumns"]
        assert version["schema"] == generated["schema"]


def test_get_fedcompute_lists_every_kind_with_printer_columns(
    custom: client.CustomObjectsApi, kubectl: Kubectl, stored: list[tuple[str, str]]
) -> None:
    region = _unique("listing")
    provider = _create(
        custom,
        stored,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ComputeProvider",
            "metadata": {"name": _unique("listing-provider")},
            "spec": {"region": region, "source": {"static": {"resources": {"cpu": "8"}}}},
        },
    )
    pool = _create(
        custom,
        stored,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RegionPool",
            "metadata": {"name": _unique("listing-pool")},
            "spec": {"regions": [region]},
        },
    )
    model = _create(
        custom,
        stored,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AcceleratorModel",
            "metadata": {"name": _unique("listing-model")},
            "spec": {
                "vendor": "NVIDIA",
                "memory": "80Gi",
                "tflops": {"fp16": "989.5", "bf16": "989.5"},
                "source": "datasheet",
            },
        },
    )
    names = kubectl("get", "fedcompute", "-o", "name").stdout.split()
    assert f"computeprovider.{GROUP}/{provider['metadata']['name']}" in names
    assert f"regionpool.{GROUP}/{pool['metadata']['name']}" in names
    assert f"acceleratormodel.{GROUP}/{model['metadata']['name']}" in names

    header = kubectl("get", "cprov").stdout.splitlines()[0].split()
    assert header == ["NAME", "REGION", "POOL", "READY", "CPU", "MEMORY", "GPU", "AGE"]
    rows = kubectl("get", "accmodel", model["metadata"]["name"]).stdout.splitlines()
    assert rows[0].split() == ["NAME", "VENDOR", "MEMORY", "FP16", "BF16", "AGE"]
    assert rows[1].split()[1:5] == ["NVIDIA", "80Gi", "989.5", "989.5"]
    pool_header = kubectl("get", "rpool").stdout.splitlines()[0]
    assert re.split(r"\s{2,}", pool_header.strip()) == [
        "NAME",
        "PROVIDERS",
        "READY PROVIDERS",
        "READY",
        "CPU",
        "GPU",
        "AGE",
    ]


# --- examples and the corpus through both paths ----------------------------------------


def test_examples_are_accepted_by_the_apiserver_and_offline(
    cluster_with_crds: Cluster, kubectl: Kubectl
) -> None:
    reports = validation.validate_paths([EXAMPLES])
    assert reports and all(r.valid for r in reports), [r.lines() for r in reports]

    files = sorted(EXAMPLES.rglob("*.yaml"))
    kinds = {d["kind"] for f in files for d in yaml.safe_load_all(f.read_text()) if d}
    assert {"ComputeProvider", "RegionPool", "AcceleratorModel", "Secret"} <= kinds
    # The examples' namespace is applied for real (the operator's own namespace, harmless
    # to share); everything else only in a server-side dry run.
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc["kind"] == "Namespace":
                kubectl(
                    "apply",
                    "--server-side",
                    f"--field-manager={FIELD_MANAGER}",
                    "-f",
                    "-",
                    input=yaml.safe_dump(doc),
                )
    for f in files:
        result = kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "--validate=strict",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            str(f),
            check=False,
        )
        assert result.returncode == 0, f"{f}: {result.stderr}"


@pytest.mark.parametrize("path", sorted((CASES / "valid").glob("*.yaml")), ids=lambda p: p.stem)
def test_valid_corpus_is_accepted_by_both(custom: client.CustomObjectsApi, path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert validation.validate_document(doc) == []
        _dry_run_create(custom, doc)


INVALID = sorted((CASES / "invalid").glob("*.yaml"))


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_rejected_by_both_with_the_same_fields(
    custom: client.CustomObjectsApi, path: Path
) -> None:
    doc = yaml.safe_load(path.read_text())
    expected = _expected(path)

    offline = validation.validate_document(doc)
    assert _offline_paths(offline) == expected, [str(e) for e in offline]

    with pytest.raises(ApiException) as caught:
        _dry_run_create(custom, doc)
    assert caught.value.status in (400, 422)
    server, message = _server_paths(caught.value)
    assert server == expected, message
    for field in expected:
        assert field in message


# Quantities at and beyond 2^63-1, the largest Kubernetes represents, and the exponents the
# range rule refuses before quantity() would expand them.
QUANTITY_EDGES: list[object] = [
    "9223372036854775807",
    9223372036854775807,
    "9223372036854775807000m",
    "8191Pi",
    "7.99999Ei",
    "1e-999",
    "8Ei",
    "16Ei",
    "9223372036854775808",
    "9223372036854775807.000000001",
    "99999999999999999999",
    "1e19",
    "1e999",
    "1e999999999",
    "1e-1000",
    "0e1000",
    2**63,
    "8Gi\n",
]


@pytest.mark.parametrize("value", QUANTITY_EDGES, ids=repr)
def test_quantity_edges_are_judged_alike(custom: client.CustomObjectsApi, value: object) -> None:
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ComputeProvider",
        "metadata": {"name": "quantity-edge"},
        "spec": {
            "region": "east-china",
            "source": {"static": {"resources": {"cpu": "8", "memory": value}}},
            "reserved": {"memory": value},
        },
    }
    offline = _offline_paths(validation.validate_document(doc))
    started = time.monotonic()
    try:
        _dry_run_create(custom, doc)
        server: set[str] = set()
    except ApiException as exc:
        server, message = _server_paths(exc)
        assert "9223372036854775807" in message or "should match" in message or "type" in message
    assert time.monotonic() - started < 10
    assert server == offline


@pytest.mark.parametrize("value", QUANTITY_EDGES, ids=repr)
def test_accelerator_model_quantity_edges_are_judged_alike(
    custom: client.CustomObjectsApi, value: object
) -> None:
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AcceleratorModel",
        "metadata": {"name": "quantity-edge"},
        "spec": {
            "vendor": "NVIDIA",
            "memory": value,
            "tflops": {"fp8": value},
            "source": "edge",
        },
    }
    offline = _offline_paths(validation.validate_document(doc))
    try:
        _dry_run_create(custom, doc)
        server: set[str] = set()
    except ApiException as exc:
        server, _ = _server_paths(exc)
    assert server == offline


# --- the status subresource ------------------------------------------------------------


def _write_status(
    api: client.CustomObjectsApi, plural: str, name: str, status: dict[str, Any]
) -> dict[str, Any]:
    current = api.get_cluster_custom_object(GROUP, VERSION, plural, name)
    current["status"] = status
    result: dict[str, Any] = api.replace_cluster_custom_object_status(
        GROUP, VERSION, plural, name, current, field_validation="Strict"
    )
    return result


@pytest.mark.parametrize(
    "path", sorted((CASES / "invalid_status").glob("*.yaml")), ids=lambda p: p.stem
)
def test_status_subresource_rejects_status_that_breaks_the_schema(
    custom: client.CustomObjectsApi, stored: list[tuple[str, str]], path: Path
) -> None:
    doc = yaml.safe_load(path.read_text())
    expected = _expected(path)
    assert _offline_paths(validation.validate_status(doc)) == expected
    # Written with the object itself, status is ignored (the subresource owns it).
    assert validation.validate_document({k: v for k, v in doc.items() if k != "status"}) == []

    name = _unique(doc["metadata"]["name"])
    body = {**doc, "metadata": {"name": name}}
    created = _create(custom, stored, {k: v for k, v in body.items() if k != "status"})
    assert "status" not in created

    with pytest.raises(ApiException) as caught:
        _write_status(custom, PLURALS[doc["kind"]], name, doc["status"])
    server, message = _server_paths(caught.value)
    assert server == expected, message


def test_status_subresource_accepts_the_model_and_round_trips(
    custom: client.CustomObjectsApi, stored: list[tuple[str, str]]
) -> None:
    name = _unique("status-roundtrip")
    _create(
        custom,
        stored,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ComputeProvider",
            "metadata": {"name": name},
            "spec": {
                "region": "east-china",
                "source": {"static": {"resources": {"cpu": "64", "nvidia.com/gpu": "8"}}},
            },
        },
    )
    status = ComputeProviderStatus(
        observed_generation=1,
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Ready",
                message="collected",
                last_transition_time=datetime(2025, 5, 1, 8, 0, tzinfo=UTC),
            )
        ],
        capacity={"cpu": Decimal(64), "memory": Decimal(512 * 2**30), "nvidia.com/gpu": Decimal(8)},
        allocatable={"cpu": Decimal("63.5"), "nvidia.com/gpu": Decimal(8)},
        accelerators=[
            ProviderAcceleratorStatus(
                model="NVIDIA-A100-SXM4-80GB",
                resource_name="nvidia.com/gpu",
                count=8,
                allocated=2,
                available=6,
            )
        ],
        accelerator_count=8,
        compute_power={"fp16": Decimal("2496"), "fp64": Decimal("156")},
        pool="ai-training",
    )
    wire = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert (
        validation.validate_status(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ComputeProvider",
                "metadata": {"name": name},
                "spec": {"region": "east-china", "source": {"static": {"resources": {"cpu": 1}}}},
                "status": wire,
            }
        )
        == []
    )
    written = _write_status(custom, "computeproviders", name, wire)
    assert written["status"] == wire
    assert ComputeProviderStatus.model_validate(written["status"]) == status
    assert wire["allocatable"] == {"cpu": "63500m", "nvidia.com/gpu": "8"}
    assert wire["capacity"]["memory"] == "512Gi"
