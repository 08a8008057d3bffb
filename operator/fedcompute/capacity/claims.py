"""Which RegionPool claims which ComputeProvider. Pure.

A provider matches a pool when the pool's spec selects it (region and labels). Among
matching pools the highest ``priority`` wins; ties go to the pool whose name sorts first.
Pools being deleted claim nothing, so their providers fall to the next pool at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fedcompute.api.pool import RegionPool
from fedcompute.api.provider import ComputeProvider


@dataclass(frozen=True)
class Claim:
    """The pool that claims a provider, and the other pools that also matched."""

    pool: str
    priority: int
    contenders: tuple[str, ...] = ()


def ranked(pools: Iterable[RegionPool]) -> list[RegionPool]:
    """Pools in claiming order: priority descending, then name ascending."""
    return sorted(pools, key=lambda p: (-p.spec.priority, p.name))


def claim_all(
    providers: Iterable[ComputeProvider],
    pools: Iterable[RegionPool],
    *,
    deleting: Iterable[str] = (),
) -> dict[str, Claim | None]:
    """Map every provider name to its claim (None when no pool selects it)."""
    order = claim_order(pools, deleting=deleting)
    return {provider.name: claim_one(provider, order) for provider in providers}


def claim_order(pools: Iterable[RegionPool], *, deleting: Iterable[str] = ()) -> list[RegionPool]:
    """The pools that may claim, in claiming order (pools being deleted left out)."""
    gone = set(deleting)
    return [p for p in ranked(pools) if p.name not in gone]


def claim_one(provider: ComputeProvider, order: Sequence[RegionPool]) -> Claim | None:
    """The claim on one provider, given the pools in :func:`claim_order`."""
    labels = provider.metadata.labels or {}
    matching = [p for p in order if p.spec.selects(region=provider.spec.region, labels=labels)]
    if not matching:
        return None
    winner = matching[0]
    return Claim(
        pool=winner.name,
        priority=winner.spec.priority,
        contenders=tuple(p.name for p in matching[1:]),
    )


def by_pool(claims: Mapping[str, Claim | None]) -> dict[str, list[str]]:
    """Invert claims: pool name -> sorted provider names."""
    pools: dict[str, list[str]] = {}
    for provider, claim in sorted(claims.items()):
        if claim is not None:
            pools.setdefault(claim.pool, []).append(provider)
    return pools
