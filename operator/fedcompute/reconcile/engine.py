"""The operator's loops: watch intake, the debounced pass, collections, Leases, resync.

Nothing here decides what to write: a pass takes a snapshot of the world, asks the pure
planner (:func:`fedcompute.capacity.plan.plan`) for the intents, lets the actuator carry
out those whose owner is not backing off, and folds the answers back into the world on
the event loop, its only writer. The same pass runs at start-up, after any event, after
any collection and when an owner's backoff ends (level-triggered). Restarting at any
moment loses nothing: what matters lives in the API, and start-up lists it back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fedcompute.api.accelerator import PLURAL as MODELS
from fedcompute.api.pool import PLURAL as POOLS
from fedcompute.api.provider import PLURAL as PROVIDERS
from fedcompute.api.provider import ComputeProvider
from fedcompute.capacity import inventory, kueue, nodes, profiles
from fedcompute.capacity import plan as planning
from fedcompute.capacity.memo import PlanMemo
from fedcompute.capacity.providers import Collection, member_summarizer, resumed_collection
from fedcompute.intents import Owner
from fedcompute.kube import kubeconfigs, members
from fedcompute.kube.actuator import Actuator
from fedcompute.kube.host import GROUP_PATH, Host, HostError
from fedcompute.metrics import Metrics
from fedcompute.reconcile.backoff import Backoff
from fedcompute.reconcile.collecting import Scheduler
from fedcompute.reconcile.world import NODE, World
from fedcompute.reconcile.writing import Writer

log = logging.getLogger("fedcompute.engine")
FINALIZER = planning.FINALIZER
Json = dict[str, Any]


@dataclass
class EngineSettings:
    """Tunables of one operator process."""

    namespace: str = "fedcompute-system"
    deny_cidrs: tuple[kubeconfigs.IPNetwork, ...] = kubeconfigs.DEFAULT_DENY
    write_concurrency: int = 16
    collect_concurrency: int = 16
    slow_collect_concurrency: int = 4
    debounce: float = 0.05
    node_monitor_grace_period: float = nodes.NODE_MONITOR_GRACE_SECONDS
    """The host's kube-controller-manager --node-monitor-grace-period: Leases are renewed
    just under every half of it, so one lost renewal is survived (see
    :func:`fedcompute.capacity.nodes.lease_period`)."""
    resync_interval: float = 300.0
    max_backoff: float = 60.0
    kueue: bool = False
    """Export pools with ``spec.kueue`` to Kueue (the operator then has rights to)."""
    cluster_profiles_namespace: str | None = None
    """Publish a ClusterProfile per member-cluster provider in this namespace (None: none)."""
    discovery_interval: float = 60.0
    """How often an operator with Kueue export checks whether Kueue's API is served."""


class Engine:
    """Observed world, the loops, and the one place where planning meets writing."""

    def __init__(
        self,
        host: Host,
        settings: EngineSettings | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host = host
        self.settings = s = settings or EngineSettings()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.world = World()
        self.plan = planning.Plan()
        self.passes = 0
        self.actuator = Actuator(host, concurrency=s.write_concurrency, clock=clock)
        self.backoff = Backoff(maximum=s.max_backoff)
        self.writer = Writer(
            self.world, self.actuator, self.backoff, self.metrics, wake=self._wake, clock=clock
        )
        self.collector = Scheduler(
            self._collect,
            workers=s.collect_concurrency,
            slow_workers=s.slow_collect_concurrency,
            metrics=self.metrics,
            clock=clock,
            provider=self._member,
            previous=lambda name: self.world.collections.get(name) or Collection(),
            done=self._collected,
        )
        self._memo = PlanMemo()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failures: Mapping[Owner, str] = {}

    # --- intake (watch handlers, on the event loop) --------------------------------------

    def observe_provider(self, event_type: str | None, body: Json) -> None:
        """Record a ComputeProvider event."""
        before = self.world.observe(PROVIDERS, event_type, body)
        name = str(body["metadata"]["name"])
        owner = (PROVIDERS, name)
        obs = self.world.providers.get(name)
        if obs is None:
            self.world.collections.pop(name, None)
            self.collector.forget(name)
            self._forget(owner)
        elif before is None or before.body.get("spec") != obs.body.get("spec"):
            self._forget(owner)
            model = obs.model
            if isinstance(model, ComputeProvider) and model.spec.source.kubernetes is not None:
                if name not in self.world.collections:
                    full = obs.with_status()
                    assert isinstance(full, ComputeProvider)
                    self.world.collections[name] = resumed_collection(full, self.clock())
                self.collector.due_now(name)
            else:
                self.world.collections.pop(name, None)
                self.collector.forget(name)
        self._dirty.set()

    def observe_pool(self, event_type: str | None, body: Json) -> None:
        """Record a RegionPool event; a changed pool retries its providers' node writes now."""
        before = self.world.observe(POOLS, event_type, body)
        name = str(body["metadata"]["name"])
        obs = self.world.pools.get(name)
        if obs is None or before is None or before.body.get("spec") != obs.body.get("spec"):
            self._forget((POOLS, name))
            self.world.forget_rejections(stream=NODE)
            self.backoff.forget(lambda key: isinstance(key, tuple) and key[1] == NODE)
        self._dirty.set()

    def observe_exported(self, collection: str, event_type: str | None, body: Json) -> None:
        """Record an event of an object the operator exports (Kueue's, ClusterProfiles)."""
        if self.world.observe_exported(collection, event_type, body):
            self._dirty.set()

    def observe_model(self, event_type: str | None, body: Json) -> None:
        """Record an AcceleratorModel event: a changed catalog re-plans every provider."""
        if self.world.observe_model(event_type, body):
            self._dirty.set()

    def _wake(self, delay: float | None) -> None:
        """Ask for another pass now (``None``) or after ``delay`` seconds."""
        if delay is None:
            self._dirty.set()
        else:
            asyncio.get_running_loop().call_later(delay, self._dirty.set)

    def _forget(self, owner: Owner) -> None:
        """A changed object gets its writes tried again at once."""
        self.world.forget_rejections(owner)
        self.backoff.forget(lambda key: isinstance(key, tuple) and key[0] == owner)

    # --- lifecycle -----------------------------------------------------------------------

    async def bootstrap(self) -> None:
        """List everything once, so the first pass sees the whole world (no false orphans)."""
        providers, pools, models, (node_list, lease_list) = await asyncio.gather(
            self.actuator.call(lambda: list(self.host.list_all(f"{GROUP_PATH}/{PROVIDERS}"))),
            self.actuator.call(lambda: list(self.host.list_all(f"{GROUP_PATH}/{POOLS}"))),
            self.actuator.call(self._list_models),
            self.actuator.call(self._list_virtual),
        )
        for body in models:
            self.observe_model(None, body)
        if self.settings.kueue:
            await self._discover_kueue()
        if self.settings.cluster_profiles_namespace:
            await self._discover_profiles()
        for body in providers:
            self.observe_provider(None, body)
        for body in pools:
            self.observe_pool(None, body)
        self.world.replace_virtual(node_list, lease_list)
        counts = (len(providers), len(pools), len(node_list), len(lease_list))
        log.info("observed %d providers, %d pools, %d virtual nodes, %d leases", *counts)

    async def _discover_kueue(self) -> None:
        """Whether Kueue's API is served, and (when it is) the objects exported to it."""
        served = bool(await self.actuator.call(lambda: self.host.served(kueue.API_PATH)))
        if served:
            known = {c: set(self.world.exported.get(c, {})) for c in (kueue.FLAVORS, kueue.QUEUES)}
            flavors, queues = await self.actuator.call(lambda: self._list_kueue(known))
            self.world.replace_exported(kueue.FLAVORS, flavors)
            self.world.replace_exported(kueue.QUEUES, queues)
        if served != self.world.kueue:
            log.info("Kueue (%s) is %s", kueue.GROUP_VERSION, "served" if served else "not served")
            self.world.kueue = served
            self._dirty.set()

    def _list_kueue(self, known: Mapping[str, set[str]]) -> tuple[list[Json], list[Json]]:
        """The ResourceFlavors and ClusterQueues the operator exported (by its label), and
        those of ``known`` names that someone else owns."""
        return (
            self._list_exported(kueue.FLAVORS_PATH, kueue.SELECTOR, known[kueue.FLAVORS]),
            self._list_exported(kueue.QUEUES_PATH, kueue.SELECTOR, known[kueue.QUEUES]),
        )

    def _list_exported(self, path: str, selector: str, known: set[str]) -> list[Json]:
        """A listing of the operator's objects by its label, plus those ``known`` objects
        the listing leaves out that still exist: another's object of an exported name, read
        back when a create found it taken. Re-read one by one (there are few), so the
        pool keeps reporting the name taken instead of trying to create it every round."""
        bodies = list(self.host.list_all(path, label_selector=selector))
        for name in sorted(known - {str(b["metadata"]["name"]) for b in bodies}):
            try:
                bodies.append(self.host.request("GET", f"{path}/{name}"))
            except HostError as exc:
                if exc.status != 404:
                    raise
        return bodies

    async def _discover_profiles(self) -> None:
        """The ClusterProfiles the operator publishes, re-listed now and then (they are not
        watched: the operator may read them in their one namespace only). Nothing is
        planned for them before a listing succeeds, and publishing waits while their CRD
        is not installed."""
        namespace = self.settings.cluster_profiles_namespace
        assert namespace is not None
        known = set(self.world.exported.get(profiles.COLLECTION, {}))
        try:
            bodies = await self.actuator.call(
                lambda: self._list_exported(profiles.path(namespace), profiles.SELECTOR, known)
            )
        except HostError as exc:
            if exc.status != 404:
                raise
            if self.world.cluster_profiles is not None:
                log.warning(
                    "ClusterProfiles (%s) are not served: none published", profiles.GROUP_VERSION
                )
                self.world.cluster_profiles = None
                self._dirty.set()
            return
        self.world.replace_exported(profiles.COLLECTION, bodies)
        self.world.cluster_profiles = namespace
        self._dirty.set()

    async def _discovery_loop(self) -> None:
        """Notice Kueue or the ClusterProfile API being installed or removed, and changes
        made to published ClusterProfiles, while the operator runs."""
        while True:
            await asyncio.sleep(self.settings.discovery_interval)
            for discover in (
                self._discover_kueue if self.settings.kueue else None,
                self._discover_profiles if self.settings.cluster_profiles_namespace else None,
            ):
                if discover is None:
                    continue
                try:
                    await discover()
                except Exception as exc:  # the API may be away; the next round tries again
                    log.warning("discovery failed: %s", exc)

    def _list_models(self) -> list[Json]:
        """AcceleratorModels; none (the built-in catalog alone) while their CRD is missing."""
        try:
            return list(self.host.list_all(f"{GROUP_PATH}/{MODELS}"))
        except HostError as exc:
            if exc.status != 404:
                raise
            log.warning("the AcceleratorModel CRD is not installed: built-in catalog only")
            return []

    def start(self) -> None:
        """Start the loops (after :meth:`bootstrap`); idempotent."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            for coro in (self._reconcile_loop(), self.collector.loop(), self._lease_loop()):
                self._tasks.append(loop.create_task(coro))
            self._tasks.append(loop.create_task(self._resync_loop()))
            if self.settings.kueue or self.settings.cluster_profiles_namespace:
                self._tasks.append(loop.create_task(self._discovery_loop()))

    async def stop_loops(self) -> None:
        """Cancel the loops (the engine keeps observing and can start again)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the loops and release the worker threads."""
        await self.stop_loops()
        self.actuator.close()
        self.collector.close()

    # --- the pass ------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        self._dirty.set()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.settings.debounce)
            self._dirty.clear()
            try:
                await self.reconcile_once()
            except Exception:  # a bug outside every object's boundary: retry, not hot
                log.exception("reconcile pass failed")
                asyncio.get_running_loop().call_later(self.settings.max_backoff, self._dirty.set)

    async def reconcile_once(self) -> None:
        """Plan from the observed world, write what is due, fold the answers back."""
        self.passes += 1
        self.metrics.reconciles.inc()
        started = time.monotonic()
        plan = planning.plan(
            self.world.snapshot(),
            self.world.collections,
            self.clock(),
            memo=self._memo,
            lease_seconds=int(self.settings.node_monitor_grace_period),
        )
        # Keep the views and Leases; the intents go as they are written (memory).
        self.plan = dataclasses.replace(plan, intents=())
        self.metrics.plan.update(self.plan, self.world.collections)
        self._report_failures(plan)
        chains = self.writer.due(plan.by_owner())
        if plan.retry_after is not None:
            self._wake(plan.retry_after + 0.05)
        del plan
        planned = time.monotonic()
        writes = sum(len(c) for c in chains.values())
        await self.writer.write(chains)
        log.info(
            "pass %d: planned %d providers and %d pools in %.2fs, %d writes in %.2fs",
            self.passes,
            len(self.plan.providers),
            len(self.plan.pools),
            planned - started,
            writes,
            time.monotonic() - planned,
        )

    def _report_failures(self, plan: planning.Plan) -> None:
        """Log each object's plan failure once per change (its condition says it always)."""
        for owner, message in plan.failures.items():
            if self._failures.get(owner) != message:
                kind = "ComputeProvider" if owner[0] == PROVIDERS else "RegionPool"
                self.metrics.plan_failures.labels(kind).inc()
                log.error(
                    "planning %s %s failed: %s\n%s",
                    kind,
                    owner[1],
                    message,
                    plan.tracebacks.get(owner, ""),
                )
        self._failures = plan.failures

    # --- collections ---------------------------------------------------------------------

    def _collect(self, provider: ComputeProvider, timeout: float) -> inventory.MemberInventory:
        """Runs on a collection worker: Secret -> vetted kubeconfig -> bounded reads."""
        return members.collect_provider(
            self.host,
            provider,
            namespace=self.settings.namespace,
            deny_cidrs=self.settings.deny_cidrs,
            timeout=timeout,
            summarize=member_summarizer(provider, self._last_inventory(provider.name)),
        )

    def _last_inventory(self, name: str) -> inventory.MemberInventory | None:
        # Read from a worker thread: one dict lookup, and Collections are immutable.
        collection = self.world.collections.get(name)
        return collection.inventory if collection is not None else None

    def _member(self, name: str) -> ComputeProvider | None:
        obs = self.world.providers.get(name)
        model = obs.model if obs is not None else None
        return model if isinstance(model, ComputeProvider) else None

    def _collected(self, name: str, result: Collection) -> None:
        if name in self.world.providers:
            self.world.collections[name] = result
            self._dirty.set()

    # --- Leases and resync ---------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """Renew each wanted Lease once a period, spread evenly over it (no bursts)."""
        schedule = planning.RenewalSchedule(
            nodes.lease_period(self.settings.node_monitor_grace_period)
        )
        while True:
            await asyncio.sleep(min(1.0, schedule.period / 4))
            due = schedule.due(self.plan.leases, self.world.leases, self.clock().timestamp())
            chains = self.writer.due({r.owner: [r] for r in planning.renewals(due, self.clock())})
            if chains:
                await self.writer.write(chains)

    async def _resync_loop(self) -> None:
        """Re-list nodes and Leases now and then, to repair changes made behind our back."""
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            try:
                node_list, lease_list = await self.actuator.call(self._list_virtual)
            except Exception as exc:  # the API may be away; the next resync tries again
                log.warning("resync failed: %s", exc)
                continue
            self.world.replace_virtual(node_list, lease_list)
            self._dirty.set()

    def _list_virtual(self) -> tuple[list[Json], list[Json]]:
        """The operator's virtual Nodes and their Leases, as the API has them now."""
        return self.host.list_labelled(
            label=nodes.LABEL_PROVIDER, lease_namespace=nodes.LEASE_NAMESPACE
        )
