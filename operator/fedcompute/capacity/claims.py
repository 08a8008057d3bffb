"""Which RegionPool claims which ComputeProvider. Pure.

A provider matches a pool when the pool's spec selects it (region and labels). Among
matching pools the highest ``priority`` wins; ties go to the pool whose name sorts first.
Pools being deleted claim nothing, so their providers fall to the next pool at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


class ClaimOrder:
    """The pools that may claim, in claiming order, indexed by region.

    A provider is tested only against the pools that list its region and those that list
    none (selector only), so claiming stays cheap with hundreds of pools.
    """

    def __init__(self, pools: Iterable[RegionPool], *, deleting: Iterable[str] = ()) -> None:
        gone = set(deleting)
        self.pools = tuple(p for p in ranked(pools) if p.name not in gone)
        self._merged: dict[str, list[RegionPool]] = {}
        self._by_region: dict[str, list[RegionPool]] = {}
        for p in self.pools:
            for region in p.spec.regions or ():
                self._by_region.setdefault(region, []).append(p)

    def candidates(self, region: str) -> list[RegionPool]:
        """Pools that could select a provider of ``region``, in claiming order."""
        found = self._merged.get(region)
        if found is None:
            listed = {id(p) for p in self._by_region.get(region, [])}
            found = [p for p in self.pools if id(p) in listed or p.spec.regions is None]
            self._merged[region] = found
        return found


def claim_order(pools: Iterable[RegionPool], *, deleting: Iterable[str] = ()) -> ClaimOrder:
    """The pools that may claim, in claiming order (pools being deleted left out)."""
    return ClaimOrder(pools, deleting=deleting)


def claim_one(provider: ComputeProvider, order: ClaimOrder) -> Claim | None:
    """The claim on one provider, given the pools in :func:`claim_order`."""
    labels = provider.metadata.labels or {}
    region = provider.spec.region
    matching = [p for p in order.candidates(region) if p.spec.selects(region=region, labels=labels)]
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
