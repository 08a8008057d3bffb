"""A pool's status from its claimed providers: sums, breakdowns, Ready and Degraded."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fedcompute import quantities
from fedcompute.api.common import find_condition
from fedcompute.api.pool import Reason, RegionPool, RegionPoolStatus
from fedcompute.api.provider import ComputeProvider
from fedcompute.api.provider import Reason as ProviderReason
from fedcompute.capacity.claims import Claim
from fedcompute.capacity.inventory import AcceleratorInventory
from fedcompute.capacity.providers import ProviderView, plan_provider
from fedcompute.capacity.rollup import plan_pool

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"


def q(values: Mapping[str, str | int]) -> dict[str, Decimal]:
    return quantities.parse_map(values)


# --- builders ------------------------------------------------------------------------------


def pool(
    *, min_ready: int = 1, paused: bool = False, status: dict[str, Any] | None = None
) -> RegionPool:
    body: dict[str, Any] = {
        "metadata": {"name": "main", "generation": 2},
        "spec": {"regions": ["east", "west"], "minReadyProviders": min_ready, "paused": paused},
    }
    if status is not None:
        body["status"] = status
    return RegionPool.model_validate(body)


def view(
    name: str,
    *,
    region: str = "east",
    ready: bool = True,
    schedulable: bool = True,
    cpu: str = "10",
    used: str = "2",
    devices: tuple[AcceleratorInventory, ...] = (),
    power: dict[str, str] | None = None,
) -> ProviderView:
    capacity = q({"cpu": cpu})
    allocated = q({"cpu": used})
    return ProviderView(
        name=name,
        region=region,
        ready=ready,
        offered=ready and schedulable,
        claim=Claim("main", 0),
        status_wire={},
        capacity=capacity,
        allocatable=dict(capacity),
        allocated=allocated,
        available=quantities.subtract(capacity, allocated),
        accelerators=devices,
        compute_power=q(power or {}),
        ready_reason="Fresh" if ready else "Stale",
    )


def gpus(model: str, allocatable: int, available: int) -> AcceleratorInventory:
    return AcceleratorInventory(model, GPU, 1, allocatable, allocatable, 0, available)


def condition(status: RegionPoolStatus, type_: str) -> tuple[str, str, str]:
    found = find_condition(status.conditions, type_)
    assert found is not None
    return (found.status, found.reason, found.message)


# --- figures -------------------------------------------------------------------------------


def test_capacity_counts_every_claimed_provider_the_rest_only_offered_ones() -> None:
    views = [
        view("offered", cpu="10", used="2", power={"fp16": "100"}),
        view("cordoned", cpu="20", used="5", schedulable=False, power={"fp16": "1000"}),
        view("stale", region="west", cpu="40", used="1", ready=False, power={"fp16": "7"}),
    ]
    status = plan_pool(pool(), views, nodes=3, now=T0)
    assert status.capacity == q({"cpu": "70"})
    assert status.allocatable == q({"cpu": "10"})
    assert status.allocated == q({"cpu": "2"})
    assert status.available == q({"cpu": "8"})
    assert status.to_wire()["computePower"] == {"fp16": "100"}
    assert status.nodes == 3
    assert status.providers is not None
    assert (status.providers.total, status.providers.ready) == (3, 2)


def test_sums_add_across_offered_providers_and_resources() -> None:
    a = view("a", cpu="8", used="1", power={"fp64": "1.5", "fp16": "10"})
    b = view("b", cpu="500m", used="250m", power={"fp16": "2.25"})
    status = plan_pool(pool(), [a, b], nodes=2, now=T0)
    assert status.to_wire()["allocatable"] == {"cpu": "8500m"}
    assert status.to_wire()["available"] == {"cpu": "7250m"}
    assert status.to_wire()["computePower"] == {"fp64": "1.5", "fp16": "12.25"}


def test_regions_breakdown_sorted_with_offered_figures_only() -> None:
    views = [
        view("w1", region="west", cpu="4", used="1"),
        view("e1", region="east", cpu="10", used="3"),
        view("e2", region="east", cpu="6", used="0", ready=False),
        view("e3", region="east", cpu="2", used="0", schedulable=False),
    ]
    status = plan_pool(pool(), views, nodes=4, now=T0)
    assert status.to_wire()["regions"] == [
        {
            "name": "east",
            "providers": 3,
            "readyProviders": 2,
            "allocatable": {"cpu": "10"},
            "available": {"cpu": "7"},
        },
        {
            "name": "west",
            "providers": 1,
            "readyProviders": 1,
            "allocatable": {"cpu": "4"},
            "available": {"cpu": "3"},
        },
    ]


def test_accelerators_per_model_over_offered_providers() -> None:
    views = [
        view("a", devices=(gpus("H100", 8, 5), gpus("A100", 4, 4))),
        view("b", devices=(gpus("H100", 2, 0),)),
        view("off", devices=(gpus("H100", 100, 100),), schedulable=False),
        view("down", devices=(gpus("L40", 16, 16),), ready=False),
    ]
    status = plan_pool(pool(), views, nodes=4, now=T0)
    # allocated in these views is 0 (gpus() leaves it so): the pool sums what they say.
    assert status.to_wire()["accelerators"] == [
        {"model": "A100", "count": 4, "allocated": 0, "available": 4},
        {"model": "H100", "count": 10, "allocated": 0, "available": 5},
    ]
    assert status.accelerator_count == 14


def test_empty_pool_has_no_breakdowns() -> None:
    status = plan_pool(pool(min_ready=0), [], nodes=0, now=T0)
    wire = status.to_wire()
    assert wire["capacity"] == {}
    assert wire["allocatable"] == {}
    for key in ("regions", "accelerators", "computePower"):
        assert key not in wire
    assert wire["acceleratorCount"] == 0
    assert wire["providers"] == {"total": 0, "ready": 0}


# --- Ready ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("readiness", "minimum", "expected"),
    [
        pytest.param([], 1, ("False", Reason.NO_PROVIDERS, "no provider is claimed"), id="none"),
        pytest.param(
            [],
            0,
            ("True", Reason.ENOUGH_PROVIDERS_READY, "0 of 0 providers Ready (minimum 0)"),
            id="none-needed-none-claimed",
        ),
        pytest.param(
            [False, False],
            0,
            ("True", Reason.ENOUGH_PROVIDERS_READY, "0 of 2 providers Ready (minimum 0)"),
            id="none-needed-none-ready",
        ),
        pytest.param(
            [True],
            1,
            ("True", Reason.ENOUGH_PROVIDERS_READY, "1 of 1 providers Ready (minimum 1)"),
            id="one-of-one",
        ),
        pytest.param(
            [True, False],
            2,
            ("False", Reason.NOT_ENOUGH_PROVIDERS_READY, "1 of 2 providers Ready, 2 needed"),
            id="short-by-one",
        ),
        pytest.param(
            [True, True, False],
            2,
            ("True", Reason.ENOUGH_PROVIDERS_READY, "2 of 3 providers Ready (minimum 2)"),
            id="exactly-enough",
        ),
        pytest.param(
            [True],
            3,
            ("False", Reason.NOT_ENOUGH_PROVIDERS_READY, "1 of 1 providers Ready, 3 needed"),
            id="minimum-above-claimed",
        ),
    ],
)
def test_ready_against_min_ready_providers(
    readiness: list[bool], minimum: int, expected: tuple[str, str, str]
) -> None:
    views = [view(f"p{i}", ready=r) for i, r in enumerate(readiness)]
    status = plan_pool(pool(min_ready=minimum), views, nodes=len(views), now=T0)
    assert condition(status, "Ready") == expected


def test_ready_counts_unschedulable_providers_that_are_ready() -> None:
    views = [view("a", schedulable=False), view("b", schedulable=False)]
    status = plan_pool(pool(min_ready=2), views, nodes=2, now=T0)
    assert condition(status, "Ready")[0] == "True"
    assert condition(status, "Degraded")[0] == "False"


@pytest.mark.parametrize(
    ("views", "minimum", "message"),
    [
        pytest.param([], 1, "no provider is claimed (paused: nodes are not updated)", id="none"),
        pytest.param(
            [view("a")],
            1,
            "1 of 1 providers Ready (minimum 1) (paused: nodes are not updated)",
            id="ready",
        ),
        pytest.param(
            [view("a", ready=False)],
            1,
            "0 of 1 providers Ready, 1 needed (paused: nodes are not updated)",
            id="not-ready",
        ),
    ],
)
def test_paused_pool_says_so_in_ready_message(
    views: list[ProviderView], minimum: int, message: str
) -> None:
    status = plan_pool(pool(min_ready=minimum, paused=True), views, nodes=0, now=T0)
    assert condition(status, "Ready")[2] == message
    unpaused = plan_pool(pool(min_ready=minimum), views, nodes=0, now=T0)
    assert "paused" not in condition(unpaused, "Ready")[2]


# --- Degraded ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("readiness", "expected"),
    [
        pytest.param([], ("False", Reason.ALL_PROVIDERS_READY, ""), id="empty"),
        pytest.param([True, True], ("False", Reason.ALL_PROVIDERS_READY, ""), id="all-ready"),
        pytest.param(
            [True, False],
            ("True", Reason.PROVIDERS_NOT_READY, "1 provider not Ready: p1"),
            id="one-down",
        ),
        pytest.param(
            [False] * 7,
            (
                "True",
                Reason.PROVIDERS_NOT_READY,
                "7 providers not Ready: p0, p1, p2, p3, p4 and 2 more",
            ),
            id="list-truncated",
        ),
        pytest.param(
            [False] * 5,
            ("True", Reason.PROVIDERS_NOT_READY, "5 providers not Ready: p0, p1, p2, p3, p4"),
            id="five-listed-in-full",
        ),
    ],
)
def test_degraded_when_any_claimed_provider_is_not_ready(
    readiness: list[bool], expected: tuple[str, str, str]
) -> None:
    views = [view(f"p{i}", ready=r) for i, r in enumerate(readiness)]
    status = plan_pool(pool(min_ready=0), views, nodes=0, now=T0)
    assert condition(status, "Degraded") == expected


# --- conditions over time ------------------------------------------------------------------


def test_conditions_ordered_with_generation_and_transition_times_kept() -> None:
    first = plan_pool(pool(), [view("a")], nodes=1, now=T0)
    assert [c.type for c in first.conditions or []] == [
        "Ready",
        "Degraded",
        "Reconciling",
        "Stalled",
    ]
    assert {c.observed_generation for c in first.conditions or []} == {2}
    assert first.observed_generation == 2

    later = T0 + timedelta(minutes=5)
    again = plan_pool(pool(status=first.to_wire()), [view("a"), view("b")], nodes=2, now=later)
    ready = find_condition(again.conditions, "Ready")
    assert ready is not None
    assert ready.message == "2 of 2 providers Ready (minimum 1)"
    assert ready.last_transition_time == T0

    down = T0 + timedelta(minutes=9)
    third = plan_pool(
        pool(status=again.to_wire()), [view("a"), view("b", ready=False)], nodes=2, now=down
    )
    degraded = find_condition(third.conditions, "Degraded")
    ready = find_condition(third.conditions, "Ready")
    assert degraded is not None and ready is not None
    assert (degraded.status, degraded.last_transition_time) == ("True", down)
    assert (ready.status, ready.last_transition_time) == ("True", T0)


# --- from real provider plans --------------------------------------------------------------


def test_rollup_of_planned_static_providers() -> None:
    def static(name: str, region: str, cpu: str, unschedulable: bool) -> ComputeProvider:
        return ComputeProvider.model_validate(
            {
                "metadata": {"name": name},
                "spec": {
                    "region": region,
                    "unschedulable": unschedulable,
                    "reserved": {"cpu": "1"},
                    "source": {
                        "static": {
                            "resources": {"cpu": cpu, GPU: "4"},
                            "accelerators": [
                                {"model": "A100", "count": 4, "tflopsPerDevice": {"fp64": "9.7"}}
                            ],
                        }
                    },
                },
            }
        )

    claim = Claim("main", 0)
    views = [
        plan_provider(static("a", "east", "16", False), collection=None, claim=claim, now=T0),
        plan_provider(static("b", "west", "32", True), collection=None, claim=claim, now=T0),
    ]
    assert views[0].ready_reason == ProviderReason.STATIC_INVENTORY
    status = plan_pool(pool(), views, nodes=2, now=T0)
    wire = status.to_wire()
    assert wire["capacity"] == {"cpu": "48", GPU: "8"}
    assert wire["allocatable"] == {"cpu": "15", GPU: "4"}
    assert wire["computePower"] == {"fp64": "38.8"}
    # The vendor comes from the resource name (nvidia.com/gpu); static slots are absent
    # without devicesPerNode.
    assert wire["accelerators"] == [
        {"model": "A100", "vendor": "NVIDIA", "count": 4, "allocated": 0, "available": 4}
    ]
