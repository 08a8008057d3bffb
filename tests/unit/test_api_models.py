"""The API models: wire form, defaults, quantities, durations, selectors and conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from fedcompute.api import accelerator, common, pool, provider
from fedcompute.api.accelerator import AcceleratorModel
from fedcompute.api.common import (
    Condition,
    LabelSelector,
    LabelSelectorRequirement,
    format_duration,
    parse_duration,
    set_condition,
)
from fedcompute.api.pool import RegionPool, RegionPoolSpec, RegionPoolStatus
from fedcompute.api.provider import ComputeProvider, ComputeProviderSpec, ComputeProviderStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _examples(kind: str) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == kind]
    return docs


# --- wire form and defaults ------------------------------------------------------------


def test_spec_defaults_and_camel_case_aliases() -> None:
    spec = ComputeProviderSpec.model_validate(
        {
            "region": "east-china",
            "displayName": "Lingang",
            "source": {"kubernetes": {"kubeconfigSecretRef": {"name": "member"}}},
        }
    )
    assert spec.display_name == "Lingang"
    assert spec.unschedulable is False
    assert (spec.monitoring.interval, spec.monitoring.timeout) == (30.0, 10.0)
    assert spec.monitoring.stale_after == 180.0
    kube = spec.source.kubernetes
    assert kube is not None
    assert kube.kubeconfig_secret_ref.key == "kubeconfig"
    # Unset means "the vendor table" (every vendor's resources and labels), not NVIDIA's.
    assert kube.accelerator_model_label is None
    assert kube.accelerator_resources is None
    assert spec.to_wire()["monitoring"] == {"interval": "30s", "timeout": "10s", "staleAfter": "3m"}
    assert spec.to_wire()["source"]["kubernetes"] == {
        "kubeconfigSecretRef": {"name": "member", "key": "kubeconfig"}
    }


def test_old_accelerator_defaults_written_out_are_kept_as_written() -> None:
    """Objects created under the old CRD defaults still carry them; the model keeps them
    (the classifier, not the API, reads them as "unset")."""
    spec = ComputeProviderSpec.model_validate(
        {
            "region": "east-china",
            "source": {
                "kubernetes": {
                    "kubeconfigSecretRef": {"name": "member"},
                    "acceleratorModelLabel": "nvidia.com/gpu.product",
                    "acceleratorResources": ["nvidia.com/gpu"],
                }
            },
        }
    )
    kube = spec.source.kubernetes
    assert kube is not None
    assert kube.accelerator_model_label == "nvidia.com/gpu.product"
    assert kube.accelerator_resources == ["nvidia.com/gpu"]
    assert spec.to_wire()["source"]["kubernetes"]["acceleratorResources"] == ["nvidia.com/gpu"]


@pytest.mark.parametrize(
    ("per_node", "valid"), [(None, True), (1, True), (1024, True), (0, False), (1025, False)]
)
def test_static_devices_per_node_bounds(per_node: int | None, valid: bool) -> None:
    body: dict[str, Any] = {"model": "NVIDIA-H100-80GB-HBM3", "count": 16}
    if per_node is not None:
        body["devicesPerNode"] = per_node
    if not valid:
        with pytest.raises(pydantic.ValidationError):
            provider.StaticAccelerator.model_validate(body)
        return
    parsed = provider.StaticAccelerator.model_validate(body)
    assert parsed.devices_per_node == per_node
    assert ("devicesPerNode" in parsed.to_wire()) is (per_node is not None)


def test_accelerator_status_wire_form() -> None:
    wire = {
        "model": "unknown-nvidia",
        "vendor": "NVIDIA",
        "resourceName": "nvidia.com/gpu",
        "resourceNames": ["gpu.nvidia.com", "nvidia.com/gpu"],
        "capacity": 10,
        "count": 8,
        "allocated": 3,
        "available": 5,
        "unhealthy": 2,
        "slots": {"1": 5, "2": 2, "4": 1, "8": 0, "16": 0},
        "modelUnknown": True,
    }
    parsed = provider.ProviderAcceleratorStatus.model_validate(wire)
    assert (parsed.capacity, parsed.unhealthy, parsed.model_unknown) == (10, 2, True)
    assert parsed.to_wire() == wire
    # The new fields are optional: an entry written before them still reads.
    old = {"model": "A100", "resourceName": "nvidia.com/gpu", "count": 4}
    assert provider.ProviderAcceleratorStatus.model_validate(old).to_wire() == {
        **old,
        "allocated": 0,
        "available": 0,
    }
    with pytest.raises(pydantic.ValidationError):
        provider.ProviderAcceleratorStatus.model_validate({**wire, "slots": {"1": -1}})
    with pytest.raises(pydantic.ValidationError):
        provider.ProviderAcceleratorStatus.model_validate(
            {**wire, "slots": {str(k): 1 for k in (1, 2, 4, 8, 16, 32)}}
        )


def test_python_names_are_accepted_too() -> None:
    spec = RegionPoolSpec(regions=["east-china"], min_ready_providers=2)
    assert spec.to_wire() == {
        "regions": ["east-china"],
        "priority": 0,
        "minReadyProviders": 2,
        "paused": False,
    }


def test_unknown_fields_are_rejected_by_the_models() -> None:
    with pytest.raises(pydantic.ValidationError):
        RegionPoolSpec.model_validate({"regions": ["a"], "region": "a"})


@pytest.mark.parametrize("doc", _examples("ComputeProvider"), ids=lambda d: d["metadata"]["name"])
def test_example_providers_round_trip(doc: dict[str, Any]) -> None:
    parsed = ComputeProvider.model_validate(doc)
    again = ComputeProvider.model_validate(parsed.to_wire())
    assert again == parsed
    assert parsed.node_name == f"fc-{doc['metadata']['name']}"
    assert len(parsed.node_name) <= 63


@pytest.mark.parametrize("doc", _examples("RegionPool"), ids=lambda d: d["metadata"]["name"])
def test_example_pools_round_trip(doc: dict[str, Any]) -> None:
    parsed = RegionPool.model_validate(doc)
    assert RegionPool.model_validate(parsed.to_wire()) == parsed


@pytest.mark.parametrize("doc", _examples("AcceleratorModel"), ids=lambda d: d["metadata"]["name"])
def test_example_accelerator_models_round_trip(doc: dict[str, Any]) -> None:
    parsed = AcceleratorModel.model_validate(doc)
    assert AcceleratorModel.model_validate(parsed.to_wire()) == parsed
    assert parsed.spec.source.strip()


def test_accelerator_model_wire_form() -> None:
    parsed = AcceleratorModel.model_validate(
        {
            "apiVersion": "fedcompute.io/v1alpha1",
            "kind": "AcceleratorModel",
            "metadata": {"name": "nvidia-h100-80gb-hbm3"},
            "spec": {
                "vendor": "NVIDIA",
                "aliases": ["NVIDIA H100 80GB HBM3"],
                "memory": 85899345920,
                "tflops": {"fp16": "989500m", "fp8": 1979},
                "source": "datasheet",
            },
        }
    )
    assert parsed.name == "nvidia-h100-80gb-hbm3"
    assert parsed.spec.memory == Decimal(80 * 2**30)
    assert parsed.spec.tflops is not None
    assert parsed.spec.tflops.as_dict() == {"fp16": Decimal("989.5"), "fp8": Decimal(1979)}
    assert parsed.to_wire()["spec"] == {
        "vendor": "NVIDIA",
        "aliases": ["NVIDIA H100 80GB HBM3"],
        "memory": "80Gi",
        "tflops": {"fp16": "989.5", "fp8": "1979"},
        "source": "datasheet",
    }
    assert (accelerator.KIND, accelerator.PLURAL, accelerator.SHORT_NAMES) == (
        "AcceleratorModel",
        "acceleratormodels",
        ("accmodel",),
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"vendor": "NVIDIA"},
        {"vendor": "NVIDIA", "source": ""},
        {"vendor": "", "source": "x"},
        {"vendor": "NVIDIA", "source": "x", "memory": "8Ei"},
        {"vendor": "NVIDIA", "source": "x", "tflops": {"fp4": "1"}},
        {"vendor": "NVIDIA", "source": "x", "aliases": ["a"] * 17},
        {"vendor": "NVIDIA", "source": "x", "aliases": ["tab\there"]},
        {"vendor": "NVIDIA", "source": "x", "colour": "green"},
    ],
)
def test_accelerator_model_refuses_what_the_crd_refuses(spec: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        accelerator.AcceleratorModelSpec.model_validate(spec)


def test_examples_form_a_national_platform() -> None:
    providers = [ComputeProvider.model_validate(d) for d in _examples("ComputeProvider")]
    pools = [RegionPool.model_validate(d) for d in _examples("RegionPool")]
    assert len({p.spec.region for p in providers}) >= 3
    assert len(providers) >= 6 and len(pools) >= 3
    static = [p for p in providers if p.spec.source.static is not None]
    member = [p for p in providers if p.spec.source.kubernetes is not None]
    assert static and member
    models = {a.model for p in static for a in p.spec.source.static.accelerators or []}  # type: ignore[union-attr]
    assert {"NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "Ascend-910B"} <= models

    def selecting(p: ComputeProvider) -> list[RegionPool]:
        labels = p.metadata.labels or {}
        return [q for q in pools if q.spec.selects(region=p.spec.region, labels=labels)]

    contested = [p for p in providers if len(selecting(p)) > 1]
    assert [p.name for p in contested] == ["shanghai-telecom-ai-cloud"]
    winner = max(
        selecting(contested[0]), key=lambda q: (q.spec.priority, [-ord(c) for c in q.name])
    )
    assert winner.name == "ai-training"
    assert all(selecting(p) for p in providers), "every example provider belongs to a pool"


# --- quantities ------------------------------------------------------------------------


def test_quantities_parse_to_decimals_and_dump_canonically() -> None:
    static = provider.StaticSource.model_validate(
        {
            "resources": {"cpu": "1500m", "memory": "1.5Ti", "nvidia.com/gpu": 8},
            "accelerators": [
                {
                    "model": "NVIDIA-A100-SXM4-80GB",
                    "count": 8,
                    "memoryPerDevice": "80Gi",
                    "tflopsPerDevice": {"fp64": "19.5", "fp16": 312},
                }
            ],
        }
    )
    assert static.resources == {
        "cpu": Decimal("1.5"),
        "memory": Decimal(3 * 2**39),
        "nvidia.com/gpu": Decimal(8),
    }
    wire = static.to_wire()
    assert wire["resources"] == {"cpu": "1500m", "memory": "1536Gi", "nvidia.com/gpu": "8"}
    accelerator = wire["accelerators"][0]
    assert accelerator["memoryPerDevice"] == "80Gi"
    assert accelerator["resourceName"] == "nvidia.com/gpu"
    assert accelerator["tflopsPerDevice"] == {"fp64": "19.5", "fp16": "312"}


@pytest.mark.parametrize("bad", ["-1", -4, "lots", True, 1.5j])
def test_models_reject_bad_quantities(bad: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        provider.StaticSource.model_validate({"resources": {"cpu": bad}})


def test_tflops_map_helpers() -> None:
    power = common.TflopsByPrecision.from_dict({"fp16": Decimal("989.4"), "int8": Decimal(1979)})
    assert power.as_dict() == {"fp16": Decimal("989.4"), "int8": Decimal(1979)}
    assert power.to_wire() == {"fp16": "989.4", "int8": "1979"}
    with pytest.raises(pydantic.ValidationError):
        common.TflopsByPrecision.from_dict({"fp4": Decimal(1)})


_ABOVE = "larger than 9223372036854775807 \\(2\\^63-1\\)"


@pytest.mark.parametrize(
    "doc",
    [
        {"resources": {"cpu": "8Ei"}},
        {"resources": {"cpu": "1e999999999"}},
        {"resources": {"cpu": 2**63}},
        {"resources": {"cpu": Decimal(2**63)}},
        {
            "resources": {"cpu": 8},
            "accelerators": [{"model": "m", "count": 1, "memoryPerDevice": "16Ei"}],
        },
        {
            "resources": {"cpu": 8},
            "accelerators": [{"model": "m", "count": 1, "tflopsPerDevice": {"fp8": "1e19"}}],
        },
    ],
)
def test_declared_quantities_above_the_limit_are_refused_naming_it(doc: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError, match=_ABOVE):
        provider.StaticSource.model_validate(doc)


def test_declared_quantities_at_the_limit_pass() -> None:
    source = provider.StaticSource.model_validate(
        {"resources": {"cpu": "9223372036854775807", "memory": "7.99999Ei", "x.io/y": "0.1n"}}
    )
    assert source.resources["cpu"] == 2**63 - 1
    assert source.resources["x.io/y"] == Decimal("1e-9")
    with pytest.raises(pydantic.ValidationError, match=_ABOVE):
        ComputeProviderSpec.model_validate(
            {
                "region": "r",
                "source": {"static": {"resources": {"cpu": 1}}},
                "reserved": {"cpu": "10E"},
            }
        )


def test_status_sums_may_exceed_the_limit_and_are_written_capped() -> None:
    huge = Decimal(2**63) * 1000
    status = ComputeProviderStatus(capacity={"memory": huge}, compute_power={"fp8": huge})
    assert status.capacity == {"memory": huge}
    wire = status.to_wire()
    assert wire["capacity"] == {"memory": "9223372036854775807"}
    assert wire["computePower"] == {"fp8": "9223372036854775807"}
    # Read back (or written by someone else), a status figure above the limit is capped.
    read = ComputeProviderStatus.model_validate({"capacity": {"memory": "8Ei", "cpu": 2**64}})
    assert read.capacity == {"memory": Decimal(2**63 - 1), "cpu": Decimal(2**63 - 1)}
    with pytest.raises(pydantic.ValidationError):
        ComputeProviderStatus(capacity={"cpu": Decimal("NaN")})


def test_nonnegative_pattern_is_the_shared_quantity_grammar_without_sign() -> None:
    from fedcompute import quantities

    without_sign = quantities.QUANTITY_PATTERN.replace(r"^(\+|-)?", "^", 1)
    assert without_sign == common.NONNEGATIVE_QUANTITY_PATTERN


# --- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("3m", 180.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("2m0.5s", 120.5),
        ("1h0m0s", 3600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "30", "5d", "1 h", "-5s", "30S"])
def test_parse_duration_rejects_what_the_crd_pattern_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "30s"),
        (180, "3m"),
        (5400, "1h30m"),
        (0.5, "500ms"),
        (0, "0s"),
        (3661.25, "1h1m1s250ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# --- label selectors -------------------------------------------------------------------

LABELS = {"tier": "gold", "region": "east-china", "gpu": ""}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, True),
        ({"matchLabels": {"tier": "gold"}}, True),
        ({"matchLabels": {"tier": "silver"}}, False),
        ({"matchLabels": {"missing": ""}}, False),
        ({"matchLabels": {"gpu": ""}}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "x"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}, True),
        ({"matchExpressions": [{"key": "nope", "operator": "NotIn", "values": ["x"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "nope", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "nope", "operator": "DoesNotExist"}]}, True),
        (
            {
                "matchLabels": {"tier": "gold"},
                "matchExpressions": [{"key": "region", "operator": "DoesNotExist"}],
            },
            False,
        ),
    ],
)
def test_label_selector_matches(selector: dict[str, Any], expected: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(LABELS) is expected


def test_empty_selector_matches_unlabelled_objects() -> None:
    assert LabelSelector().matches(None)
    requirement = LabelSelectorRequirement(key="a", operator="DoesNotExist")
    assert requirement.matches({})


def test_pool_selects_by_region_and_labels() -> None:
    both = RegionPoolSpec.model_validate(
        {"regions": ["east-china"], "providerSelector": {"matchLabels": {"tier": "gold"}}}
    )
    assert both.selects(region="east-china", labels={"tier": "gold"})
    assert not both.selects(region="west-china", labels={"tier": "gold"})
    assert not both.selects(region="east-china", labels={})
    everything = RegionPoolSpec.model_validate({"providerSelector": {}})
    assert everything.selects(region="anywhere", labels=None)
    assert not RegionPoolSpec().selects(region="east-china", labels={})


# --- conditions and status -------------------------------------------------------------

T0 = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)


def test_set_condition_keeps_transition_time_while_status_holds() -> None:
    first = set_condition(None, type_="Ready", status="False", reason="NotCollected", now=T0)
    assert first[0].last_transition_time == T0
    later = T0 + timedelta(minutes=5)
    same = set_condition(
        first, type_="Ready", status="False", reason="Stale", message="old", now=later
    )
    assert same[0].last_transition_time == T0 and same[0].reason == "Stale"
    flipped = set_condition(same, type_="Ready", status="True", reason="Ready", now=later)
    assert flipped[0].last_transition_time == later
    more = set_condition(flipped, type_="Claimed", status="True", reason="ClaimedByPool", now=later)
    assert [c.type for c in more] == ["Ready", "Claimed"]
    assert common.find_condition(more, "Claimed") is more[1]
    assert common.find_condition(more, "Collected") is None


def test_condition_wire_form_is_metav1_shaped() -> None:
    condition = Condition(
        type=provider.ConditionType.READY,
        status=common.TRUE,
        reason=provider.Reason.FRESH,
        last_transition_time=datetime(2025, 1, 1, 8, 0, 0, 123456, tzinfo=UTC),
        observed_generation=3,
    )
    assert condition.to_wire() == {
        "type": "Ready",
        "status": "True",
        "observedGeneration": 3,
        "lastTransitionTime": "2025-01-01T08:00:00Z",
        "reason": "Fresh",
        "message": "",
    }
    parsed = Condition.model_validate(condition.to_wire())
    assert parsed.last_transition_time.tzinfo is not None


def test_empty_status_dumps_to_nothing_and_fills_in() -> None:
    assert ComputeProviderStatus().to_wire() == {}
    assert RegionPoolStatus().to_wire() == {}
    status = RegionPoolStatus(
        observed_generation=2,
        providers=common.ReadyCount(total=3, ready=2),
        allocatable={"cpu": Decimal(128), "memory": Decimal(2**40)},
        regions=[pool.RegionStatus(name="east-china", providers=3, ready_providers=2)],
        nodes=3,
    )
    assert status.model_dump(by_alias=True, exclude_none=True, mode="json") == {
        "observedGeneration": 2,
        "providers": {"total": 3, "ready": 2},
        "allocatable": {"cpu": "128", "memory": "1Ti"},
        "regions": [{"name": "east-china", "providers": 3, "readyProviders": 2}],
        "nodes": 3,
    }


def test_condition_type_and_reason_constants_are_valid_values() -> None:
    for holder in (provider.ConditionType, pool.ConditionType):
        for name in dir(holder):
            if name.isupper():
                Condition(
                    type=getattr(holder, name),
                    status="Unknown",
                    reason="Probe",
                    last_transition_time=T0,
                )
    for reasons in (provider.Reason, pool.Reason):
        for name in dir(reasons):
            if name.isupper():
                Condition(
                    type="Ready",
                    status="True",
                    reason=getattr(reasons, name),
                    last_transition_time=T0,
                )
