"""``plan(snapshot, collections, now) -> Plan``: every write the platform needs, decided. Pure.

Decide, then do: this module turns the observed world into frozen, typed intents (set
finalizers, patch status, post an event, create, patch or delete a virtual Node, create
or delete its Lease) plus the views metrics and reports read. It performs no I/O and
reads no clock; :mod:`fedcompute.kube.actuator` carries the intents out.

Isolation: each provider and each pool is planned inside its own error boundary. An
object whose plan raises gets a condition (reason ``PlanFailed``, naming the field where
it can) and an Event, its virtual node is left exactly as it is, and every other
object's intents are what they would be without the failure (its pool counts it as a
claimed provider that is not Ready and offers nothing).

Intents of one object share an ``owner`` (``(plural, name)``; a virtual node and its
Lease belong to their provider) and must run in the order planned: finalizers, status,
event, node, lease.
"""

from __future__ import annotations

import functools
import hashlib
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from fedcompute.api.common import FALSE, TRUE, ConditionSet, ConditionStatus
from fedcompute.api.pool import PLURAL as POOLS
from fedcompute.api.pool import ConditionType as PoolCondition
from fedcompute.api.pool import Reason as PoolReason
from fedcompute.api.pool import RegionPool, RegionPoolStatus
from fedcompute.api.provider import PLURAL as PROVIDERS
from fedcompute.api.provider import ComputeProvider, ComputeProviderStatus, Reason
from fedcompute.api.provider import ConditionType as ProviderCondition
from fedcompute.capacity import claims, kueue, nodes, profiles, providers, rollup
from fedcompute.capacity.memo import (
    ClaimEntry,
    NodeEntry,
    PlanMemo,
    PoolEntry,
    ProviderEntry,
    same_members,
)
from fedcompute.capacity.providers import (
    Collection,
    ProviderView,
    builtin_catalog,
    plan_provider,
)
from fedcompute.capacity.snapshot import (
    POOL_CONDITIONS,
    PROVIDER_CONDITIONS,
    Observed,
    Snapshot,
    field_error,
    salvage_status,
)
from fedcompute.intents import (
    CreateLease,
    CreateNode,
    DeleteLease,
    DeleteNode,
    Intent,
    Owner,
    PatchNode,
    PatchStatus,
    PostEvent,
    RenewLease,
    SetFinalizers,
)
from fedcompute.patches import merge_patch

FINALIZER: Final = "fedcompute.io/finalizer"
Json = dict[str, Any]
T = TypeVar("T")
ABNORMAL_TRUE: Final = frozenset(
    {PoolCondition.DEGRADED, PoolCondition.RECONCILING, PoolCondition.STALLED}
)
"""Condition types that are good when False."""
ConditionSpec = tuple[str, ConditionStatus, str, str]
"""(type, status, reason, message) of one condition to set."""

# --- the plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolView:
    """A pool's planned status and provider counts, for metrics and reports."""

    name: str
    status: RegionPoolStatus
    ready: int
    not_ready: int

    @functools.cached_property
    def wire(self) -> Json:
        """``status`` in its wire form (computed once)."""
        return self.status.to_wire()


@dataclass(frozen=True)
class Plan:
    """Everything one pass decided."""

    intents: tuple[Intent, ...] = ()
    providers: Mapping[str, ProviderView] = field(default_factory=dict)
    """Views of the live, valid providers (a failed one as not Ready, without figures)."""
    pools: Mapping[str, PoolView] = field(default_factory=dict)
    failures: Mapping[Owner, str] = field(default_factory=dict)
    """Objects whose plan raised, with the message put on their condition."""
    tracebacks: Mapping[Owner, str] = field(default_factory=dict)
    """The traceback of each failure, for the log (never for status)."""
    leases: Mapping[str, str] = field(default_factory=dict)
    """Virtual node name -> provider, for the Leases to keep renewing."""
    retry_after: float | None = None
    """Seconds after which a change held back (a rate-limited ClusterProfile) is due."""

    def by_owner(self) -> dict[Owner, list[Intent]]:
        """Intents grouped per owner, each group in planned order."""
        groups: dict[Owner, list[Intent]] = {}
        for intent in self.intents:
            groups.setdefault(intent.owner, []).append(intent)
        return groups


def plan(
    snapshot: Snapshot,
    collections: Mapping[str, Collection],
    now: datetime,
    *,
    memo: PlanMemo | None = None,
    lease_seconds: int = nodes.LEASE_DURATION_SECONDS,
) -> Plan:
    """Every write that brings the observed world to the desired one, and the views.

    ``lease_seconds`` is the ``leaseDurationSeconds`` of the Leases created (the host's
    node-monitor grace period).
    """
    planner = _Planner(snapshot, collections, now, memo or PlanMemo())
    planner.lease_seconds = lease_seconds
    planner.plan_finalizers()
    planner.plan_invalid()
    planner.plan_providers()
    planner.plan_nodes()
    planner.plan_pools()
    return planner.result()


def renewals(due: Mapping[str, str], now: datetime) -> list[RenewLease]:
    """Renewals of the Leases in ``due`` (virtual node name -> provider), stamped ``now``."""
    stamp = nodes.micro_time(now)
    return [
        RenewLease((PROVIDERS, provider), name, nodes.LEASE_NAMESPACE, stamp)
        for name, provider in due.items()
    ]


class RenewalSchedule:
    """When each wanted Lease is next renewed: on a grid of its own, once a period.

    Each node's Lease is renewed at the times ``phase + k * period`` (the phase comes from
    its name, so thousands of Leases are spread evenly over the period instead of coming
    in bursts, and stay spread across restarts): the first grid time after its last
    renewal, which is never more than a period after it. A Lease whose grid time has
    passed (an operator that was away) is renewed at once, then joins its grid. Times are
    Unix seconds, passed in (no clock is read here).
    """

    def __init__(self, period: float) -> None:
        self.period = period
        self._next: dict[str, float] = {}

    def phase(self, name: str) -> float:
        """``name``'s offset within the period."""
        digest = hashlib.blake2s(name.encode(), digest_size=4).digest()
        return self.period * int.from_bytes(digest, "big") / 2**32

    def next_after(self, name: str, renewed: float) -> float:
        """The grid time of ``name`` in ``(renewed, renewed + period]``."""
        phase = self.phase(name)
        k = (renewed - phase) // self.period + 1
        return phase + k * self.period

    def due(
        self, wanted: Mapping[str, str], leases: Mapping[str, Json], now: float
    ) -> dict[str, str]:
        """The Leases to renew at ``now``: wanted, existing, and whose time has come."""
        due: dict[str, str] = {}
        for name, provider in wanted.items():
            lease = leases.get(name)
            if lease is None:
                continue  # a pass creates it; renewing starts from there
            at = self._next.get(name)
            if at is None:
                at = self.next_after(name, _renewed(lease, now))
                self._next[name] = at
            if at <= now:
                due[name] = provider
                self._next[name] = self.next_after(name, now)
        for name in [n for n in self._next if n not in wanted]:
            del self._next[name]
        return due


def _renewed(lease: Json, default: float) -> float:
    """A Lease's ``spec.renewTime`` in Unix seconds (``default`` when unreadable)."""
    value = (lease.get("spec") or {}).get("renewTime")
    if not isinstance(value, str):
        return default
    try:
        stamp = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return default
    return stamp.replace(tzinfo=UTC).timestamp()


def describe_failure(exc: Exception) -> str:
    """A condition message for an exception raised while planning, naming the field."""
    if isinstance(exc, ValidationError):
        return f"cannot plan: {field_error(exc)}"
    detail = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"cannot plan: {type(exc).__name__}" + (f": {detail}" if detail else "")


# --- the planner -----------------------------------------------------------------------


class _Planner:
    """One pass's working state; each public step guards every object separately."""

    def __init__(
        self,
        snapshot: Snapshot,
        collections: Mapping[str, Collection],
        now: datetime,
        memo: PlanMemo,
    ) -> None:
        self.s = snapshot
        self.collections = collections
        self.now = now
        self.memo = memo
        self.catalog = snapshot.catalog or builtin_catalog()
        self.lease_seconds = nodes.LEASE_DURATION_SECONDS
        self.intents: list[Intent] = []
        self.failures: dict[Owner, str] = {}
        self.tracebacks: dict[Owner, str] = {}
        self.views: dict[str, ProviderView] = {}
        self.pool_views: dict[str, PoolView] = {}
        self.leases: dict[str, str] = {}
        self.models: dict[str, ComputeProvider] = {}
        self.pool_models: dict[str, RegionPool] = {}
        for name, obs in snapshot.providers.items():
            if isinstance(obs.model, ComputeProvider) and not obs.deleting:
                self.models[name] = obs.model
        for name, obs in snapshot.pools.items():
            if isinstance(obs.model, RegionPool):
                self.pool_models[name] = obs.model
        self.claimers = self._claim_order()
        self.frozen: set[str] = set()
        self.retry_after: float | None = None
        """Existing virtual nodes left exactly as they are this pass."""
        self.desired: dict[str, nodes.DesiredNode] = {}

    def _claim_order(self) -> claims.ClaimOrder:
        """The pools in claiming order, rebuilt only when a pool's spec or life changed."""
        key = tuple(
            (name, o.metadata.get("generation"), o.deleting, name in self.pool_models)
            for name, o in sorted(self.s.pools.items())
        )
        if self.memo.claim_order is not None and self.memo.claim_order[0] == key:
            return self.memo.claim_order[1]
        order = claims.claim_order(
            self.pool_models.values(),
            deleting=[n for n, o in self.s.pools.items() if o.deleting],
        )
        self.memo.claim_order = (key, order)
        self.memo.claimed.clear()
        return order

    def _claim(self, provider: ComputeProvider) -> claims.Claim | None:
        labels, region = provider.metadata.labels, provider.spec.region
        entry = self.memo.claimed.get(provider.name)
        if entry is not None and entry.region == region and entry.labels == labels:
            return entry.claim
        claim = claims.claim_one(provider, self.claimers)
        self.memo.claimed[provider.name] = ClaimEntry(labels, region, (), claim)
        return claim

    def _guard(self, owner: Owner, step: Callable[[], T]) -> T | None:
        """Run one object's step; a failure becomes that object's, and only its."""
        try:
            return step()
        except Exception as exc:  # the error boundary: whatever one object raises
            if owner not in self.failures:
                self.failures[owner] = describe_failure(exc)
                self.tracebacks[owner] = "".join(traceback.format_exception(exc))
            return None

    def result(self) -> Plan:
        """The frozen Plan."""
        self.memo.forget(set(self.models), set(self.pool_models), set(self.desired))
        return Plan(
            intents=tuple(self.intents),
            providers=dict(self.views),
            pools=dict(self.pool_views),
            failures=dict(self.failures),
            tracebacks=dict(self.tracebacks),
            leases=dict(self.leases),
            retry_after=self.retry_after,
        )

    # --- finalizers ----------------------------------------------------------------------

    def plan_finalizers(self) -> None:
        """Add the finalizer to live objects; remove it once nothing hangs on a deleted one."""
        for plural, objects in ((PROVIDERS, self.s.providers), (POOLS, self.s.pools)):
            for name, obs in objects.items():
                current = obs.finalizers
                if obs.deleting:
                    if FINALIZER in current and self._released(plural, name, obs):
                        keep = tuple(f for f in current if f != FINALIZER)
                        self._add(SetFinalizers((plural, name), keep, obs.resource_version))
                elif FINALIZER not in current:
                    wanted = (*current, FINALIZER)
                    self._add(SetFinalizers((plural, name), wanted, obs.resource_version))

    def _released(self, plural: str, name: str, obs: Observed) -> bool:
        """Whether a deleting object no longer has virtual nodes or Leases hanging on it."""
        if plural == PROVIDERS:
            vnode = nodes.node_name(name)
            return vnode not in self.s.nodes and vnode not in self.s.leases
        uid = obs.metadata.get("uid")
        for node in self.s.nodes.values():
            meta = node.get("metadata") or {}
            if (meta.get("labels") or {}).get(nodes.LABEL_POOL) == name:
                return False
            if any(o.get("uid") == uid for o in meta.get("ownerReferences") or []):
                return False
        return True

    def _add(self, intent: Intent) -> None:
        self.intents.append(intent)

    def _rejected(self, owner: Owner) -> str | None:
        """The condition message for a write of ``owner`` the API server refused, if any."""
        rejection = self.s.rejections.get(owner)
        if rejection is None:
            return None
        return (
            f"the API server refused {rejection.what} (HTTP {rejection.code}): {rejection.message}"
        )

    # --- objects whose spec does not validate -------------------------------------------

    def plan_invalid(self) -> None:
        """``Ready=False InvalidSpec`` naming the field; their nodes stay as they are."""
        for name, obs in self.s.providers.items():
            if obs.model is None and not obs.deleting:
                self.frozen.add(nodes.node_name(name))
                self._condition_patch(
                    (PROVIDERS, name),
                    obs,
                    [
                        (ProviderCondition.READY, FALSE, Reason.INVALID_SPEC, obs.error),
                        (ProviderCondition.RECONCILING, FALSE, Reason.RECONCILED, ""),
                        (ProviderCondition.STALLED, TRUE, Reason.INVALID_SPEC, obs.error),
                    ],
                )
        for name, obs in self.s.pools.items():
            if obs.model is None and not obs.deleting:
                self._condition_patch(
                    (POOLS, name),
                    obs,
                    [
                        (PoolCondition.READY, FALSE, PoolReason.INVALID_SPEC, obs.error),
                        (PoolCondition.DEGRADED, TRUE, PoolReason.INVALID_SPEC, obs.error),
                        (PoolCondition.RECONCILING, FALSE, PoolReason.RECONCILED, ""),
                        (PoolCondition.STALLED, TRUE, PoolReason.INVALID_SPEC, obs.error),
                    ],
                )

    def _condition_patch(self, owner: Owner, obs: Observed, sets: Iterable[ConditionSpec]) -> None:
        """Patch only the conditions (the rest of the status is left as it is)."""
        provider = owner[0] == PROVIDERS
        status_model = ComputeProviderStatus if provider else RegionPoolStatus
        owned = PROVIDER_CONDITIONS if provider else POOL_CONDITIONS
        previous = salvage_status(obs.raw_status, status_model, owned)
        generation = obs.metadata.get("generation")
        conditions = ConditionSet(
            previous.conditions if previous else None,
            generation=generation if isinstance(generation, int) else None,
            now=self.now,
            order=providers.ORDER if provider else rollup.ORDER,
        )
        for type_, status, reason, message in sets:
            conditions.set(type_, status, reason, message)
        wanted = [c.to_wire() for c in conditions.result()]
        observed = obs.raw_status.get("conditions")
        if _same_conditions(observed, wanted):
            return
        self._add(PatchStatus(owner, {"conditions": wanted}))
        self._event(owner, obs, wanted)

    # --- providers -----------------------------------------------------------------------

    def plan_providers(self) -> None:
        """Claim and plan every live provider, each in its own boundary."""
        for name, provider in self.models.items():
            owner = (PROVIDERS, name)
            claim = self._guard(owner, partial(self._claim, provider))
            if owner in self.failures:
                self._failed_provider(name, provider, None)
                continue
            view = self._guard(owner, partial(self._provider, provider, claim))
            if view is None:
                self._failed_provider(name, provider, claim)
            else:
                self.views[name] = view
                if self.s.cluster_profiles and provider.spec.source.kubernetes is not None:
                    self._guard(owner, partial(self._profile, provider, view))
        if self.s.cluster_profiles:
            self._guard((PROVIDERS, "(deleted providers' ClusterProfiles)"), self._profile_orphans)

    def _profile(self, provider: ComputeProvider, view: ProviderView) -> None:
        """The provider's ClusterProfile, written on change and at most every 30 s."""
        namespace = self.s.cluster_profiles or ""
        collection = self.collections.get(provider.name)
        figures = collection.inventory if collection is not None else None
        result = profiles.plan_profile(
            provider,
            view,
            namespace=namespace,
            version=figures.kubernetes_version if figures is not None else "",
            observed=self.s.exported.get(profiles.COLLECTION, {}).get(provider.name),
            last_write=self.s.export_written.get((profiles.COLLECTION, provider.name)),
            now=self.now,
        )
        self.intents.extend(result.intents)
        if result.retry_after is not None:
            self.retry_after = min(self.retry_after or result.retry_after, result.retry_after)

    def _profile_orphans(self) -> None:
        members = {n for n, p in self.models.items() if p.spec.source.kubernetes is not None}
        self.intents.extend(
            profiles.orphans(
                self.s.exported.get(profiles.COLLECTION, {}),
                namespace=self.s.cluster_profiles or "",
                members=members,
            )
        )

    def _provider(self, provider: ComputeProvider, claim: claims.Claim | None) -> ProviderView:
        """One provider's view and status intents, reused while its inputs hold."""
        name = provider.name
        owner = (PROVIDERS, name)
        obs = self.s.providers[name]
        rejected = self._rejected(owner)
        collection = self.collections.get(name)
        stale = _stale(provider, collection, self.now)
        entry = self.memo.providers.get(name)
        if (
            entry is not None
            and entry.claim == claim
            and entry.collection is collection
            and entry.rejected == rejected
            and entry.stale == stale
            and entry.catalog is self.catalog
            and (collection is not None or provider.spec.source.static is not None)
        ):
            if entry.obs is obs and entry.converged:  # converged: independent of the clock
                return entry.view
            body = obs.body
            if (
                body.get("spec") == entry.spec
                and (obs.metadata.get("generation"), obs.metadata.get("labels")) == entry.labels
                and obs.raw_status == entry.view.status_wire
            ):  # the answer to our own status write: converged, nothing to redo
                entry.obs, entry.converged = obs, True
                return entry.view
        full = obs.with_status()
        assert isinstance(full, ComputeProvider)
        view = plan_provider(
            full,
            collection=collection,
            claim=claim,
            now=self.now,
            rejected=rejected,
            catalog=self.catalog,
        )
        first = len(self.intents)
        self._status_patch(owner, obs, view.status_wire, ComputeProviderStatus)
        self.memo.providers[name] = ProviderEntry(
            obs,
            obs.body.get("spec"),
            (obs.metadata.get("generation"), obs.metadata.get("labels")),
            claim,
            collection,
            rejected,
            stale,
            self.catalog,
            view,
            len(self.intents) == first,
        )
        return view

    def _failed_provider(
        self, name: str, provider: ComputeProvider, claim: claims.Claim | None
    ) -> None:
        """A provider whose plan raised: a condition, a frozen node, not Ready in its pool."""
        owner = (PROVIDERS, name)
        message = self.failures[owner]
        self.frozen.add(nodes.node_name(name))
        self.views[name] = ProviderView(
            name=name,
            region=provider.spec.region,
            ready=False,
            offered=False,
            claim=claim,
            status_wire=self.s.providers[name].raw_status,
            ready_reason=Reason.PLAN_FAILED,
            ready_message=message,
        )
        failed: list[ConditionSpec] = [
            (ProviderCondition.READY, FALSE, Reason.PLAN_FAILED, message)
        ]
        self._guard(owner, partial(self._condition_patch, owner, self.s.providers[name], failed))

    def _status_patch(
        self,
        owner: Owner,
        obs: Observed,
        wanted: Json,
        model: type[ComputeProviderStatus] | type[RegionPoolStatus],
    ) -> None:
        """Patch the status when it differs in meaning from what is observed."""
        observed = obs.raw_status
        if observed == wanted:
            return
        try:
            if model.model_validate(observed).to_wire() == wanted:
                return
        except ValidationError:
            pass  # not ours (or garbage): replace it
        self._add(PatchStatus(owner, merge_patch(observed, wanted)))
        self._event(owner, obs, wanted.get("conditions") or [])

    def _event(self, owner: Owner, obs: Observed, after: list[Json]) -> None:
        event = transition_event(owner, obs, after)
        if event is not None:
            self._add(event)

    # --- nodes ---------------------------------------------------------------------------

    def plan_nodes(self) -> None:
        """Desired virtual nodes and Leases, diffed against the observed ones."""
        for name, view in self.views.items():
            owner = (PROVIDERS, name)
            if owner in self.failures or view.claim is None:
                continue
            pool = self.pool_models[view.claim.pool]
            vnode = nodes.node_name(name)
            if pool.spec.paused:
                self.frozen.add(vnode)
                continue
            entry = self.memo.nodes.get(vnode)
            if entry is not None and entry.view is view and entry.pool is pool:
                desired: nodes.DesiredNode | None = entry.desired
            else:
                desired = self._guard(
                    owner, partial(nodes.desired_node, self.models[name], pool, view)
                )
            planned = desired is not None and self._guard(
                owner, partial(self._node, desired, view, pool)
            )
            if desired is None or not planned:
                self._fail_late(name)
            else:
                self.desired[vnode] = desired
        self._orphans()

    def _fail_late(self, provider: str) -> None:
        """A provider whose node step raised after its status was planned."""
        owner = (PROVIDERS, provider)
        self.intents = [i for i in self.intents if i.owner != owner or isinstance(i, SetFinalizers)]
        self.desired.pop(nodes.node_name(provider), None)
        self._failed_provider(provider, self.models[provider], self.views[provider].claim)

    def _node(self, d: nodes.DesiredNode, view: ProviderView, pool: RegionPool) -> bool:
        """One node's and Lease's intents, reused while the node and its wants hold."""
        owner = (PROVIDERS, d.provider)
        observed = self.s.nodes.get(d.name)
        has_lease = d.name in self.s.leases
        if d.lease_wanted:
            self.leases[d.name] = d.provider
        entry = self.memo.nodes.get(d.name)
        if (
            entry is not None
            and entry.converged  # only a converged plan is independent of the clock
            and entry.desired is d
            and entry.node is observed
            and entry.lease == has_lease
        ):
            return True
        first = len(self.intents)
        if observed is None:
            lease = None
            if d.lease_wanted:
                lease = nodes.lease_body(d.name, d.provider, "", self.now, self.lease_seconds)
            self._add(CreateNode(owner, d.name, nodes.node_body(d, self.now), lease))
        else:
            meta_patch = nodes.metadata_patch(d, observed)
            status_patch = nodes.status_patch(d, observed, self.now)
            if meta_patch or status_patch:
                self._add(PatchNode(owner, d.name, meta_patch, status_patch))
            if d.lease_wanted and not has_lease:
                uid = str((observed.get("metadata") or {}).get("uid") or "")
                body = nodes.lease_body(d.name, d.provider, uid, self.now, self.lease_seconds)
                self._add(CreateLease(owner, d.name, body))
        self.memo.nodes[d.name] = NodeEntry(
            view, pool, d, observed, has_lease, len(self.intents) == first
        )
        return True

    def _orphans(self) -> None:
        """Nodes and Leases nobody wants any more (paused pools' and failed ones' stay)."""
        for name, node in self.s.nodes.items():  # a paused pool keeps its nodes, claimed or not
            labels = (node.get("metadata") or {}).get("labels") or {}
            pool = self.pool_models.get(str(labels.get(nodes.LABEL_POOL, "")))
            if (
                pool is not None
                and pool.spec.paused
                and not self.s.pools[pool.name].deleting
                and str(labels.get(nodes.LABEL_PROVIDER, "")) in self.views
            ):
                self.frozen.add(name)
        for name in self.s.nodes:
            if name not in self.desired and name not in self.frozen:
                self._add(DeleteNode((PROVIDERS, _provider_of(name)), name, nodes.LEASE_NAMESPACE))
        for name in self.s.leases:
            if name not in self.s.nodes and name not in self.desired and name not in self.frozen:
                self._add(DeleteLease((PROVIDERS, _provider_of(name)), name, nodes.LEASE_NAMESPACE))

    # --- pools ---------------------------------------------------------------------------

    def plan_pools(self) -> None:
        """Roll each live pool up from its claimed providers, in its own boundary."""
        members: dict[str, list[ProviderView]] = {}
        for name in sorted(self.views):
            view = self.views[name]
            if view.claim is not None:
                members.setdefault(view.claim.pool, []).append(view)
        counts: dict[str, int] = {}
        for d in self.desired.values():
            counts[d.pool] = counts.get(d.pool, 0) + 1
        for vnode in self.frozen & set(self.s.nodes):
            labels = (self.s.nodes[vnode].get("metadata") or {}).get("labels") or {}
            pool_name = str(labels.get(nodes.LABEL_POOL, ""))
            counts[pool_name] = counts.get(pool_name, 0) + 1
        for name, pool in self.pool_models.items():
            obs = self.s.pools[name]
            if obs.deleting:
                continue
            owner = (POOLS, name)
            views = members.get(name, [])
            export = self._guard(owner, partial(self._kueue, pool, views))
            if owner in self.failures:
                export = None
            if self._guard(owner, partial(self._pool, pool, views, obs, counts, export)) is None:
                message = self.failures[owner]
                failed: list[ConditionSpec] = [
                    (PoolCondition.READY, FALSE, PoolReason.PLAN_FAILED, message),
                    (PoolCondition.DEGRADED, TRUE, PoolReason.PLAN_FAILED, message),
                ]
                self._guard(owner, partial(self._condition_patch, owner, obs, failed))
        self._guard((POOLS, "(deleted pools' Kueue objects)"), self._kueue_orphans)

    def _kueue(self, pool: RegionPool, views: list[ProviderView]) -> kueue.KueuePlan | None:
        """The pool's Kueue export (None when it neither exports nor has exported)."""
        exported = self.s.exported
        if pool.spec.kueue is None and not any(
            kueue.owned_by(body, pool.name)
            for collection in (kueue.FLAVORS, kueue.QUEUES)
            for body in exported.get(collection, {}).values()
        ):
            return None
        rejection = self.s.export_rejections.get((POOLS, pool.name))
        refused = None
        if rejection is not None:
            refused = (
                f"the API server refused to {rejection.what} (HTTP {rejection.code}): "
                f"{rejection.message}"
            )
        return kueue.plan_export(
            pool,
            views,
            exported,
            installed=bool(self.s.kueue),
            enabled=self.s.kueue is not None,
            refused=refused,
        )

    def _kueue_orphans(self) -> None:
        """Delete exported Kueue objects of pools that no longer exist."""
        self.intents.extend(kueue.orphans(self.s.exported, set(self.s.pools)))

    def _pool(
        self,
        pool: RegionPool,
        views: list[ProviderView],
        obs: Observed,
        counts: Mapping[str, int],
        export: kueue.KueuePlan | None,
    ) -> bool:
        """One pool's roll-up and status intents, reused while its members hold."""
        owner = (POOLS, pool.name)
        count = counts.get(pool.name, 0)
        rejected = self._rejected(owner)
        condition = export.condition if export is not None else None
        export_intents = export.intents if export is not None else ()
        entry = self.memo.pools.get(pool.name)
        if (
            entry is not None
            and entry.nodes == count
            and entry.rejected == rejected
            and entry.kueue == condition
            and same_members(entry.members, views)
        ):
            if entry.obs is obs and entry.converged:  # converged: independent of the clock
                self.pool_views[pool.name] = entry.view
                self.intents.extend(export_intents)
                return True
            if (
                obs.body.get("spec") == entry.spec
                and obs.metadata.get("generation") == entry.generation
                and obs.raw_status == entry.view.wire
            ):
                entry.obs, entry.converged = obs, True  # the answer to our own status write
                self.pool_views[pool.name] = entry.view
                self.intents.extend(export_intents)
                return True
        full = obs.with_status()
        assert isinstance(full, RegionPool)
        status = rollup.plan_pool(
            full, views, nodes=count, now=self.now, rejected=rejected, kueue=condition
        )
        ready = sum(1 for v in views if v.ready)
        view = PoolView(pool.name, status, ready, len(views) - ready)
        first = len(self.intents)
        self._status_patch(owner, obs, view.wire, RegionPoolStatus)
        self.pool_views[pool.name] = view
        self.memo.pools[pool.name] = PoolEntry(
            obs,
            obs.body.get("spec"),
            obs.metadata.get("generation"),
            tuple(views),
            count,
            rejected,
            condition,
            view,
            len(self.intents) == first,
        )
        self.intents.extend(export_intents)
        return True


def _stale(provider: ComputeProvider, collection: Collection | None, now: datetime) -> bool:
    """Whether a member's figures are older than its staleAfter (the one way time alone
    changes a plan)."""
    if collection is None or collection.succeeded_at is None:
        return False
    return (now - collection.succeeded_at).total_seconds() > provider.spec.monitoring.stale_after


def _provider_of(node_name: str) -> str:
    prefix = nodes.node_name("")
    return node_name[len(prefix) :] if node_name.startswith(prefix) else node_name


def _same_conditions(observed: object, wanted: list[Json]) -> bool:
    if not isinstance(observed, list):
        return False
    return observed == wanted


def transition_event(owner: Owner, obs: Observed, after: list[Json]) -> PostEvent | None:
    """One Event for a status write: the first warning, else the first good transition.

    A new object starting out well is not news; a bad start is. A condition that stays
    bad but changes its reason is news too.
    """
    before = {
        str(c.get("type")): c
        for c in obs.raw_status.get("conditions") or []
        if isinstance(c, Mapping)
    }
    news: list[tuple[str, str, str]] = []
    for cond in after:
        if cond.get("type") == ProviderCondition.RECONCILING:
            continue  # progress, not news: every spec change passes through it
        prior = before.get(str(cond.get("type")))
        changed = prior is None or prior.get("status") != cond.get("status")
        reason_changed = (
            prior is not None
            and cond.get("status") != TRUE
            and prior.get("reason") != cond.get("reason")
        )
        good = (cond.get("status") == TRUE) != (cond.get("type") in ABNORMAL_TRUE)
        if (prior is None and good) or not (changed or reason_changed):
            continue
        news.append(
            (
                "Normal" if good else "Warning",
                f"{cond.get('type')}{cond.get('status')}" if good else str(cond.get("reason")),
                str(cond.get("message") or cond.get("reason")),
            )
        )
    if not news:
        return None
    news.sort(key=lambda n: n[0] != "Warning")
    type_, reason, message = news[0]
    kind = "ComputeProvider" if owner[0] == PROVIDERS else "RegionPool"
    return PostEvent(
        owner,
        kind,
        str(obs.metadata.get("uid") or ""),
        obs.resource_version,
        type_,
        reason[:128],
        message[:1024],
    )
