"""What a pass may reuse from the last one, so that planning follows change. Pure.

A pass still looks at every object (level-triggered: nothing is skipped on trust), but
an object whose inputs are the very ones it was planned from last time is not planned
again: its view and its intents are reused. Inputs are compared by identity where the
world replaces an object on every change (observed bodies, collections, the views a pool
rolls up), so the check costs a few comparisons per object. After convergence, a change
to one provider re-plans that provider, its node and the pools it belongs to.

The memo is a cache only: :func:`fedcompute.capacity.plan.plan` returns the same Plan with
or without it (tests/unit/test_plan.py checks this as a property).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedcompute.api.pool import RegionPool
from fedcompute.capacity import claims, nodes
from fedcompute.capacity.catalog import Catalog
from fedcompute.capacity.providers import Collection, ProviderView
from fedcompute.capacity.snapshot import Observed


@dataclass
class ProviderEntry:
    """One provider's last plan and what it was planned from."""

    obs: Observed
    spec: Any
    """The observed ``spec`` (for answers to our own status writes: same spec, new body)."""
    labels: Any
    """(generation, labels) of the observed object."""
    claim: claims.Claim | None
    collection: Collection | None
    rejected: str | None
    stale: bool
    catalog: Catalog
    """The accelerator catalog it was planned with (by identity)."""
    view: ProviderView
    converged: bool
    """The plan had no intents: it is what the world already is, whatever the clock."""


@dataclass
class NodeEntry:
    """One virtual node's last plan."""

    view: ProviderView
    pool: RegionPool
    desired: nodes.DesiredNode
    node: Any
    lease: bool
    converged: bool


@dataclass
class PoolEntry:
    """One pool's last roll-up."""

    obs: Observed
    spec: Any
    generation: Any
    members: tuple[ProviderView, ...]
    nodes: int
    rejected: str | None
    kueue: Any
    """The ``KueueExported`` condition it was planned with (None: no export)."""
    view: Any
    converged: bool


@dataclass
class ClaimEntry:
    """One provider's last claim, valid while its labels and region and the pools hold."""

    labels: Any
    region: str
    pools: tuple[Any, ...]
    claim: claims.Claim | None


@dataclass
class PlanMemo:
    """Per-object results of the last pass (a cache; see the module docstring)."""

    providers: dict[str, ProviderEntry] = field(default_factory=dict)
    nodes: dict[str, NodeEntry] = field(default_factory=dict)
    pools: dict[str, PoolEntry] = field(default_factory=dict)
    claimed: dict[str, ClaimEntry] = field(default_factory=dict)
    claim_order: tuple[tuple[Any, ...], claims.ClaimOrder] | None = None

    def forget(self, providers: set[str], pools: set[str], node_names: set[str]) -> None:
        """Drop entries of objects that no longer exist (keeps the memo bounded)."""
        for cache, live in (
            (self.providers, providers),
            (self.claimed, providers),
            (self.pools, pools),
            (self.nodes, node_names),
        ):
            for name in [n for n in cache if n not in live]:
                del cache[name]


def same_members(a: tuple[ProviderView, ...], b: list[ProviderView]) -> bool:
    """Whether a pool rolls up the very same views (by identity, in the same order)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
