"""One provider's desired status: static and member sources, freshness, claims, stability."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fedcompute import quantities
from fedcompute.api.common import find_condition
from fedcompute.api.provider import ComputeProvider, ComputeProviderStatus, Reason
from fedcompute.capacity import inventory
from fedcompute.capacity.claims import Claim
from fedcompute.capacity.inventory import AcceleratorInventory, MemberInventory
from fedcompute.capacity.providers import (
    Collection,
    ProviderView,
    builtin_catalog,
    compute_power,
    plan_provider,
    resumed_collection,
    static_inventory,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
STALE_AFTER = 180  # the default, 3m
GPU = "nvidia.com/gpu"


def q(values: Mapping[str, str | int]) -> dict[str, Decimal]:
    return quantities.parse_map(values)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- builders ------------------------------------------------------------------------------


def static_provider(
    *,
    resources: dict[str, str] | None = None,
    accelerators: list[dict[str, Any]] | None = None,
    reserved: dict[str, str] | None = None,
    node_count: int | None = None,
    unschedulable: bool = False,
    generation: int = 1,
) -> ComputeProvider:
    static: dict[str, Any] = {"resources": resources or {"cpu": "100", "memory": "1Ti"}}
    if accelerators is not None:
        static["accelerators"] = accelerators
    if node_count is not None:
        static["nodeCount"] = node_count
    spec: dict[str, Any] = {
        "region": "east",
        "source": {"static": static},
        "unschedulable": unschedulable,
    }
    if reserved is not None:
        spec["reserved"] = reserved
    return ComputeProvider.model_validate(
        {"metadata": {"name": "hpc", "generation": generation}, "spec": spec}
    )


def member_provider(*, unschedulable: bool = False, generation: int = 1) -> ComputeProvider:
    return ComputeProvider.model_validate(
        {
            "metadata": {"name": "member", "generation": generation},
            "spec": {
                "region": "west",
                "unschedulable": unschedulable,
                "source": {"kubernetes": {"kubeconfigSecretRef": {"name": "member-kubeconfig"}}},
                "monitoring": {"interval": "30s", "timeout": "10s", "staleAfter": "3m"},
            },
        }
    )


def figures(
    *,
    cpu: str = "64",
    used_cpu: str = "4",
    nodes_total: int = 2,
    nodes_ready: int = 2,
    gpus: int = 0,
) -> MemberInventory:
    capacity = q({"cpu": cpu, "memory": "256Gi"})
    allocated = q({"cpu": used_cpu})
    devices: tuple[AcceleratorInventory, ...] = ()
    if gpus:
        capacity[GPU] = Decimal(gpus)
        allocated[GPU] = Decimal(1)
        devices = (AcceleratorInventory("A100", GPU, nodes_total, gpus, gpus, 1, gpus - 1),)
    return MemberInventory(
        capacity=capacity,
        allocatable=dict(capacity),
        allocated=allocated,
        available=quantities.subtract(capacity, allocated),
        nodes_total=nodes_total,
        nodes_ready=nodes_ready,
        nodes_counted=nodes_ready,
        accelerators=devices,
    )


def good(at_time: datetime, inv: MemberInventory | None = None) -> Collection:
    return Collection(
        inventory=inv or figures(), succeeded_at=at_time, attempted_at=at_time, generation=1
    )


def with_status(provider: ComputeProvider, status: ComputeProviderStatus) -> ComputeProvider:
    """The provider as the API would return it after the status was written."""
    return ComputeProvider.model_validate({**provider.to_wire(), "status": status.to_wire()})


def conditions(view: ProviderView) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in view.status.conditions or []}


def transition(view: ProviderView, type_: str) -> datetime:
    found = find_condition(view.status.conditions, type_)
    assert found is not None
    return found.last_transition_time


def wire(status: ComputeProviderStatus) -> str:
    return json.dumps(status.to_wire(), sort_keys=True)


CLAIM = Claim(pool="pool-a", priority=5)


# --- static providers ----------------------------------------------------------------------


def test_static_figures_subtract_reserved_and_nothing_is_allocated() -> None:
    p = static_provider(
        resources={"cpu": "100", "memory": "1Ti"}, reserved={"cpu": "10", "memory": "24Ti"}
    )
    view = plan_provider(p, collection=None, claim=CLAIM, now=T0)
    assert view.capacity == q({"cpu": "100", "memory": "1Ti"})
    # Reserved more memory than exists: clamped at zero, never negative.
    assert view.allocatable == q({"cpu": "90", "memory": "0"})
    assert view.available == view.allocatable
    assert view.allocated == {}
    assert view.status.to_wire()["allocatable"] == {"cpu": "90", "memory": "0"}


def test_static_provider_is_ready_and_collected_by_declaration() -> None:
    view = plan_provider(static_provider(node_count=12), collection=None, claim=CLAIM, now=T0)
    assert conditions(view) == {
        "Ready": ("True", Reason.STATIC_INVENTORY),
        "Collected": ("True", Reason.STATIC_INVENTORY),
        "Claimed": ("True", Reason.CLAIMED),
        "Reconciling": ("False", Reason.RECONCILED),
        "Stalled": ("False", Reason.NOT_STALLED),
    }
    assert (view.ready, view.offered) == (True, True)
    assert view.status.nodes is not None
    assert (view.status.nodes.total, view.status.nodes.ready) == (12, 12)
    assert view.status.last_collection_time == T0


def test_static_provider_ignores_any_collection() -> None:
    failed = Collection(attempted_at=T0, error_reason=Reason.UNREACHABLE, error_message="x")
    view = plan_provider(static_provider(), collection=failed, claim=None, now=T0)
    assert conditions(view)["Ready"] == ("True", Reason.STATIC_INVENTORY)
    assert conditions(view)["Collected"] == ("True", Reason.STATIC_INVENTORY)


def test_static_compute_power_is_count_times_tflops_per_device_summed_over_models() -> None:
    p = static_provider(
        resources={"cpu": "100", GPU: "27"},
        accelerators=[
            {"model": "A100", "count": 16, "tflopsPerDevice": {"fp64": "9.7", "fp16": "312"}},
            {"model": "H100", "count": 8, "tflopsPerDevice": {"fp16": "989.5"}},
            {"model": "old", "count": 3},  # no datasheet figures: adds nothing
        ],
    )
    expected = {"fp64": Decimal("155.2"), "fp16": Decimal(16 * 312 + 8 * 989.5)}
    declared = {"A100": q({"fp64": "9.7", "fp16": "312"}), "H100": q({"fp16": "989.5"})}
    devices = static_inventory(p).accelerators
    assert compute_power(devices, builtin_catalog(), declared) == (expected, 3)
    view = plan_provider(p, collection=None, claim=None, now=T0)
    assert view.compute_power == expected
    assert view.compute_power_excluded == 3
    assert view.status.to_wire()["computePower"] == {"fp64": "155.2", "fp16": "12908"}
    assert view.status.to_wire()["computePowerExcludedDevices"] == 3


def test_static_accelerators_in_status_sorted_by_model_with_their_count() -> None:
    p = static_provider(
        resources={"cpu": "100", GPU: "11"},
        accelerators=[{"model": "H100", "count": 8}, {"model": "A100", "count": 3}],
    )
    view = plan_provider(p, collection=None, claim=None, now=T0)
    assert [(a.model, a.count, a.available) for a in view.status.accelerators or []] == [
        ("A100", 3, 3),
        ("H100", 8, 8),
    ]
    assert view.status.accelerator_count == 11
    assert static_inventory(p).capacity[GPU] == Decimal(11)


def test_static_without_accelerators_has_no_compute_power() -> None:
    p = static_provider()
    view = plan_provider(p, collection=None, claim=None, now=T0)
    assert view.compute_power == {}
    assert view.compute_power_excluded == 0
    assert view.status.compute_power is None
    assert view.status.compute_power_excluded_devices is None
    assert view.status.accelerators is None
    assert view.status.accelerator_count == 0


def test_member_devices_of_a_model_without_figures_are_excluded_from_compute_power() -> None:
    """A member's figures come from the catalog only; "A100" names no catalog entry."""
    view = plan_provider(
        member_provider(), collection=good(T0, figures(gpus=8)), claim=None, now=T0
    )
    assert view.compute_power == {}
    assert view.compute_power_excluded == 8
    assert view.status.compute_power is None
    assert view.status.compute_power_excluded_devices == 8


# --- member providers: the life cycle ------------------------------------------------------

PENDING = {"Ready": ("Unknown", Reason.PENDING), "Collected": ("Unknown", Reason.PENDING)}


@pytest.mark.parametrize(
    ("collection", "now", "expected", "ready", "has_figures"),
    [
        pytest.param(None, T0, PENDING, False, False, id="never-attempted"),
        pytest.param(Collection(), T0, PENDING, False, False, id="empty-collection"),
        pytest.param(
            Collection(attempted_at=T0, error_reason=Reason.UNAUTHORIZED, error_message="401"),
            T0,
            {
                "Ready": ("False", Reason.UNAUTHORIZED),
                "Collected": ("False", Reason.UNAUTHORIZED),
            },
            False,
            False,
            id="failure-before-any-success",
        ),
        pytest.param(
            good(T0),
            at(5),
            {"Ready": ("True", Reason.FRESH), "Collected": ("True", Reason.COLLECTED)},
            True,
            True,
            id="success",
        ),
        pytest.param(
            good(T0).failed(at(60), Reason.TIMEOUT, "deadline exceeded"),
            at(60),
            {"Ready": ("True", Reason.FRESH), "Collected": ("False", Reason.TIMEOUT)},
            True,
            True,
            id="failure-after-success-within-staleAfter",
        ),
        pytest.param(
            good(T0),
            at(STALE_AFTER),
            {"Ready": ("True", Reason.FRESH), "Collected": ("True", Reason.COLLECTED)},
            True,
            True,
            id="exactly-staleAfter-still-fresh",
        ),
        pytest.param(
            good(T0).failed(at(STALE_AFTER + 1), Reason.UNREACHABLE, "no route"),
            at(STALE_AFTER + 1),
            {"Ready": ("False", Reason.STALE), "Collected": ("False", Reason.UNREACHABLE)},
            False,
            True,
            id="stale-after-failures",
        ),
        pytest.param(
            good(T0),
            at(STALE_AFTER + 1),
            {"Ready": ("False", Reason.STALE), "Collected": ("True", Reason.COLLECTED)},
            False,
            True,
            id="stale-without-new-attempt",
        ),
        pytest.param(
            good(T0, figures(nodes_total=3, nodes_ready=0)),
            at(1),
            {"Ready": ("False", Reason.NO_READY_NODES), "Collected": ("True", Reason.COLLECTED)},
            False,
            True,
            id="no-ready-nodes",
        ),
    ],
)
def test_member_life_cycle(
    collection: Collection | None,
    now: datetime,
    expected: dict[str, tuple[str, str]],
    ready: bool,
    has_figures: bool,
) -> None:
    view = plan_provider(member_provider(), collection=collection, claim=CLAIM, now=now)
    got = conditions(view)
    assert {k: got[k] for k in ("Ready", "Collected")} == expected
    assert view.ready is ready
    assert view.offered is ready
    assert view.has_figures is has_figures
    assert (view.status.capacity is not None) is has_figures
    assert view.ready_reason == expected["Ready"][1]


def test_failure_before_success_says_never_collected_with_the_error() -> None:
    c = Collection(attempted_at=T0, error_reason=Reason.UNREACHABLE, error_message="dial: refused")
    view = plan_provider(member_provider(), collection=c, claim=None, now=T0)
    ready = find_condition(view.status.conditions, "Ready")
    collected = find_condition(view.status.conditions, "Collected")
    assert ready is not None and collected is not None
    assert ready.message == "never collected: dial: refused"
    assert collected.message == "dial: refused"
    assert view.status.last_collection_time is None
    assert view.capacity == {}


def test_failure_after_success_keeps_the_last_good_figures() -> None:
    inv = figures(cpu="48", used_cpu="8")
    first = plan_provider(member_provider(), collection=good(T0, inv), claim=CLAIM, now=T0)
    failed = good(T0, inv).failed(at(30), Reason.UNREACHABLE, "timeout")
    p = with_status(member_provider(), first.status)
    view = plan_provider(p, collection=failed, claim=CLAIM, now=at(30))
    assert view.capacity == inv.capacity
    assert view.available == q({"cpu": "40", "memory": "256Gi"})
    for key in ("capacity", "allocatable", "allocated", "available", "nodes"):
        assert view.status.to_wire()[key] == first.status.to_wire()[key]
    # The figures date from the last good collection, not from the failed attempt.
    assert view.status.last_collection_time == T0


def test_stale_message_names_the_threshold_and_the_last_good_collection() -> None:
    view = plan_provider(
        member_provider(), collection=good(T0), claim=None, now=at(STALE_AFTER + 60)
    )
    assert view.ready_message == (
        "no good collection for more than 3m (last at 2025-03-01T12:00:00Z)"
    )
    # Stale figures still describe the provider: they stay in status.
    assert view.status.to_wire()["capacity"] == {"cpu": "64", "memory": "256Gi"}


def test_no_ready_nodes_message_counts_the_selected_nodes() -> None:
    inv = figures(nodes_total=3, nodes_ready=0)
    view = plan_provider(member_provider(), collection=good(T0, inv), claim=None, now=T0)
    assert view.ready_message == "none of the member's 3 selected nodes is Ready"


def test_member_figures_from_summarize_member() -> None:
    def node(name: str, ready: str, cpu: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": "H100"}},
            "status": {
                "capacity": {"cpu": cpu, GPU: "4"},
                "allocatable": {"cpu": cpu, GPU: "4"},
                "conditions": [{"type": "Ready", "status": ready}],
            },
        }

    pod = {
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "2", GPU: "1"}}}],
        },
        "status": {"phase": "Running"},
    }
    inv = inventory.summarize_member(
        [node("n1", "True", "16"), node("n2", "False", "16")],
        [pod],
        accelerator_model_label="nvidia.com/gpu.product",
        accelerator_resources=[GPU],
        reserved={},
    )
    view = plan_provider(member_provider(), collection=good(T0, inv), claim=None, now=T0)
    wire_status = view.status.to_wire()
    assert wire_status["capacity"] == {"cpu": "32", GPU: "8"}
    assert wire_status["allocatable"] == {"cpu": "16", GPU: "4"}
    assert wire_status["available"] == {"cpu": "14", GPU: "3"}
    assert wire_status["nodes"] == {"total": 2, "ready": 1}
    # The running pod counts in allocated["pods"] (its node states no pods capacity here).
    assert wire_status["allocated"] == {"cpu": "2", GPU: "1", "pods": "1"}
    # capacity counts the not-Ready node's devices too; slots only the Ready node's 3 free.
    assert wire_status["accelerators"] == [
        {
            "model": "H100",
            "vendor": "NVIDIA",
            "resourceName": GPU,
            "capacity": 8,
            "count": 4,
            "allocated": 1,
            "available": 3,
            "slots": {"1": 3, "2": 1, "4": 0, "8": 0, "16": 0},
        }
    ]
    assert wire_status["acceleratorCount"] == 4


def test_one_accelerator_entry_per_model_across_resources() -> None:
    inv = MemberInventory(
        capacity={},
        allocatable={},
        allocated={},
        available={},
        nodes_total=1,
        nodes_ready=1,
        nodes_counted=1,
        accelerators=(
            AcceleratorInventory("A100", GPU, 1, 4, 4, 1, 3),
            AcceleratorInventory("A100", "nvidia.com/mig-1g.10gb", 1, 2, 2, 0, 2),
        ),
    )
    view = plan_provider(member_provider(), collection=good(T0, inv), claim=None, now=T0)
    assert [
        (a.model, a.count, a.allocated, a.available) for a in view.status.accelerators or []
    ] == [("A100", 6, 1, 5)]
    assert view.status.accelerator_count == 6


# --- schedulability and claims -------------------------------------------------------------


@pytest.mark.parametrize("make", [static_provider, member_provider], ids=["static", "member"])
def test_unschedulable_provider_is_ready_but_not_offered(make: Any) -> None:
    view = plan_provider(make(unschedulable=True), collection=good(T0), claim=CLAIM, now=T0)
    assert view.ready is True
    assert view.offered is False
    assert conditions(view)["Ready"][0] == "True"
    # Its figures stay in the inventory.
    assert view.status.capacity


def test_claimed_provider_names_its_pool_priority_and_contenders() -> None:
    claim = Claim(pool="main", priority=7, contenders=("b", "c", "d", "e", "f", "g"))
    view = plan_provider(static_provider(), collection=None, claim=claim, now=T0)
    claimed = find_condition(view.status.conditions, "Claimed")
    assert claimed is not None
    assert (claimed.status, claimed.reason) == ("True", Reason.CLAIMED)
    # At most five contenders are named.
    assert (
        claimed.message == "claimed by RegionPool main (priority 7); also matched by b, c, d, e, f"
    )
    assert view.status.pool == "main"
    assert view.status.to_wire()["pool"] == "main"
    assert view.claim == claim


def test_claim_without_contenders_mentions_none() -> None:
    view = plan_provider(static_provider(), collection=None, claim=CLAIM, now=T0)
    claimed = find_condition(view.status.conditions, "Claimed")
    assert claimed is not None
    assert claimed.message == "claimed by RegionPool pool-a (priority 5)"


def test_unclaimed_provider_has_no_pool() -> None:
    view = plan_provider(static_provider(), collection=None, claim=None, now=T0)
    assert conditions(view)["Claimed"] == ("False", Reason.NO_MATCHING_POOL)
    assert view.status.pool is None
    assert "pool" not in view.status.to_wire()


def test_losing_the_claim_clears_status_pool() -> None:
    first = plan_provider(static_provider(), collection=None, claim=CLAIM, now=T0)
    p = with_status(static_provider(), first.status)
    view = plan_provider(p, collection=None, claim=None, now=at(10))
    assert "pool" not in view.status.to_wire()
    assert conditions(view)["Claimed"] == ("False", Reason.NO_MATCHING_POOL)
    assert transition(view, "Claimed") == at(10)


def test_conditions_are_ordered_ready_collected_claimed_and_carry_the_generation() -> None:
    view = plan_provider(static_provider(generation=4), collection=None, claim=None, now=T0)
    assert [c.type for c in view.status.conditions or []] == [
        "Ready",
        "Collected",
        "Claimed",
        "Reconciling",
        "Stalled",
    ]
    assert {c.observed_generation for c in view.status.conditions or []} == {4}
    assert view.status.observed_generation == 4


# --- transition times ----------------------------------------------------------------------


def test_transition_time_kept_while_status_holds_and_moved_when_it_changes() -> None:
    p = member_provider()
    first = plan_provider(p, collection=good(T0), claim=CLAIM, now=T0)
    assert transition(first, "Ready") == T0

    # A failed attempt: Collected flips (new time), Ready stays True (time kept).
    failed = good(T0).failed(at(40), Reason.UNREACHABLE, "down")
    second = plan_provider(with_status(p, first.status), collection=failed, claim=CLAIM, now=at(40))
    assert transition(second, "Ready") == T0
    assert transition(second, "Collected") == at(40)
    assert transition(second, "Claimed") == T0

    # Past staleAfter: Ready flips to False.
    third = plan_provider(
        with_status(p, second.status), collection=failed, claim=CLAIM, now=at(STALE_AFTER + 5)
    )
    assert conditions(third)["Ready"] == ("False", Reason.STALE)
    assert transition(third, "Ready") == at(STALE_AFTER + 5)
    assert transition(third, "Collected") == at(40)


def test_reason_change_without_status_change_keeps_transition_time() -> None:
    p = member_provider()
    c1 = Collection(attempted_at=T0, error_reason=Reason.UNREACHABLE, error_message="a")
    first = plan_provider(p, collection=c1, claim=None, now=T0)
    c2 = Collection(attempted_at=at(30), error_reason=Reason.UNAUTHORIZED, error_message="b")
    second = plan_provider(with_status(p, first.status), collection=c2, claim=None, now=at(30))
    assert conditions(second)["Ready"] == ("False", Reason.UNAUTHORIZED)
    assert transition(second, "Ready") == T0


# --- lastCollectionTime: written only together with another change -------------------------


def test_identical_figures_collected_later_give_byte_identical_status() -> None:
    p = member_provider()
    first = plan_provider(p, collection=good(T0), claim=CLAIM, now=T0)
    assert first.status.last_collection_time == T0
    again = plan_provider(
        with_status(p, first.status), collection=good(at(30)), claim=CLAIM, now=at(30)
    )
    assert wire(again.status) == wire(first.status)


def test_static_replanned_later_is_byte_identical() -> None:
    p = static_provider()
    first = plan_provider(p, collection=None, claim=CLAIM, now=T0)
    again = plan_provider(with_status(p, first.status), collection=None, claim=CLAIM, now=at(600))
    assert wire(again.status) == wire(first.status)


def test_changed_figures_move_last_collection_time() -> None:
    p = member_provider()
    first = plan_provider(p, collection=good(T0), claim=CLAIM, now=T0)
    changed = good(at(30), figures(used_cpu="10"))
    second = plan_provider(
        with_status(p, first.status), collection=changed, claim=CLAIM, now=at(30)
    )
    assert second.status.to_wire()["available"]["cpu"] == "54"
    assert second.status.last_collection_time == at(30)


def test_other_status_change_carries_the_latest_good_collection_time() -> None:
    p = member_provider()
    first = plan_provider(p, collection=good(T0), claim=CLAIM, now=T0)
    # Same figures at 30s: nothing written, time held at T0.
    held = plan_provider(
        with_status(p, first.status), collection=good(at(30)), claim=CLAIM, now=at(30)
    )
    assert held.status.last_collection_time == T0
    # A failure at 60s changes Collected: the time moves to the real last success (30s),
    # not to the failed attempt.
    failed = good(at(30)).failed(at(60), Reason.TIMEOUT, "slow")
    moved = plan_provider(with_status(p, held.status), collection=failed, claim=CLAIM, now=at(60))
    assert moved.status.last_collection_time == at(30)


def test_pending_provider_has_no_last_collection_time() -> None:
    view = plan_provider(member_provider(), collection=None, claim=None, now=T0)
    assert view.status.last_collection_time is None
    assert "lastCollectionTime" not in view.status.to_wire()


# --- a restarted operator ----------------------------------------------------------------


def test_restart_before_the_first_collection_rewrites_nothing() -> None:
    """A new process that has not collected yet leaves the previous status as it was."""
    written = plan_provider(
        member_provider(), collection=good(T0, figures(gpus=8)), claim=CLAIM, now=T0
    )
    restarted = with_status(member_provider(), written.status)
    view = plan_provider(restarted, collection=None, claim=CLAIM, now=at(90))
    assert wire(view.status) == wire(written.status)
    assert view.ready and view.offered
    assert view.available == written.available
    assert [d.model for d in view.accelerators] == ["A100"]


def test_restart_keeps_a_failing_member_failing_with_its_figures() -> None:
    first = plan_provider(member_provider(), collection=good(T0), claim=CLAIM, now=T0)
    failed = good(T0).failed(at(30), Reason.TIMEOUT, "collection took longer than 10s")
    second = plan_provider(
        with_status(member_provider(), first.status), collection=failed, claim=CLAIM, now=at(30)
    )
    view = plan_provider(
        with_status(member_provider(), second.status), collection=None, claim=CLAIM, now=at(40)
    )
    assert wire(view.status) == wire(second.status)
    assert conditions(view)["Collected"] == ("False", Reason.TIMEOUT)


def test_first_failure_after_restart_keeps_the_figures_from_status() -> None:
    written = plan_provider(member_provider(), collection=good(T0), claim=CLAIM, now=T0)
    restarted = with_status(member_provider(), written.status)
    resumed = resumed_collection(restarted, at(30))
    # Ready before the restart: counted as collected at the restart, never earlier.
    assert resumed.inventory is not None and resumed.succeeded_at == at(30)
    view = plan_provider(
        restarted,
        collection=resumed.failed(at(60), Reason.UNREACHABLE, "connection refused"),
        claim=CLAIM,
        now=at(60),
    )
    assert conditions(view)["Collected"] == ("False", Reason.UNREACHABLE)
    assert conditions(view)["Ready"] == ("True", Reason.FRESH)  # 60s < staleAfter
    for key in ("capacity", "allocatable", "allocated", "available"):
        assert view.status.to_wire()[key] == written.status.to_wire()[key]


def test_a_never_written_member_resumes_from_nothing() -> None:
    assert resumed_collection(member_provider(), T0) == Collection()
    view = plan_provider(member_provider(), collection=None, claim=CLAIM, now=T0)
    assert conditions(view)["Ready"] == ("Unknown", Reason.PENDING)


def test_after_a_restart_a_dead_member_turns_stale_within_stale_after() -> None:
    """The restart is the latest a carried figure can be from; staleAfter counts from it."""
    written = plan_provider(member_provider(), collection=good(T0), claim=CLAIM, now=T0)
    restarted = with_status(member_provider(), written.status)
    resumed = resumed_collection(restarted, at(600))
    failing = resumed.failed(at(610), Reason.UNREACHABLE, "connection refused")
    fresh = plan_provider(restarted, collection=failing, claim=CLAIM, now=at(610))
    assert conditions(fresh)["Ready"] == ("True", Reason.FRESH)
    stale = plan_provider(restarted, collection=failing, claim=CLAIM, now=at(600 + 181))
    assert conditions(stale)["Ready"] == ("False", Reason.STALE)


def test_a_future_last_collection_time_is_never_trusted() -> None:
    """Written through the status subresource by someone else: replaced, and not believed."""
    written = plan_provider(member_provider(), collection=good(T0), claim=CLAIM, now=T0)
    forged = written.status.model_copy(update={"last_collection_time": at(10**6)})
    restarted = with_status(member_provider(), forged)
    resumed = resumed_collection(restarted, at(30))
    assert resumed.succeeded_at == at(30)
    failing = resumed.failed(at(40), Reason.UNREACHABLE, "connection refused")
    view = plan_provider(restarted, collection=failing, claim=CLAIM, now=at(40))
    assert view.status.last_collection_time == at(30)
    later = plan_provider(restarted, collection=failing, claim=CLAIM, now=at(30 + 181))
    assert conditions(later)["Ready"] == ("False", Reason.STALE)


def test_a_future_last_collection_time_is_replaced_without_a_restart() -> None:
    first = plan_provider(member_provider(), collection=good(T0), claim=CLAIM, now=T0)
    forged = first.status.model_copy(update={"last_collection_time": at(10**6)})
    view = plan_provider(
        with_status(member_provider(), forged), collection=good(T0), claim=CLAIM, now=at(5)
    )
    assert view.status.last_collection_time == T0


def test_a_stale_member_stays_stale_across_a_restart() -> None:
    first = plan_provider(member_provider(), collection=good(T0), claim=CLAIM, now=T0)
    failed = good(T0).failed(at(200), Reason.TIMEOUT, "slow")
    stale = plan_provider(
        with_status(member_provider(), first.status), collection=failed, claim=CLAIM, now=at(200)
    )
    assert conditions(stale)["Ready"] == ("False", Reason.STALE)
    restarted = with_status(member_provider(), stale.status)
    view = plan_provider(restarted, collection=None, claim=CLAIM, now=at(300))
    assert wire(view.status) == wire(stale.status)
    assert not view.ready


def test_a_refused_write_makes_the_provider_not_ready() -> None:
    view = plan_provider(
        static_provider(), collection=None, claim=CLAIM, now=T0, rejected="node: too long"
    )
    assert conditions(view)["Ready"] == ("False", Reason.WRITE_REJECTED)
    assert not view.ready and not view.offered


# --- Reconciling and Stalled, as kstatus reads them -------------------------------------


@pytest.mark.parametrize(
    ("collection", "reconciling", "stalled"),
    [
        pytest.param(
            None,
            ("True", Reason.AWAITING_COLLECTION),
            ("False", Reason.NOT_STALLED),
            id="never collected",
        ),
        pytest.param(
            good(T0), ("False", Reason.RECONCILED), ("False", Reason.NOT_STALLED), id="collected"
        ),
        pytest.param(
            Collection(
                generation=1,
                attempted_at=T0,
                error_reason=Reason.INSECURE_KUBECONFIG,
                error_message="exec",
            ),
            ("False", Reason.RECONCILED),
            ("True", Reason.INSECURE_KUBECONFIG),
            id="refused kubeconfig",
        ),
        pytest.param(
            Collection(
                generation=1,
                attempted_at=T0,
                error_reason=Reason.KUBECONFIG_NOT_FOUND,
                error_message="gone",
            ),
            ("False", Reason.RECONCILED),
            ("True", Reason.KUBECONFIG_NOT_FOUND),
            id="missing Secret",
        ),
        pytest.param(
            Collection(
                generation=1,
                attempted_at=T0,
                error_reason=Reason.INVALID_KUBECONFIG,
                error_message="yaml",
            ),
            ("False", Reason.RECONCILED),
            ("True", Reason.INVALID_KUBECONFIG),
            id="invalid kubeconfig",
        ),
        pytest.param(
            Collection(
                generation=1,
                attempted_at=T0,
                error_reason=Reason.UNREACHABLE,
                error_message="refused",
            ),
            ("False", Reason.RECONCILED),
            ("False", Reason.NOT_STALLED),
            id="unreachable is not stalled",
        ),
        pytest.param(
            good(T0).failed(at(500), Reason.TIMEOUT, "slow"),
            ("False", Reason.RECONCILED),
            ("False", Reason.NOT_STALLED),
            id="stale is not stalled",
        ),
    ],
)
def test_reconciling_and_stalled(
    collection: Collection | None, reconciling: tuple[str, str], stalled: tuple[str, str]
) -> None:
    view = plan_provider(member_provider(), collection=collection, claim=CLAIM, now=at(500))
    assert conditions(view)["Reconciling"] == reconciling
    assert conditions(view)["Stalled"] == stalled
    assert view.reconciling == (reconciling[0] == "True")


def test_an_edited_member_reconciles_until_collected_with_its_new_generation() -> None:
    edited = member_provider(generation=2)
    view = plan_provider(edited, collection=good(T0), claim=CLAIM, now=at(5))
    assert conditions(view)["Reconciling"] == ("True", Reason.AWAITING_COLLECTION)
    assert "generation 2" in next(
        c.message for c in view.status.conditions or [] if c.type == "Reconciling"
    )
    again = Collection(figures(), at(6), at(6), generation=2)
    view = plan_provider(edited, collection=again, claim=CLAIM, now=at(7))
    assert conditions(view)["Reconciling"] == ("False", Reason.RECONCILED)


def test_a_refused_write_stalls_the_provider() -> None:
    view = plan_provider(static_provider(), collection=None, claim=CLAIM, now=T0, rejected="x")
    assert conditions(view)["Stalled"] == ("True", Reason.WRITE_REJECTED)
