"""Which RegionPool claims which ComputeProvider: matching, priority, ties, deletion."""

from __future__ import annotations

from typing import Any

import pytest

from fedcompute.api.pool import RegionPool
from fedcompute.api.provider import ComputeProvider
from fedcompute.capacity import claims
from fedcompute.capacity.claims import Claim

# --- builders ------------------------------------------------------------------------------


def provider(name: str, region: str = "east", **labels: str) -> ComputeProvider:
    return ComputeProvider.model_validate(
        {
            "metadata": {"name": name, "labels": labels or None},
            "spec": {"region": region, "source": {"static": {"resources": {"cpu": "1"}}}},
        }
    )


def pool(
    name: str,
    *,
    regions: list[str] | None = None,
    selector: dict[str, Any] | None = None,
    priority: int = 0,
) -> RegionPool:
    spec: dict[str, Any] = {"priority": priority}
    if regions is not None:
        spec["regions"] = regions
    if selector is not None:
        spec["providerSelector"] = selector
    return RegionPool.model_validate({"metadata": {"name": name}, "spec": spec})


# --- matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("the_pool", "the_provider", "claimed"),
    [
        pytest.param(pool("p", regions=["east"]), provider("a", "east"), True, id="region-in"),
        pytest.param(pool("p", regions=["west"]), provider("a", "east"), False, id="region-out"),
        pytest.param(
            pool("p", regions=["west", "east"]), provider("a", "east"), True, id="one-of-regions"
        ),
        pytest.param(
            pool("p", selector={"matchLabels": {"tier": "gold"}}),
            provider("a", tier="gold"),
            True,
            id="labels-match",
        ),
        pytest.param(
            pool("p", selector={"matchLabels": {"tier": "gold"}}),
            provider("a", tier="silver"),
            False,
            id="labels-differ",
        ),
        pytest.param(
            pool("p", selector={"matchLabels": {"tier": "gold"}}),
            provider("a"),
            False,
            id="labels-missing",
        ),
        pytest.param(pool("p", selector={}), provider("a"), True, id="empty-selector-all"),
        pytest.param(
            pool("p", regions=["east"], selector={"matchLabels": {"tier": "gold"}}),
            provider("a", "east", tier="silver"),
            False,
            id="region-and-labels-both-needed",
        ),
        pytest.param(
            pool("p", regions=["west"], selector={"matchLabels": {"tier": "gold"}}),
            provider("a", "east", tier="gold"),
            False,
            id="labels-without-region",
        ),
        pytest.param(
            pool("p", regions=["east"], selector={"matchLabels": {"tier": "gold"}}),
            provider("a", "east", tier="gold"),
            True,
            id="region-and-labels",
        ),
        pytest.param(
            pool(
                "p",
                selector={
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]
                },
            ),
            provider("a", tier="gold"),
            True,
            id="expression-notin",
        ),
        pytest.param(pool("p"), provider("a"), False, id="no-regions-no-selector-selects-none"),
    ],
)
def test_matching(the_pool: RegionPool, the_provider: ComputeProvider, claimed: bool) -> None:
    result = claims.claim_all([the_provider], [the_pool])
    expected = Claim(pool="p", priority=0) if claimed else None
    assert result == {"a": expected}


# --- who wins ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pools", "winner", "contenders"),
    [
        pytest.param([("low", 1), ("high", 5)], "high", ("low",), id="higher-priority"),
        pytest.param([("b", -3), ("a", -7)], "b", ("a",), id="negative-priorities"),
        pytest.param([("zeta", 2), ("alpha", 2)], "alpha", ("zeta",), id="tie-smaller-name"),
        pytest.param(
            [("west-a", 1), ("east-b", 1)], "east-b", ("west-a",), id="tie-whole-name-compared"
        ),
        pytest.param(
            [("c", 0), ("b", 9), ("a", 0), ("d", 9)],
            "b",
            ("d", "a", "c"),
            id="contenders-in-claiming-order",
        ),
        pytest.param([("only", 0)], "only", (), id="no-contenders"),
    ],
)
def test_highest_priority_wins_then_smaller_name(
    pools: list[tuple[str, int]], winner: str, contenders: tuple[str, ...]
) -> None:
    built = [pool(name, regions=["east"], priority=prio) for name, prio in pools]
    expected_priority = dict(pools)[winner]
    for order in (built, list(reversed(built))):
        result = claims.claim_all([provider("a", "east")], order)
        assert result == {"a": Claim(winner, expected_priority, contenders)}


def test_contenders_only_list_pools_that_match() -> None:
    pools = [
        pool("big", regions=["east"], priority=10),
        pool("west", regions=["west"], priority=20),
        pool("small", regions=["east"], priority=1),
    ]
    assert claims.claim_all([provider("a", "east")], pools) == {"a": Claim("big", 10, ("small",))}


def test_every_provider_is_in_the_result_unmatched_ones_as_none() -> None:
    pools = [
        pool("east-pool", regions=["east"]),
        pool("gold", selector={"matchLabels": {"t": "g"}}),
    ]
    providers = [provider("e", "east"), provider("w", "west"), provider("g", "west", t="g")]
    result = claims.claim_all(providers, pools)
    assert result == {
        "e": Claim("east-pool", 0),
        "w": None,
        "g": Claim("gold", 0),
    }


def test_no_pools_claims_nothing() -> None:
    assert claims.claim_all([provider("a"), provider("b")], []) == {"a": None, "b": None}


# --- deletion ------------------------------------------------------------------------------


def test_deleting_pool_claims_nothing_and_provider_falls_to_next() -> None:
    pools = [pool("first", regions=["east"], priority=9), pool("second", regions=["east"])]
    before = claims.claim_all([provider("a", "east")], pools)
    after = claims.claim_all([provider("a", "east")], pools, deleting=["first"])
    assert before == {"a": Claim("first", 9, ("second",))}
    assert after == {"a": Claim("second", 0)}


def test_deleting_only_pool_leaves_provider_unclaimed() -> None:
    pools = [pool("only", regions=["east"])]
    assert claims.claim_all([provider("a", "east")], pools, deleting={"only"}) == {"a": None}


def test_deleting_names_pools_not_providers() -> None:
    # A provider that happens to share its name with a deleting pool is still claimed.
    pools = [pool("east", regions=["east"]), pool("backup", regions=["east"], priority=-1)]
    result = claims.claim_all([provider("east", "east")], pools, deleting=["east"])
    assert result == {"east": Claim("backup", -1)}


# --- ranked and by_pool --------------------------------------------------------------------


def test_ranked_orders_by_priority_descending_then_name() -> None:
    pools = [pool("b", regions=["x"], priority=1), pool("c", regions=["x"], priority=3)]
    pools += [pool("a", regions=["x"], priority=1), pool("d", regions=["x"], priority=-2)]
    assert [p.name for p in claims.ranked(pools)] == ["c", "a", "b", "d"]


def test_by_pool_inverts_with_sorted_provider_names_and_skips_unclaimed() -> None:
    claim_map: dict[str, Claim | None] = {
        "zed": Claim("p1", 0),
        "amy": Claim("p1", 0),
        "bob": Claim("p2", 3),
        "lone": None,
    }
    assert claims.by_pool(claim_map) == {"p1": ["amy", "zed"], "p2": ["bob"]}
    assert claims.by_pool({"x": None}) == {}
