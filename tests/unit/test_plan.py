"""plan(): the whole pass, decided without I/O. Table-driven; builders in tests/unit/builders.py."""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from fedcompute.api.pool import RegionPoolStatus
from fedcompute.api.provider import ComputeProviderStatus, Reason
from fedcompute.capacity import bounds, nodes
from fedcompute.capacity.memo import PlanMemo
from fedcompute.capacity.plan import FINALIZER, Plan, RenewalSchedule, plan, renewals
from fedcompute.capacity.snapshot import Rejection
from fedcompute.intents import (
    CreateLease,
    CreateNode,
    DeleteLease,
    DeleteNode,
    PatchNode,
    PatchStatus,
    PostEvent,
    RenewLease,
    SetFinalizers,
)
from tests.unit.builders import (
    A100,
    GPU,
    T0,
    World,
    at,
    collected,
    condition,
    converged,
    figures,
    member,
    of,
    pool,
    settle,
    static,
    status_of,
    world,
)

Json = dict[str, Any]

# --- finalizers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalizerCase:
    id: str
    body: Callable[[], Json]
    nodes: tuple[str, ...] = ()
    leases: tuple[str, ...] = ()
    expected: tuple[str, ...] | None = None
    """The finalizers written, or None when no SetFinalizers is planned."""


def _with_finalizers(body: Json, *finalizers: str) -> Json:
    body["metadata"]["finalizers"] = list(finalizers)
    return body


FINALIZER_CASES = [
    FinalizerCase(
        "new provider gets ours", lambda: static("a", finalized=False), expected=(FINALIZER,)
    ),
    FinalizerCase("new pool gets ours", lambda: pool("p", finalized=False), expected=(FINALIZER,)),
    FinalizerCase("already there: nothing", lambda: static("a")),
    FinalizerCase(
        "others' kept, ours appended",
        lambda: _with_finalizers(static("a", finalized=False), "example.com/keep"),
        expected=("example.com/keep", FINALIZER),
    ),
    FinalizerCase(
        "deleting provider with its node: held", lambda: static("a", deleting=True), nodes=("fc-a",)
    ),
    FinalizerCase(
        "deleting provider with only its lease: held",
        lambda: static("a", deleting=True),
        leases=("fc-a",),
    ),
    FinalizerCase(
        "deleting provider, nothing left: released", lambda: static("a", deleting=True), expected=()
    ),
    FinalizerCase(
        "released keeps others' finalizers",
        lambda: _with_finalizers(static("a", deleting=True), "example.com/keep", FINALIZER),
        expected=("example.com/keep",),
    ),
    FinalizerCase(
        "deleting without ours: nothing",
        lambda: _with_finalizers(static("a", deleting=True), "example.com/keep"),
    ),
    FinalizerCase(
        "deleting pool, no nodes: released", lambda: pool("p", deleting=True), expected=()
    ),
]


@pytest.mark.parametrize("case", FINALIZER_CASES, ids=lambda c: c.id)
def test_finalizers(case: FinalizerCase) -> None:
    w = world(case.body())
    for name in case.nodes:
        w.nodes[name] = {"metadata": {"name": name, "labels": {nodes.LABEL_PROVIDER: "a"}}}
    for name in case.leases:
        w.leases[name] = {"metadata": {"name": name}}
    found = of(w.plan(), SetFinalizers)
    if case.expected is None:
        assert found == []
    else:
        assert [f.finalizers for f in found] == [case.expected]
        body = next(iter({**w.providers, **w.pools}.values()))
        assert found[0].resource_version == body["metadata"]["resourceVersion"]


def test_a_deleting_pool_is_held_while_a_node_carries_its_label() -> None:
    w = converged(world(static("a"), pool("p")))
    w.pools["p"]["metadata"]["deletionTimestamp"] = "2026-03-01T11:00:00Z"
    p = w.plan()
    assert not of(p, SetFinalizers, "p")
    assert [d.name for d in of(p, DeleteNode)] == ["fc-a"]
    settle(w, p)
    assert w.pools["p"]["metadata"]["finalizers"] == [FINALIZER]  # the node went this pass
    after = w.plan()
    assert [f.finalizers for f in of(after, SetFinalizers, "p")] == [()]
    settle(w, after)
    assert "p" not in w.pools


# --- claims ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimCase:
    id: str
    providers: tuple[Json, ...]
    pools: tuple[Json, ...]
    expected: dict[str, str | None]


CLAIM_CASES = [
    ClaimCase("by region", (static("a", "east"),), (pool("p", regions=["east"]),), {"a": "p"}),
    ClaimCase("other region", (static("a", "west"),), (pool("p", regions=["east"]),), {"a": None}),
    ClaimCase(
        "by selector",
        (static("a", labels={"team": "ml"}), static("b")),
        (pool("ml", selector={"matchLabels": {"team": "ml"}}),),
        {"a": "ml", "b": None},
    ),
    ClaimCase(
        "region and selector both",
        (static("a", "east", labels={"t": "x"}), static("b", "west", labels={"t": "x"})),
        (pool("p", regions=["east"], selector={"matchLabels": {"t": "x"}}),),
        {"a": "p", "b": None},
    ),
    ClaimCase(
        "higher priority wins",
        (static("a"),),
        (pool("low", priority=1), pool("high", priority=9)),
        {"a": "high"},
    ),
    ClaimCase("ties go to the first name", (static("a"),), (pool("zz"), pool("aa")), {"a": "aa"}),
    ClaimCase(
        "pool-120 beats pool-20 on a tie (names, not numbers)",
        (static("a"),),
        (pool("pool-20"), pool("pool-120")),
        {"a": "pool-120"},
    ),
    ClaimCase(
        "a deleting pool claims nothing",
        (static("a"),),
        (pool("first", priority=5, deleting=True), pool("second")),
        {"a": "second"},
    ),
    ClaimCase(
        "an empty selector selects everyone",
        (static("a", "x"), static("b", "y")),
        (pool("all", selector={}),),
        {"a": "all", "b": "all"},
    ),
]


@pytest.mark.parametrize("case", CLAIM_CASES, ids=lambda c: c.id)
def test_claims(case: ClaimCase) -> None:
    p = world(*case.providers, *case.pools).plan()
    assert {n: (v.claim.pool if v.claim else None) for n, v in p.providers.items()} == case.expected
    for name, pool_name in case.expected.items():
        creates = [c for c in of(p, CreateNode, name)]
        assert bool(creates) == (pool_name is not None)
        if creates:
            assert creates[0].body["metadata"]["labels"][nodes.LABEL_POOL] == pool_name


def test_unclaimed_provider_says_why_and_contenders_are_named() -> None:
    p = world(static("a"), static("b", "west"), pool("p1", priority=2), pool("p2")).plan()
    a = p.providers["a"].status.to_wire()
    assert condition(a, "Claimed") == ("True", "Claimed")
    assert "also matched by p2" in next(
        c["message"] for c in a["conditions"] if c["type"] == "Claimed"
    )
    assert condition(p.providers["b"].status.to_wire(), "Claimed") == ("False", "NoMatchingPool")


# --- provider status ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusCase:
    id: str
    w: Callable[[], World]
    ready: tuple[str, str]
    node_ready: str | None
    """The virtual node's Ready status, or None when no node is planned."""
    lease: bool


STATUS_CASES = [
    StatusCase(
        "static", lambda: world(static("a"), pool("p")), ("True", "StaticInventory"), "True", True
    ),
    StatusCase(
        "member not collected yet",
        lambda: world(member("a"), pool("p")),
        ("Unknown", "Pending"),
        "Unknown",
        False,
    ),
    StatusCase(
        "member fresh",
        lambda: world(member("a"), pool("p"), collections={"a": collected(T0)}),
        ("True", "Fresh"),
        "True",
        True,
    ),
    StatusCase(
        "member stale",
        lambda: world(member("a"), pool("p"), collections={"a": collected(at(-300))}),
        ("False", "Stale"),
        "False",
        False,
    ),
    StatusCase(
        "member never reached",
        lambda: world(
            member("a"),
            pool("p"),
            collections={
                "a": collected()
                .failed(T0, "Unreachable", "refused")
                .__class__(attempted_at=T0, error_reason="Unreachable", error_message="refused")
            },
        ),
        ("False", "Unreachable"),
        "False",
        False,
    ),
    StatusCase(
        "member with no ready node",
        lambda: world(member("a"), pool("p"), collections={"a": collected(T0, figures(ready=0))}),
        ("False", "NoReadyNodes"),
        "False",
        False,
    ),
    StatusCase(
        "refused write",
        lambda: _rejected(world(static("a"), pool("p"))),
        ("False", "WriteRejected"),
        "False",
        False,
    ),
    StatusCase(
        "unclaimed static",
        lambda: world(static("a", "west"), pool("p")),
        ("True", "StaticInventory"),
        None,
        False,
    ),
]


def _rejected(w: World) -> World:
    w.rejections[("computeproviders", "a")] = Rejection("create Node fc-a", 422, "too long")
    return w


@pytest.mark.parametrize("case", STATUS_CASES, ids=lambda c: c.id)
def test_provider_readiness_and_its_node(case: StatusCase) -> None:
    p = case.w().plan()
    status = p.providers["a"].status.to_wire()
    assert condition(status, "Ready") == case.ready
    created = of(p, CreateNode, "a")
    if case.node_ready is None:
        assert created == []
        return
    node_ready = next(c for c in created[0].body["status"]["conditions"] if c["type"] == "Ready")
    assert node_ready["status"] == case.node_ready
    assert (created[0].lease is not None) == case.lease
    assert ("fc-a" in p.leases) == case.lease


def test_refused_write_message_names_what_and_why() -> None:
    status = _rejected(world(static("a"), pool("p"))).plan().providers["a"].status.to_wire()
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "the API server refused create Node fc-a (HTTP 422): too long"


def test_a_failed_collection_keeps_the_figures() -> None:
    good = collected(T0)
    w = converged(world(member("a"), pool("p"), collections={"a": good}))
    before = status_of(w, "a")
    w.collections["a"] = good.failed(at(30), "Timeout", "took too long")
    settle(w, w.plan(at(30)))
    after = status_of(w, "a")
    assert condition(after, "Collected") == ("False", "Timeout")
    assert condition(after, "Ready") == ("True", "Fresh")
    for key in ("capacity", "allocatable", "allocated", "available", "accelerators"):
        assert after[key] == before[key]


def test_unschedulable_provider_offers_nothing_to_its_pool() -> None:
    w = converged(world(static("a"), static("b", unschedulable=True), pool("p")))
    pool_status = status_of(w, "p")
    assert pool_status["allocatable"]["cpu"] == "64"
    assert pool_status["capacity"]["cpu"] == "128"
    assert w.nodes["fc-b"]["spec"]["unschedulable"] is True


# --- status the operator did not write ----------------------------------------------------------


def _foreign(status: Json) -> Json:
    status = copy.deepcopy(status)
    status["conditions"] = status["conditions"] + [
        {
            "type": f"Foreign{i}",
            "status": "True",
            "reason": "X",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
        for i in range(12)
    ]
    return status


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_foreign, id="conditions of other types, past the bound"),
        pytest.param(lambda s: {**s, "extra": {"x": 1}}, id="a field the schema lacks"),
        pytest.param(lambda s: {**s, "capacity": {"cpu": "lots"}}, id="garbage figures"),
        pytest.param(lambda s: {**s, "accelerators": "nope"}, id="wrong type"),
        pytest.param(
            lambda s: {**s, "lastCollectionTime": "2099-01-01T00:00:00Z"},
            id="future collection time",
        ),
        pytest.param(lambda s: "not an object", id="status not an object"),
    ],
)
def test_the_operator_owns_status(tamper: Callable[[Json], Any]) -> None:
    w = converged(world(static("a"), pool("p")))
    good = copy.deepcopy(w.providers["a"]["status"])
    w.providers["a"]["status"] = tamper(w.providers["a"]["status"])
    p = w.plan()
    assert [i.owner for i in of(p, PatchStatus)] == [("computeproviders", "a")]
    settle(w, p)
    repaired = w.providers["a"]["status"]
    assert repaired == good
    assert w.plan().intents == ()


# --- nodes and leases ---------------------------------------------------------------------------


def test_a_converged_world_plans_nothing_and_events_come_once() -> None:
    w = world(
        static("a"),
        static("b", "west"),
        member("c"),
        pool("p", regions=["east", "west"]),
        collections={"c": collected(T0)},
    )
    w = converged(w)
    assert w.plan().intents == ()
    assert w.plan(at(60)).intents == ()
    assert sorted(w.nodes) == ["fc-a", "fc-b", "fc-c"]
    assert sorted(w.leases) == ["fc-a", "fc-b", "fc-c"]


def test_node_carries_labels_taints_and_capacity() -> None:
    template = {
        "labels": {"tier": "gold"},
        "taints": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
    }
    w = converged(world(static("a", labels={"x": "y"}), pool("p", template=template)))
    node = w.nodes["fc-a"]
    labels = node["metadata"]["labels"]
    assert labels[nodes.LABEL_POOL] == "p"
    assert labels[nodes.LABEL_REGION] == "east"
    assert labels[nodes.LABEL_ACCELERATOR] == A100
    assert labels["tier"] == "gold"
    assert {t["key"] for t in node["spec"]["taints"]} == {"fedcompute.io/virtual", "dedicated"}
    assert node["status"]["capacity"][GPU] == "8"
    assert node["metadata"]["ownerReferences"][0]["uid"] == "uid-p"
    assert w.leases["fc-a"]["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        pytest.param(
            lambda n: n["metadata"]["labels"].pop(nodes.LABEL_POOL), "metadata", id="label removed"
        ),
        pytest.param(
            lambda n: n["metadata"]["labels"].update({nodes.LABEL_REGION: "x"}),
            "metadata",
            id="label changed",
        ),
        pytest.param(lambda n: n["spec"].update({"taints": []}), "metadata", id="taints removed"),
        pytest.param(
            lambda n: n["spec"].update({"unschedulable": True}),
            "metadata",
            id="cordoned by someone",
        ),
        pytest.param(
            lambda n: n["status"]["capacity"].update({"cpu": "1"}), "status", id="capacity changed"
        ),
        pytest.param(
            lambda n: n["status"]["allocatable"].pop("cpu"), "status", id="allocatable lost"
        ),
        pytest.param(
            lambda n: n["status"].update({"conditions": []}), "status", id="ready condition lost"
        ),
    ],
)
def test_node_drift_is_patched_in_place(change: Callable[[Json], Any], expect: str) -> None:
    w = converged(world(static("a"), pool("p")))
    change(w.nodes["fc-a"])
    patches = of(w.plan(), PatchNode)
    assert len(patches) == 1
    assert getattr(patches[0], expect) is not None
    assert of(w.plan(), CreateNode) == [] and of(w.plan(), DeleteNode) == []
    settle(w, w.plan())
    assert w.plan().intents == ()


def test_taints_someone_else_added_are_kept() -> None:
    w = converged(world(static("a"), pool("p")))
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    w.nodes["fc-a"]["spec"]["taints"].append(unreachable)
    assert w.plan().intents == ()


@pytest.mark.parametrize(
    ("change", "deleted_nodes", "deleted_leases"),
    [
        pytest.param(
            lambda w: w.providers["a"]["spec"].update({"region": "west"}),
            ["fc-a"],
            [],
            id="unclaimed",
        ),
        pytest.param(
            lambda w: w.providers.pop("a"), ["fc-a"], [], id="provider gone without finalizer"
        ),
        pytest.param(
            lambda w: w.nodes.update({"fc-ghost": {"metadata": {"name": "fc-ghost"}}}),
            ["fc-ghost"],
            [],
            id="orphan node",
        ),
        pytest.param(
            lambda w: w.leases.update({"fc-ghost": {"metadata": {"name": "fc-ghost"}}}),
            [],
            ["fc-ghost"],
            id="orphan lease",
        ),
    ],
)
def test_nodes_nobody_wants_are_deleted(
    change: Callable[[World], Any], deleted_nodes: list[str], deleted_leases: list[str]
) -> None:
    w = converged(world(static("a"), pool("p")))
    change(w)
    p = w.plan()
    assert [d.name for d in of(p, DeleteNode)] == deleted_nodes
    assert [d.name for d in of(p, DeleteLease)] == deleted_leases


def test_moving_to_another_pool_patches_the_node_in_place() -> None:
    w = converged(world(static("a"), pool("low"), pool("high", priority=5, finalized=True)))
    assert w.nodes["fc-a"]["metadata"]["labels"][nodes.LABEL_POOL] == "high"
    w.pools["high"]["spec"]["priority"] = -5
    p = w.plan()
    assert of(p, CreateNode) == [] and of(p, DeleteNode) == []
    (patch,) = of(p, PatchNode)
    assert patch.metadata["metadata"]["labels"][nodes.LABEL_POOL] == "low"
    assert patch.metadata["metadata"]["ownerReferences"][0]["name"] == "low"


def test_a_lost_lease_is_recreated_owned_by_the_node() -> None:
    w = converged(world(static("a"), pool("p")))
    del w.leases["fc-a"]
    (create,) = of(w.plan(), CreateLease)
    assert (
        create.body["metadata"]["ownerReferences"][0]["uid"] == w.nodes["fc-a"]["metadata"]["uid"]
    )


def test_renewals_cover_existing_leases_of_ready_nodes_only() -> None:
    w = world(static("a"), member("b"), static("c"), pool("p"))
    w = converged(w)
    del w.leases["fc-c"]
    p = w.plan()
    assert p.leases == {"fc-a": "a", "fc-c": "c"}  # b is not Ready: its Lease is left to expire
    schedule = RenewalSchedule(period=10.0)
    due: dict[str, str] = {}
    for second in range(21):
        due |= schedule.due(p.leases, w.leases, T0.timestamp() + second)
    assert due == {"fc-a": "a"}  # fc-c has no Lease yet: the pass creates it
    (renew,) = renewals(due, at(10))
    assert isinstance(renew, RenewLease) and renew.owner == ("computeproviders", "a")
    assert renew.renew_time.startswith("2026-03-01T12:00:10")


def _leases(names: dict[str, str], renewed: datetime) -> dict[str, Json]:
    return {n: nodes.lease_body(n, p, "uid", renewed) for n, p in names.items()}


def test_renewals_are_spread_evenly_and_never_later_than_a_period() -> None:
    names = {f"fc-p{i:04d}": f"p{i:04d}" for i in range(1000)}
    created = T0.timestamp()
    leases = _leases(names, T0)  # all created at once: the worst case for bursts
    schedule = RenewalSchedule(period=16.0)
    per_second: list[int] = []
    renewed: dict[str, list[int]] = {}
    for second in range(1, 65):
        due = schedule.due(names, leases, created + second)
        per_second.append(len(due))
        for name in due:
            renewed.setdefault(name, []).append(second)
    assert max(per_second) <= 1000 / 16 * 1.6 and min(per_second) >= 1000 / 16 * 0.4, per_second
    for times in renewed.values():
        assert times[0] <= 16  # never later than a period after the last renewal
        assert all(b - a == 16 for a, b in itertools.pairwise(times)), times
    gone = dict(list(names.items())[:10])
    assert schedule.due(gone, leases, created + 1000).keys() == gone.keys()  # overdue: at once
    assert len(schedule._next) == 10


def test_a_just_created_lease_waits_for_its_grid_time() -> None:
    schedule = RenewalSchedule(period=16.0)
    created = T0.timestamp()
    leases = _leases({"fc-a": "a"}, T0)
    first = schedule.next_after("fc-a", created)
    assert created < first <= created + 16
    assert schedule.due({"fc-a": "a"}, leases, first - 0.5) == {}
    assert schedule.due({"fc-a": "a"}, leases, first) == {"fc-a": "a"}


def test_the_renewal_period_keeps_a_margin_of_a_renewal() -> None:
    assert nodes.lease_period(50) == 22.0  # kube-controller-manager's default grace
    assert nodes.lease_period(40) == 17.0
    assert nodes.lease_period(300) == 135.0
    for grace in (12, 20, 40, 50, 60, 300):
        assert 2 * nodes.lease_period(grace) <= grace - 5  # one lost renewal is survived


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda w: w.providers["a"]["spec"]["source"]["static"]["resources"].update(
                {"cpu": "1"}
            ),
            id="figures change",
        ),
        pytest.param(lambda w: w.providers.update({"b": static("b")}), id="a new provider"),
        pytest.param(lambda w: w.providers["a"]["spec"].update({"region": "west"}), id="unclaimed"),
    ],
)
def test_a_paused_pool_leaves_its_nodes_exactly_as_they_are(change: Callable[[World], Any]) -> None:
    w = converged(world(static("a"), pool("p")))
    w.pools["p"]["spec"]["paused"] = True
    w = converged(w)
    node = copy.deepcopy(w.nodes["fc-a"])
    change(w)
    p = w.plan()
    assert [i for i in p.intents if isinstance(i, CreateNode | PatchNode | DeleteNode)] == []
    settle(w, p)
    assert w.nodes["fc-a"] == node
    message = next(c["message"] for c in status_of(w, "p")["conditions"] if c["type"] == "Ready")
    assert "paused" in message


# --- pools -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolCase:
    id: str
    w: Callable[[], World]
    ready: tuple[str, str]
    degraded: tuple[str, str]
    providers: dict[str, int]


POOL_CASES = [
    PoolCase(
        "all ready",
        lambda: world(static("a"), static("b"), pool("p")),
        ("True", "EnoughProvidersReady"),
        ("False", "AllProvidersReady"),
        {"total": 2, "ready": 2},
    ),
    PoolCase(
        "none claimed",
        lambda: world(pool("p")),
        ("False", "NoProviders"),
        ("False", "AllProvidersReady"),
        {"total": 0, "ready": 0},
    ),
    PoolCase(
        "none claimed, none needed",
        lambda: world(pool("p", min_ready=0)),
        ("True", "EnoughProvidersReady"),
        ("False", "AllProvidersReady"),
        {"total": 0, "ready": 0},
    ),
    PoolCase(
        "one pending",
        lambda: world(static("a"), member("b"), pool("p")),
        ("True", "EnoughProvidersReady"),
        ("True", "ProvidersNotReady"),
        {"total": 2, "ready": 1},
    ),
    PoolCase(
        "too few ready",
        lambda: world(static("a"), member("b"), pool("p", min_ready=2)),
        ("False", "NotEnoughProvidersReady"),
        ("True", "ProvidersNotReady"),
        {"total": 2, "ready": 1},
    ),
    PoolCase(
        "own status refused",
        lambda: _pool_rejected(world(static("a"), pool("p"))),
        ("False", "WriteRejected"),
        ("True", "WriteRejected"),
        {"total": 1, "ready": 1},
    ),
]


def _pool_rejected(w: World) -> World:
    w.rejections[("regionpools", "p")] = Rejection("the status", 422, "bad", status_write=True)
    return w


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
def test_pool_conditions(case: PoolCase) -> None:
    status = case.w().plan().pools["p"].status.to_wire()
    assert condition(status, "Ready") == case.ready
    assert condition(status, "Degraded") == case.degraded
    assert status["providers"] == case.providers


def test_pool_rolls_up_offered_providers_by_region_and_model() -> None:
    w = world(
        static("a", "east"),
        static("b", "west", gpus=4, model="H100"),
        static("c", "west", unschedulable=True),
        pool("p", regions=["east", "west"]),
    )
    status = w.plan().pools["p"].status.to_wire()
    assert status["capacity"]["cpu"] == "192"
    assert status["allocatable"]["cpu"] == "128"
    assert status["accelerators"] == [
        {"model": "H100", "vendor": "NVIDIA", "count": 4, "allocated": 0, "available": 4},
        {"model": A100, "vendor": "NVIDIA", "count": 8, "allocated": 0, "available": 8},
    ]
    assert status["acceleratorCount"] == 12
    assert [r["name"] for r in status["regions"]] == ["east", "west"]
    assert status["regions"][1]["providers"] == 2
    assert status["nodes"] == 3
    assert status["computePower"] == {"bf16": str(312 * 12)}


def test_degraded_message_names_the_providers_not_ready() -> None:
    w = world(static("a"), member("b"), member("c"), pool("p"))
    degraded = next(
        c for c in w.plan().pools["p"].status.to_wire()["conditions"] if c["type"] == "Degraded"
    )
    assert degraded["message"] == "2 providers not Ready: b, c"


# --- events ------------------------------------------------------------------------------------


def test_events_only_for_news() -> None:
    w = world(static("a"), pool("p"), member("m"))
    first = w.plan()
    warnings = [(e.owner[1], e.reason) for e in of(first, PostEvent)]
    assert warnings == [("m", "Pending")] or ("m", "Pending") in warnings
    assert not [e for e in of(first, PostEvent) if e.owner[1] == "a"]  # a good start is no news
    w = converged(w)
    w.collections["m"] = collected(T0)
    p = w.plan()
    (event,) = of(p, PostEvent, "m")
    assert (event.type, event.reason) == ("Normal", "ReadyTrue")
    settle(w, p)
    w.collections["m"] = collected(T0).failed(at(400), "Timeout", "slow")
    p = w.plan(at(400))
    (event,) = of(p, PostEvent, "m")
    assert (event.type, event.reason) == ("Warning", "Stale")
    assert event.uid == "uid-m"


def test_an_event_follows_its_status_write_in_the_owner_chain() -> None:
    p = world(member("m"), pool("p")).plan()
    chain = p.by_owner()[("computeproviders", "m")]
    kinds = [type(i).__name__ for i in chain]
    assert kinds.index("PatchStatus") < kinds.index("PostEvent") < kinds.index("CreateNode")


# --- bounds ------------------------------------------------------------------------------------


def _many_resources(n: int) -> dict[str, str]:
    return {f"example.com/r{i:02d}": str(i + 1) for i in range(n)}


def test_a_member_with_more_resources_than_status_holds_is_folded() -> None:
    """cpu, memory and the accelerator resource are kept first; then the largest."""
    inv = figures()
    extra = {k: Decimal(v) for k, v in _many_resources(40).items()}
    inv = replace(
        inv,
        capacity={**inv.capacity, **extra},
        allocatable={**inv.allocatable, **extra},
        available={**inv.available, **extra},
    )
    p = world(member("a"), pool("p"), collections={"a": collected(T0, inv)}).plan()
    status = p.providers["a"].status.to_wire()
    for figure in ("capacity", "allocatable", "available"):
        assert len(status[figure]) == 32
        assert {"cpu", "memory", GPU, bounds.OTHER_RESOURCES} <= set(status[figure])
    kept = [k for k in status["capacity"] if k.startswith("example.com/")]
    assert sorted(kept) == sorted(f"example.com/r{i:02d}" for i in range(40 - 28, 40))
    assert status["folded"] == {"resources": 12}
    assert int(status["capacity"][bounds.OTHER_RESOURCES]) == sum(range(1, 13))
    assert status["allocated"] == {GPU: "1"}
    ComputeProviderStatus.model_validate(status)
    assert len(of(p, CreateNode)[0].body["status"]["capacity"]) == 43  # the node lists them all


def test_a_member_with_more_models_than_status_holds_is_folded() -> None:
    from fedcompute.capacity.inventory import AcceleratorInventory, MemberInventory

    devices = tuple(
        AcceleratorInventory(f"model-{i:02d}", GPU, 1, i + 1, i + 1, 0, i + 1) for i in range(20)
    )
    inv = MemberInventory({"cpu": 1}, {"cpu": 1}, {}, {"cpu": 1}, 20, 20, 20, devices)  # type: ignore[dict-item]
    p = world(member("a"), pool("p"), collections={"a": collected(T0, inv)}).plan()
    status = p.providers["a"].status.to_wire()
    assert len(status["accelerators"]) == 16
    other = status["accelerators"][-1]
    assert other["model"] == bounds.OTHER_MODELS and other["count"] == sum(range(1, 6))
    assert status["folded"] == {"accelerators": 5}
    assert status["acceleratorCount"] == sum(range(1, 21))
    pool_status = p.pools["p"].status.to_wire()
    assert len(pool_status["accelerators"]) == 20  # a pool holds 32
    ComputeProviderStatus.model_validate(status)


def test_a_pool_over_more_regions_and_models_than_its_status_holds_is_folded() -> None:
    providers = [static(f"p{i:02d}", f"r{i:02d}", model=f"m{i:02d}", gpus=1 + i) for i in range(70)]
    w = world(*providers, pool("all", selector={}))
    status = w.plan().pools["all"].status.to_wire()
    assert len(status["regions"]) == 64 and status["regions"][-1]["name"] == bounds.OTHER_REGIONS
    assert sum(r["providers"] for r in status["regions"]) == 70
    assert (
        len(status["accelerators"]) == 32
        and status["accelerators"][-1]["model"] == bounds.OTHER_MODELS
    )
    assert sum(a["count"] for a in status["accelerators"]) == sum(1 + i for i in range(70))
    assert status["folded"] == {"accelerators": 39, "regions": 7}
    RegionPoolStatus.model_validate(status)


def test_a_pool_whose_providers_together_exceed_the_resource_bound_is_folded() -> None:
    providers = [
        static(f"p{i}", extra={f"example.com/p{i}-r{j}": "1" for j in range(10)}) for i in range(5)
    ]
    p = world(*providers, pool("p")).plan()
    assert p.failures == {}
    status = p.pools["p"].status.to_wire()
    assert len(status["capacity"]) == 32 and status["folded"]["resources"] == 53 - 31
    assert len(status["regions"][0]["allocatable"]) == 32
    RegionPoolStatus.model_validate(status)


def test_invalid_resource_names_from_a_member_are_folded_not_written() -> None:
    from fedcompute.capacity.inventory import MemberInventory

    bad = {"cpu": 4, "Not A Name!": 3}
    inv = MemberInventory(bad, bad, {}, bad, 1, 1, 1)  # type: ignore[arg-type]
    status = (
        world(member("a"), pool("p"), collections={"a": collected(T0, inv)})
        .plan()
        .providers["a"]
        .status.to_wire()
    )
    assert status["capacity"] == {"cpu": "4", bounds.OTHER_RESOURCES: "3"}
    assert status["folded"] == {"resources": 1}


def test_counts_beyond_int64_are_clamped() -> None:
    from fedcompute.capacity.inventory import AcceleratorInventory, MemberInventory

    huge = 2**70
    devices = (AcceleratorInventory("m", GPU, 1, huge, huge, 0, huge),)
    inv = MemberInventory({"cpu": 1}, {"cpu": 1}, {}, {"cpu": 1}, huge, huge, huge, devices)  # type: ignore[dict-item]
    status = (
        world(member("a"), pool("p"), collections={"a": collected(T0, inv)})
        .plan()
        .providers["a"]
        .status.to_wire()
    )
    assert status["acceleratorCount"] == 2**63 - 1
    assert status["nodes"] == {"total": 2**63 - 1, "ready": 2**63 - 1}


# --- invalid objects and failures ---------------------------------------------------------------


def test_an_invalid_provider_gets_a_condition_naming_the_field_and_keeps_its_node() -> None:
    w = converged(world(static("a"), static("b"), pool("p")))
    w.providers["a"]["spec"]["source"]["static"]["resources"]["cpu"] = "lots"
    node = copy.deepcopy(w.nodes["fc-a"])
    p = w.plan()
    (patch,) = of(p, PatchStatus, "a")
    ready = next(c for c in patch.patch["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", Reason.INVALID_SPEC)
    assert "spec.source.static.resources.cpu" in ready["message"]
    assert [
        i
        for i in p.intents
        if i.owner == ("computeproviders", "a") and not isinstance(i, PatchStatus | PostEvent)
    ] == []
    settle(w, p)
    assert w.nodes["fc-a"] == node
    assert w.plan().intents == ()


def test_an_invalid_pool_is_reported_and_claims_nothing() -> None:
    w = world(static("a"), pool("bad"), pool("good", priority=-1))
    w.pools["bad"]["spec"]["priority"] = "high"
    p = w.plan()
    (patch,) = of(p, PatchStatus, "bad")
    assert condition({"conditions": patch.patch["conditions"]}, "Ready") == ("False", "InvalidSpec")
    assert p.providers["a"].claim is not None and p.providers["a"].claim.pool == "good"


def _fail_for(monkeypatch: pytest.MonkeyPatch, target: str, name: str) -> None:
    """Make one object's planning raise, the way a bug in one code path would."""
    import fedcompute.capacity.plan as planning

    real = getattr(planning if target == "plan_provider" else planning.rollup, target)

    def failing(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if obj.name == name:
            raise ArithmeticError("boom in " + name)
        return real(obj, *args, **kwargs)

    if target == "plan_provider":
        monkeypatch.setattr(planning, "plan_provider", failing)
    else:
        monkeypatch.setattr(planning.rollup, "plan_pool", failing)


def test_a_provider_whose_plan_raises_gets_plan_failed_and_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = converged(world(static("a"), static("b"), pool("p")))
    _fail_for(monkeypatch, "plan_provider", "a")
    p = w.plan()
    assert p.failures == {("computeproviders", "a"): "cannot plan: ArithmeticError: boom in a"}
    assert "ArithmeticError" in p.tracebacks[("computeproviders", "a")]
    (patch,) = of(p, PatchStatus, "a")
    assert condition({"conditions": patch.patch["conditions"]}, "Ready") == ("False", "PlanFailed")
    (event,) = of(p, PostEvent, "a")
    assert (event.type, event.reason) == ("Warning", "PlanFailed")
    assert of(p, DeleteNode) == [] and of(p, PatchNode) == []
    assert "fc-a" not in p.leases
    pool_status = p.pools["p"].status.to_wire()
    assert pool_status["providers"] == {"total": 2, "ready": 1}
    assert pool_status["nodes"] == 2


def test_a_pool_whose_plan_raises_leaves_providers_and_nodes_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = converged(world(static("a"), pool("p"), pool("q", regions=["west"]), static("b", "west")))
    _fail_for(monkeypatch, "plan_pool", "p")
    p = w.plan()
    assert list(p.failures) == [("regionpools", "p")]
    (patch,) = of(p, PatchStatus, "p")
    conditions = {"conditions": patch.patch["conditions"]}
    assert condition(conditions, "Ready") == ("False", "PlanFailed")
    assert condition(conditions, "Degraded") == ("True", "PlanFailed")
    assert [i.owner for i in p.intents if not isinstance(i, PostEvent)] == [("regionpools", "p")]


def test_the_memo_changes_nothing_but_the_work() -> None:
    w = world(
        static("a"), static("b", "west"), member("c"), pool("p"), collections={"c": collected(T0)}
    )
    memo = PlanMemo()
    for now in (T0, at(1), at(2)):
        assert plan(w.snapshot(), w.collections, now, memo=memo) == plan(
            w.snapshot(), w.collections, now
        )
        settle(w, w.plan(now))
    assert memo.providers


# --- isolation, as a property -----------------------------------------------------------------


def _big_world() -> World:
    bodies: list[Json] = []
    for i in range(6):
        bodies.append(
            static(f"s{i}", "east" if i % 2 else "west", labels={"team": "ml" if i % 3 else "hpc"})
        )
    for i in range(3):
        bodies.append(member(f"m{i}", "east"))
    bodies += [
        pool("east", regions=["east"]),
        pool("west", regions=["west"]),
        pool("ml", selector={"matchLabels": {"team": "ml"}}, priority=5),
    ]
    w = world(*bodies, collections={f"m{i}": collected(T0) for i in range(3)})
    return converged(w)


def _by_owner(p: Plan) -> dict[tuple[str, str], list[Any]]:
    return {k: v for k, v in p.by_owner().items()}


@pytest.mark.parametrize("victim", [f"s{i}" for i in range(6)] + [f"m{i}" for i in range(3)])
def test_one_failing_provider_leaves_everyone_elses_intents_unchanged(
    monkeypatch: pytest.MonkeyPatch, victim: str
) -> None:
    """Forcing one provider's plan to fail changes no other provider's writes; its pool sees
    exactly what it would see if that provider were merely not Ready and without figures."""
    w = _big_world()
    # Give everyone something to write, so "unchanged" is not trivially empty.
    for body in w.providers.values():
        body["status"]["conditions"] = []
    baseline = w.plan()
    claimed_by = baseline.providers[victim].claim
    assert claimed_by is not None
    pending = w.copy()
    pending.providers[victim] = member(
        victim,
        pending.providers[victim]["spec"]["region"],
        labels=pending.providers[victim]["metadata"]["labels"],
    )
    pending.providers[victim]["status"] = w.providers[victim]["status"]
    pending.collections.pop(victim, None)
    as_pending = pending.plan()
    _fail_for(monkeypatch, "plan_provider", victim)
    failing = w.plan()
    assert list(failing.failures) == [("computeproviders", victim)]
    for owner, intents in _by_owner(baseline).items():
        if owner[1] in (victim, claimed_by.pool):
            continue
        assert _by_owner(failing).get(owner) == intents, owner
    pool_owner = ("regionpools", claimed_by.pool)
    assert (
        failing.pools[claimed_by.pool].status.to_wire()["providers"]
        == as_pending.pools[claimed_by.pool].status.to_wire()["providers"]
    )
    for field in ("capacity", "allocatable", "allocated", "available", "accelerators", "regions"):
        assert failing.pools[claimed_by.pool].status.to_wire().get(field) == as_pending.pools[
            claimed_by.pool
        ].status.to_wire().get(field), field
    assert pool_owner in _by_owner(failing)


@pytest.mark.parametrize("victim", ["east", "west", "ml"])
def test_one_failing_pool_leaves_everyone_elses_intents_unchanged(
    monkeypatch: pytest.MonkeyPatch, victim: str
) -> None:
    w = _big_world()
    for body in [*w.providers.values(), *w.pools.values()]:
        body["status"]["conditions"] = []
    baseline = w.plan()
    _fail_for(monkeypatch, "plan_pool", victim)
    failing = w.plan()
    assert list(failing.failures) == [("regionpools", victim)]
    for owner, intents in _by_owner(baseline).items():
        if owner != ("regionpools", victim):
            assert _by_owner(failing).get(owner) == intents, owner


@pytest.mark.parametrize("victim", [f"s{i}" for i in range(6)])
def test_one_hostile_status_costs_only_its_own_write(victim: str) -> None:
    w = _big_world()
    baseline = w.plan()
    assert baseline.intents == ()
    w.providers[victim]["status"] = _foreign(w.providers[victim]["status"])
    p = w.plan()
    assert {i.owner for i in p.intents} == {("computeproviders", victim)}


def test_every_planned_status_fits_its_model() -> None:
    w = world(
        static("a", extra=_many_resources(60)),
        *[static(f"x{i}", f"r{i}") for i in range(70)],
        member("m"),
        pool("p", selector={}),
    )
    p = w.plan()
    for intent in of(p, PatchStatus):
        merged = intent.patch
        model = ComputeProviderStatus if intent.owner[0] == "computeproviders" else RegionPoolStatus
        model.model_validate({k: v for k, v in merged.items() if v is not None})


# --- Reconciling and Stalled on pools ------------------------------------------------------------


def test_a_pool_reconciles_while_a_member_waits_for_its_first_collection() -> None:
    w = world(static("a"), member("b"), pool("p"))
    status = w.plan().pools["p"].status.to_wire()
    assert condition(status, "Reconciling") == ("True", "AwaitingCollection")
    assert "1 provider waiting for a collection: b" in str(status["conditions"])
    assert condition(status, "Stalled") == ("False", "NotStalled")
    w.collections["b"] = collected(T0)
    status = w.plan().pools["p"].status.to_wire()
    assert condition(status, "Reconciling") == ("False", "Reconciled")


def test_a_pool_whose_status_is_refused_is_stalled() -> None:
    status = _pool_rejected(world(static("a"), pool("p"))).plan().pools["p"].status.to_wire()
    assert condition(status, "Stalled") == ("True", "WriteRejected")


def test_an_invalid_pool_is_stalled() -> None:
    w = world(pool("bad"))
    w.pools["bad"]["spec"]["priority"] = "high"
    (patch,) = of(w.plan(), PatchStatus, "bad")
    assert condition({"conditions": patch.patch["conditions"]}, "Stalled") == (
        "True",
        "InvalidSpec",
    )


# --- planning that follows change: the memo changes nothing but the work ---------------------


def _random_change(w: World, rng: random.Random, step: int) -> None:
    """One change of the kind the world sees between passes."""
    names = sorted(w.providers)
    name = rng.choice(names)
    kind = rng.randrange(9)
    if kind == 0 and name.startswith("s"):
        w.providers[name]["spec"]["source"]["static"]["resources"]["cpu"] = str(
            rng.randrange(1, 256)
        )
        w.change(w.providers[name], spec=True)
    elif kind == 1:
        w.providers[name]["metadata"]["labels"]["team"] = rng.choice(["ml", "hpc"])
        w.change(w.providers[name])
    elif kind == 2 and name.startswith("m"):
        w.collections[name] = collected(at(step), figures(gpus=rng.randrange(1, 9)))
    elif kind == 3 and name.startswith("m"):
        w.collections[name] = w.collections.get(name, collected(T0)).failed(
            at(step), "Timeout", "slow"
        )
    elif kind == 4:
        w.providers[name]["status"] = _foreign(
            w.providers[name].get("status") or {"conditions": []}
        )
    elif kind == 5:
        w.nodes.pop(f"fc-{name}", None)
    elif kind == 6:
        pool_name = rng.choice(sorted(w.pools))
        w.pools[pool_name]["spec"]["priority"] = rng.randrange(-5, 5)
        w.change(w.pools[pool_name], spec=True)
    elif kind == 7:
        w.rejections[("computeproviders", name)] = Rejection("create Node", 422, "no")
    else:
        w.rejections.clear()


def test_a_memo_kept_across_passes_plans_exactly_what_a_fresh_pass_plans() -> None:
    """Through random changes, with some writes landing and some not: same Plan either way."""
    rng = random.Random(20261129)
    bodies: list[Json] = [static(f"s{i}", "east" if i % 2 else "west") for i in range(8)]
    bodies += [member(f"m{i}", "east", stale_after="60s") for i in range(4)]
    bodies += [
        pool("east", regions=["east"]),
        pool("west", regions=["west"]),
        pool("ml", selector={"matchLabels": {"team": "ml"}}, priority=3),
    ]
    w = world(*bodies, collections={f"m{i}": collected(T0) for i in range(4)})
    memo = PlanMemo()
    for step in range(1, 200):
        now = at(step * 7)
        snapshot = w.snapshot()
        kept = plan(snapshot, w.collections, now, memo=memo)
        fresh = plan(snapshot, w.collections, now)
        assert kept.intents == fresh.intents, step
        assert kept.providers == fresh.providers, step
        assert kept.pools.keys() == fresh.pools.keys(), step
        for name, view in kept.pools.items():
            assert view.wire == fresh.pools[name].wire, (step, name)
        # Most writes land; some are lost (the next pass must plan them again).
        landed = [i for i in kept.intents if rng.random() < 0.8]
        settle(w, kept, only=landed)
        _random_change(w, rng, step)
