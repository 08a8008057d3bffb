"""The reconcile engine: observed world in, the fewest API writes out.

Kopf's watch handlers feed :meth:`Engine.observe`; nothing else changes the world. One
debounced loop turns a burst of changes into a single pass that plans every provider,
pool, node and lease from the whole observed state (level-triggered: the same pass runs
at start-up, after any event and after any collection) and then writes only what
differs. Member collections run on their own schedule in a bounded thread pool; Lease
renewals run every 10 seconds. Restarting at any moment loses nothing: the state that
matters lives in the API (finalizers, nodes, leases, status), and start-up lists it back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from fedcompute.api import API_VERSION
from fedcompute.api.common import LabelSelector
from fedcompute.api.pool import PLURAL as POOL_PLURAL
from fedcompute.api.pool import RegionPool, RegionPoolStatus
from fedcompute.api.provider import PLURAL as PROVIDER_PLURAL
from fedcompute.api.provider import ComputeProvider, ComputeProviderStatus, Reason
from fedcompute.capacity import claims, inventory, nodes, rollup
from fedcompute.capacity.providers import (
    Collection,
    ProviderView,
    plan_provider,
    resumed_collection,
)
from fedcompute.kube import kubeconfigs, members
from fedcompute.kube.host import GROUP_PATH, Host, HostError
from fedcompute.metrics import Metrics
from fedcompute.patches import merge_patch

log = logging.getLogger("fedcompute.engine")

FINALIZER: Final = "fedcompute.io/finalizer"
EVENT_NAMESPACE: Final = "default"
Json = dict[str, Any]
T = TypeVar("T")
_PlanKey = tuple[Any, Any, Any]
Job = tuple[str, Callable[[], Any]]
"""A write, keyed by the object whose writes must run in order."""


@dataclass
class EngineSettings:
    """Tunables of one operator process."""

    namespace: str = "fedcompute-system"
    deny_cidrs: tuple[kubeconfigs.IPNetwork, ...] = kubeconfigs.DEFAULT_DENY
    write_concurrency: int = 16
    collect_concurrency: int = 16
    debounce: float = 0.2
    lease_interval: float = nodes.LEASE_RENEW_SECONDS
    resync_interval: float = 300.0
    max_backoff: float = 60.0


class _Object:
    """One observed custom object: its raw body, parsed into its model on first use.

    Every watch event and every write response replaces the body; parsing each of them
    would cost a pydantic validation per write, so only the pass that reads the model
    parses it, once per version.
    """

    __slots__ = ("_error", "_kind", "_model", "body")

    def __init__(self, kind: type[ComputeProvider] | type[RegionPool], body: Json) -> None:
        self.body = body
        self._kind = kind
        self._model: ComputeProvider | RegionPool | None = None
        self._error: str | None = None

    def _load(self) -> None:
        if self._model is None and self._error is None:
            try:
                self._model = self._kind.model_validate(self.body)
            except ValidationError as exc:
                self._error = _field_error(exc)

    @property
    def model(self) -> ComputeProvider | RegionPool | None:
        """The parsed object, or None when the body does not validate."""
        self._load()
        return self._model

    @property
    def error(self) -> str:
        """Why the body does not validate ('' when it does)."""
        self._load()
        return self._error or ""


@dataclass
class World:
    """Everything the engine has observed, keyed by name."""

    providers: dict[str, _Object] = field(default_factory=dict)
    pools: dict[str, _Object] = field(default_factory=dict)
    nodes: dict[str, Json] = field(default_factory=dict)
    leases: dict[str, Json] = field(default_factory=dict)
    collections: dict[str, Collection] = field(default_factory=dict)


def _deleting(body: Json) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def _finalizers(body: Json) -> list[str]:
    return list((body.get("metadata") or {}).get("finalizers") or [])


def _rv(body: Json) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def selector_string(selector: LabelSelector | None) -> str | None:
    """A label selector in the query-string form the API takes."""
    if selector is None:
        return None
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for req in selector.match_expressions or []:
        if req.operator == "Exists":
            parts.append(req.key)
        elif req.operator == "DoesNotExist":
            parts.append(f"!{req.key}")
        else:
            op = "in" if req.operator == "In" else "notin"
            parts.append(f"{req.key} {op} ({','.join(req.values or [])})")
    return ",".join(parts) or None


def _field_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}"


class Engine:
    """Observed state, planning and writes for the whole platform."""

    def __init__(
        self,
        host: Host,
        settings: EngineSettings | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host = host
        self.settings = settings or EngineSettings()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.world = World()
        self._dirty = asyncio.Event()
        self._schedule_changed = asyncio.Event()
        self._due: dict[str, float] = {}
        self._collecting: set[str] = set()
        self._writers = ThreadPoolExecutor(
            max_workers=self.settings.write_concurrency, thread_name_prefix="fc-write"
        )
        self._collectors = ThreadPoolExecutor(
            max_workers=self.settings.collect_concurrency, thread_name_prefix="fc-collect"
        )
        self._write_slots = asyncio.Semaphore(self.settings.write_concurrency)
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backoff = 0.0
        self._desired: dict[str, nodes.DesiredNode] = {}
        self._plans: dict[str, tuple[_PlanKey, ProviderView, Json]] = {}
        self.passes = 0

    # --- observation (called by the watch handlers) -------------------------------------

    def observe_provider(self, event_type: str | None, body: Json) -> None:
        """Record a ComputeProvider event."""
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.world.providers.pop(name, None)
            self.world.collections.pop(name, None)
            self._due.pop(name, None)
            self.metrics.remove_provider(name)
        else:
            previous = self.world.providers.get(name)
            self.world.providers[name] = _Object(ComputeProvider, body)
            spec = body.get("spec") or {}
            if previous is None or previous.body.get("spec") != spec:
                if (spec.get("source") or {}).get("kubernetes") is not None:
                    self._due[name] = 0.0  # collect now
                    self._schedule_changed.set()
                else:
                    self._due.pop(name, None)
                    self.world.collections.pop(name, None)
        self._dirty.set()

    def observe_pool(self, event_type: str | None, body: Json) -> None:
        """Record a RegionPool event."""
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.world.pools.pop(name, None)
            self.metrics.remove_pool(name)
        else:
            self.world.pools[name] = _Object(RegionPool, body)
        self._dirty.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def bootstrap(self) -> None:
        """List everything once, so the first pass sees the whole world.

        Without this a restarted operator could mistake the nodes of providers it has
        not yet heard about for orphans.
        """
        providers, pools, (node_list, lease_list) = await asyncio.gather(
            self._call(lambda: list(self.host.list_all(f"{GROUP_PATH}/{PROVIDER_PLURAL}"))),
            self._call(lambda: list(self.host.list_all(f"{GROUP_PATH}/{POOL_PLURAL}"))),
            self._call(self._list_virtual),
        )
        for body in providers:
            self.observe_provider(None, body)
        for body in pools:
            self.observe_pool(None, body)
        self._replace_virtual(node_list, lease_list)
        log.info(
            "observed %d providers, %d pools, %d virtual nodes, %d leases",
            len(providers),
            len(pools),
            len(node_list),
            len(lease_list),
        )

    def start(self) -> None:
        """Start the background loops (after :meth:`bootstrap`); idempotent."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        for coro in (
            self._reconcile_loop(),
            self._collect_loop(),
            self._lease_loop(),
            self._resync_loop(),
        ):
            self._tasks.append(loop.create_task(coro))

    async def stop_loops(self) -> None:
        """Cancel the loops (the engine keeps observing and can start again)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the loops and release the thread pools."""
        await self.stop_loops()
        self._writers.shutdown(wait=False, cancel_futures=True)
        self._collectors.shutdown(wait=False, cancel_futures=True)

    def _wake_from_thread(self) -> None:
        """Ask for another pass from a writer thread (asyncio.Event is not thread-safe)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dirty.set)

    async def _call(self, fn: Callable[[], T]) -> T:
        self._loop = loop = asyncio.get_running_loop()
        async with self._write_slots:
            return await loop.run_in_executor(self._writers, fn)

    # --- the reconcile loop -------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        self._dirty.set()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.settings.debounce)
            self._dirty.clear()
            try:
                failures = await self.reconcile_once()
            except Exception:
                log.exception("reconcile pass failed")
                failures = 1
            if failures:
                self._backoff = min(self.settings.max_backoff, max(1.0, self._backoff * 2))
                log.warning("%d writes failed; retrying in %.0fs", failures, self._backoff)
                asyncio.get_running_loop().call_later(self._backoff, self._dirty.set)
            else:
                self._backoff = 0.0

    async def reconcile_once(self) -> int:
        """Plan from the observed world and apply the differences; returns failures."""
        self.passes += 1
        started = time.monotonic()
        self.metrics.reconciles.inc()
        now = self.clock()
        w = self.world
        providers = {
            n: o.model for n, o in w.providers.items() if isinstance(o.model, ComputeProvider)
        }
        pools = {n: o.model for n, o in w.pools.items() if isinstance(o.model, RegionPool)}
        deleting_providers = {n for n, o in w.providers.items() if _deleting(o.body)}
        deleting_pools = {n for n, o in w.pools.items() if _deleting(o.body)}
        live = [p for n, p in providers.items() if n not in deleting_providers]
        claim_map = claims.claim_all(live, pools.values(), deleting=deleting_pools)

        views: dict[str, ProviderView] = {}
        changed: set[str] = set()
        for provider in live:
            before = self._plans.get(provider.name)
            view = self._plan_provider(provider, claim_map.get(provider.name), now)
            if before is None or view is not before[1]:
                changed.add(provider.name)
            views[provider.name] = view
        for gone in set(self._plans) - set(views):
            del self._plans[gone]

        # Desired nodes; a paused pool's existing nodes stay exactly as they are.
        desired: dict[str, nodes.DesiredNode] = {}
        frozen: set[str] = set()
        for name, view in views.items():
            claim = view.claim
            if claim is None:
                continue
            pool = pools[claim.pool]
            vnode = nodes.node_name(name)
            if pool.spec.paused:
                if vnode in w.nodes:
                    frozen.add(vnode)
                continue
            desired[vnode] = nodes.desired_node(providers[name], pool, view)
        for node_name, observed_node in list(w.nodes.items()):
            labels = (observed_node.get("metadata") or {}).get("labels") or {}
            owner_pool = pools.get(labels.get(nodes.LABEL_POOL, ""))
            provider_name = labels.get(nodes.LABEL_PROVIDER, "")
            if (
                owner_pool is not None
                and owner_pool.spec.paused
                and owner_pool.name not in deleting_pools
                and provider_name in views
            ):
                frozen.add(node_name)
        self._desired = desired

        # Finalizers first: each object's writes run in order (see _run), and the
        # finalizer patch carries a resourceVersion precondition its status write would
        # otherwise break.
        jobs: list[Job] = self._finalizer_jobs()
        jobs += self._provider_status_jobs(views)
        jobs += self._node_jobs(desired, frozen, now)
        node_counts: dict[str, int] = {}
        for d in desired.values():
            node_counts[d.pool] = node_counts.get(d.pool, 0) + 1
        for node_name in frozen:
            pool_label = ((w.nodes[node_name].get("metadata") or {}).get("labels") or {}).get(
                nodes.LABEL_POOL, ""
            )
            node_counts[pool_label] = node_counts.get(pool_label, 0) + 1
        members_of = claims.by_pool(claim_map)
        for name, pool in pools.items():
            if name in deleting_pools:
                continue
            pool_views = [views[p] for p in members_of.get(name, [])]
            status = rollup.plan_pool(pool, pool_views, nodes=node_counts.get(name, 0), now=now)
            self._publish_pool(name, status, pool_views)
            jobs += [
                (f"{POOL_PLURAL}/{name}", job)
                for job in self._status_job(
                    POOL_PLURAL, w.pools[name], status.to_wire(), RegionPoolStatus
                )
            ]
        for name in changed:
            self._publish_provider(name, views[name])
        planned = time.monotonic()
        failures = await self._run(jobs)
        log.info(
            "pass %d: planned %d providers and %d pools in %.2fs, %d writes in %.2fs",
            self.passes,
            len(views),
            len(pools),
            planned - started,
            len(jobs),
            time.monotonic() - planned,
        )
        return failures

    def _plan_provider(
        self, provider: ComputeProvider, claim: claims.Claim | None, now: datetime
    ) -> ProviderView:
        """Plan one provider, reusing the last plan while nothing it depends on changed.

        A static provider's plan depends on its generation, spec, claim and previous
        status; when those are as last time (the status being the one this operator
        planned, or the one it planned from), the earlier plan stands. Member providers
        depend on the clock (staleness) and are always planned.
        """
        name = provider.name
        obj = self.world.providers[name]
        body = obj.body
        observed = body.get("status") or {}
        key: _PlanKey = (
            (body.get("metadata") or {}).get("generation"),
            body.get("spec"),
            claim,
        )
        cached = self._plans.get(name)
        if (
            cached is not None
            and provider.spec.source.static is not None
            and cached[0] == key
            and observed in (cached[2], cached[1].status_wire)
        ):
            return cached[1]
        view = plan_provider(
            provider, collection=self.world.collections.get(name), claim=claim, now=now
        )
        self._plans[name] = (key, view, observed)
        return view

    async def _run(self, jobs: list[Job]) -> int:
        """Run write jobs: one object's in order, different objects' concurrently.

        Returns how many objects had a failed write (the rest of that object's writes
        wait for the next pass).
        """
        chains: dict[str, list[Callable[[], Any]]] = {}
        for key, job in jobs:
            chains.setdefault(key, []).append(job)

        def chain(steps: list[Callable[[], Any]]) -> None:
            for step in steps:
                step()

        results = await asyncio.gather(
            *(self._call(functools.partial(chain, steps)) for steps in chains.values()),
            return_exceptions=True,
        )
        failures = 0
        for result in results:
            if isinstance(result, BaseException):
                failures += 1
                log.warning("write failed: %s", result)
        return failures

    # --- planning helpers that produce write jobs ---------------------------------------

    def _finalizer_jobs(self) -> list[Job]:
        jobs: list[Job] = []
        for plural, objects in (
            (PROVIDER_PLURAL, self.world.providers),
            (POOL_PLURAL, self.world.pools),
        ):
            for name, obj in objects.items():
                current = _finalizers(obj.body)
                if _deleting(obj.body):
                    if FINALIZER in current and self._released(plural, name, obj.body):
                        keep = [f for f in current if f != FINALIZER]
                        jobs.append(
                            (
                                f"{plural}/{name}",
                                self._finalizer_job(plural, name, keep, _rv(obj.body)),
                            )
                        )
                elif FINALIZER not in current:
                    add = self._finalizer_job(plural, name, [*current, FINALIZER], _rv(obj.body))
                    jobs.append((f"{plural}/{name}", add))
        return jobs

    def _released(self, plural: str, name: str, body: Json) -> bool:
        """Whether a deleting object no longer has virtual nodes hanging on it."""
        if plural == PROVIDER_PLURAL:
            vnode = nodes.node_name(name)
            return vnode not in self.world.nodes and vnode not in self.world.leases
        uid = (body.get("metadata") or {}).get("uid")
        for node in list(self.world.nodes.values()):
            meta = node.get("metadata") or {}
            if (meta.get("labels") or {}).get(nodes.LABEL_POOL) == name:
                return False
            if any(o.get("uid") == uid for o in meta.get("ownerReferences") or []):
                return False
        return True

    def _finalizer_job(
        self, plural: str, name: str, finalizers: list[str], rv: str
    ) -> Callable[[], Any]:
        def job() -> None:
            try:
                body = self.host.set_finalizers(plural, name, finalizers, rv)
            except HostError as exc:
                if exc.status == 404:
                    return
                if exc.status == 409:  # changed since we looked: try again on the next pass
                    self._wake_from_thread()
                    return
                raise
            self._record(plural, name, body)

        return job

    def _record(self, plural: str, name: str, body: Json) -> None:
        """Take a write's response as the newest observation (unless the object is gone)."""
        if plural == PROVIDER_PLURAL:
            if name in self.world.providers:
                self.world.providers[name] = _Object(ComputeProvider, body)
        elif name in self.world.pools:
            self.world.pools[name] = _Object(RegionPool, body)

    def _provider_status_jobs(self, views: dict[str, ProviderView]) -> list[Job]:
        jobs: list[Job] = []
        for name, view in views.items():
            obj = self.world.providers[name]
            for job in self._status_job(
                PROVIDER_PLURAL, obj, view.status_wire, ComputeProviderStatus
            ):
                jobs.append((f"{PROVIDER_PLURAL}/{name}", job))
        for name, obj in self.world.providers.items():
            if obj.model is None and not _deleting(obj.body):
                jobs += [
                    (f"{PROVIDER_PLURAL}/{name}", j) for j in self._invalid_status_job(name, obj)
                ]
        return jobs

    def _status_job(
        self,
        plural: str,
        obj: _Object,
        wanted: Json,
        model: type[ComputeProviderStatus] | type[RegionPoolStatus],
    ) -> list[Callable[[], Any]]:
        observed = obj.body.get("status") or {}
        if observed != wanted:  # the exact wire form differs: compare by meaning
            try:
                current = model.model_validate(observed).to_wire()
            except ValidationError:
                current = None
            if current == wanted:
                return []
        else:
            return []
        name = obj.body["metadata"]["name"]
        previous_conditions = {str(c.get("type")): c for c in observed.get("conditions") or []}

        def job() -> None:
            try:
                body = self.host.patch_status(plural, name, merge_patch(observed, wanted))
            except HostError as exc:
                if exc.status == 404:
                    return
                raise
            self._record(plural, name, body)
            self._transition_events(
                plural, body, previous_conditions, wanted.get("conditions") or []
            )

        return [job]

    def _invalid_status_job(self, name: str, obj: _Object) -> list[Callable[[], Any]]:
        now = nodes.time_string(self.clock())
        observed = obj.body.get("status") or {}
        ready: Json = next(
            (c for c in observed.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        message = f"spec is invalid: {obj.error}"
        if ready.get("reason") == Reason.INVALID_SPEC and ready.get("message") == message:
            return []
        condition = {
            "type": "Ready",
            "status": "False",
            "reason": Reason.INVALID_SPEC,
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": (obj.body.get("metadata") or {}).get("generation"),
        }
        return [lambda: self.host.patch_status(PROVIDER_PLURAL, name, {"conditions": [condition]})]

    def _node_jobs(
        self, desired: dict[str, nodes.DesiredNode], frozen: set[str], now: datetime
    ) -> list[Job]:
        """Node and Lease writes, each keyed to its provider so they follow its status."""
        jobs: list[Callable[[], Any]] = []
        names: list[str] = []
        w = self.world
        for name, d in desired.items():
            observed = w.nodes.get(name)
            if observed is None:
                jobs.append(self._create_node_job(d, now))
                names.append(name)
                continue
            meta_patch = nodes.metadata_patch(d, observed)
            status_patch = nodes.status_patch(d, observed, now)
            if meta_patch or status_patch:
                jobs.append(self._patch_node_job(name, meta_patch, status_patch))
                names.append(name)
        for name in list(w.nodes):
            if name not in desired and name not in frozen:
                jobs.append(self._delete_node_job(name))
                names.append(name)
        for name in list(w.leases):
            if name not in w.nodes and name not in desired and name not in frozen:
                jobs.append(self._delete_lease_job(name))
                names.append(name)
        prefix = len(nodes.node_name(""))
        return [
            (f"{PROVIDER_PLURAL}/{name[prefix:]}", job)
            for name, job in zip(names, jobs, strict=True)
        ]

    def _create_node_job(self, d: nodes.DesiredNode, now: datetime) -> Callable[[], Any]:
        def job() -> None:
            try:
                created = self.host.create_node(nodes.node_body(d, now))
            except HostError as exc:
                if exc.status != 409:
                    raise
                created = self.host.request("GET", f"/api/v1/nodes/{d.name}")
                self._wake_from_thread()  # someone else's version: compare it on the next pass
            self.world.nodes[d.name] = created
            if d.lease_wanted and d.name not in self.world.leases:
                self._ensure_lease(d, created)

        return job

    def _patch_node_job(
        self, name: str, meta: Json | None, status: Json | None
    ) -> Callable[[], Any]:
        def job() -> None:
            try:
                if meta:
                    self.world.nodes[name] = self.host.patch_node(name, meta)
                if status:
                    self.world.nodes[name] = self.host.patch_node_status(name, status)
            except HostError as exc:
                if exc.status == 404:
                    self.world.nodes.pop(name, None)
                    self._wake_from_thread()
                    return
                raise

        return job

    def _delete_node_job(self, name: str) -> Callable[[], Any]:
        def job() -> None:
            self.host.delete_lease(nodes.LEASE_NAMESPACE, name)
            self.world.leases.pop(name, None)
            self.host.delete(f"/api/v1/nodes/{name}")
            self.world.nodes.pop(name, None)
            self._wake_from_thread()  # finalizers may now be released

        return job

    def _delete_lease_job(self, name: str) -> Callable[[], Any]:
        def job() -> None:
            self.host.delete_lease(nodes.LEASE_NAMESPACE, name)
            self.world.leases.pop(name, None)
            self._wake_from_thread()

        return job

    def _ensure_lease(self, d: nodes.DesiredNode, node: Json) -> None:
        uid = (node.get("metadata") or {}).get("uid", "")
        body = nodes.lease_body(d.name, d.provider, uid, self.clock())
        try:
            self.world.leases[d.name] = self.host.create_lease(body)
        except HostError as exc:
            if exc.status != 409:
                raise
            self.world.leases[d.name] = self.host.renew_lease(
                nodes.LEASE_NAMESPACE, d.name, body["spec"]["renewTime"]
            )

    # --- events -------------------------------------------------------------------------

    def _transition_events(
        self, plural: str, body: Json, before: dict[str, Json], after: Iterable[Json]
    ) -> None:
        """Post an Event for each condition whose status or failure reason changed."""
        kind = "ComputeProvider" if plural == PROVIDER_PLURAL else "RegionPool"
        news: list[tuple[str, str, str]] = []
        for cond in after:
            prior = before.get(str(cond.get("type")))
            changed = prior is None or prior.get("status") != cond.get("status")
            failing_reason_changed = (
                prior is not None
                and cond.get("status") != "True"
                and prior.get("reason") != cond.get("reason")
            )
            good = (cond.get("status") == "True") != (cond.get("type") == "Degraded")
            if prior is None and good:
                continue  # a new object starting out well is not news; a bad start is
            if not (changed or failing_reason_changed):
                continue
            news.append(
                (
                    "Normal" if good else "Warning",
                    f"{cond.get('type')}{cond.get('status')}" if good else str(cond.get("reason")),
                    str(cond.get("message") or cond.get("reason")),
                )
            )
        # One Event per write: the first warning if any (conditions are ordered Ready first).
        news.sort(key=lambda n: n[0] != "Warning")
        if news:
            self._post_event(kind, body, *news[0])

    def _post_event(self, kind: str, body: Json, type_: str, reason: str, message: str) -> None:
        meta = body.get("metadata") or {}
        now = nodes.time_string(self.clock())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}."},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": kind,
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason[:128],
            "message": message[:1024],
            "source": {"component": "fedcompute", "host": socket.gethostname()},
            "reportingComponent": "fedcompute.io/operator",
            "reportingInstance": socket.gethostname()[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.host.create_event(EVENT_NAMESPACE, event)
        except HostError as exc:
            log.warning("could not post event %s for %s: %s", reason, meta.get("name"), exc)

    # --- metrics ------------------------------------------------------------------------

    def _publish_provider(self, name: str, view: ProviderView) -> None:
        collection = self.world.collections.get(name)
        when = collection.succeeded_at if collection else None
        last = when.timestamp() if when else None
        if view.status.last_collection_time is not None and last is None:
            last = view.status.last_collection_time.timestamp()
        models: dict[str, tuple[int, int]] = {}
        for d in view.accelerators:
            total, avail = models.get(d.model, (0, 0))
            models[d.model] = (total + d.capacity, avail + d.available)
        self.metrics.set_provider(
            name,
            region=view.region,
            pool=view.claim.pool if view.claim else "",
            ready=view.ready,
            figures={
                "capacity": view.capacity,
                "allocatable": view.allocatable,
                "allocated": view.allocated,
                "available": view.available,
            },
            accelerators=models,
            last_collection=last,
        )

    def _publish_pool(self, name: str, status: RegionPoolStatus, views: list[ProviderView]) -> None:
        ready = sum(1 for v in views if v.ready)
        self.metrics.set_pool(
            name,
            figures={
                "capacity": status.capacity or {},
                "allocatable": status.allocatable or {},
                "allocated": status.allocated or {},
                "available": status.available or {},
            },
            ready=ready,
            not_ready=len(views) - ready,
        )

    # --- collection ---------------------------------------------------------------------

    async def _collect_loop(self) -> None:
        while True:
            now = time.monotonic()
            for name, due in list(self._due.items()):
                if due <= now and name not in self._collecting:
                    self._collecting.add(name)
                    asyncio.get_running_loop().create_task(self._collect(name))
            waiting = [d for n, d in self._due.items() if n not in self._collecting]
            delay = max(0.05, min(waiting) - time.monotonic()) if waiting else 3600.0
            self._schedule_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._schedule_changed.wait(), timeout=delay)

    async def _collect(self, name: str) -> None:
        started = time.monotonic()
        interval = 30.0
        try:
            obj = self.world.providers.get(name)
            provider = obj.model if obj else None
            if not isinstance(provider, ComputeProvider) or provider.spec.source.kubernetes is None:
                self._due.pop(name, None)
                return
            interval = provider.spec.monitoring.interval
            timeout = provider.spec.monitoring.timeout
            previous = self.world.collections.get(name) or resumed_collection(provider)
            try:
                figures = await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(
                        self._collectors, self._collect_member, provider, timeout
                    ),
                    timeout=timeout + 2,
                )
            except members.CollectionError as exc:
                result = previous.failed(self.clock(), exc.reason, str(exc))
            except kubeconfigs.KubeconfigError as exc:
                result = previous.failed(self.clock(), exc.reason, exc.message)
            except _SecretError as exc:
                result = previous.failed(self.clock(), exc.reason, exc.message)
            except TimeoutError:
                result = previous.failed(
                    self.clock(), Reason.TIMEOUT, f"collection took longer than {timeout:g}s"
                )
            except (ValueError, KeyError, TypeError) as exc:
                result = previous.failed(
                    self.clock(),
                    Reason.INVALID_INVENTORY,
                    f"member returned unusable data ({type(exc).__name__})",
                )
            else:
                at = self.clock()
                result = Collection(figures, at, at, None, "")
            if result.error_reason:
                self.metrics.collection_errors.labels(result.error_reason).inc()
            self.world.collections[name] = result
            self._dirty.set()
        finally:
            self.metrics.collection_duration.labels("kubernetes").observe(
                time.monotonic() - started
            )
            self._collecting.discard(name)
            if name in self._due or name in self.world.providers:
                obj = self.world.providers.get(name)
                if (
                    obj is not None
                    and isinstance(obj.model, ComputeProvider)
                    and obj.model.spec.source.kubernetes
                ):
                    self._due[name] = time.monotonic() + interval
                    self._schedule_changed.set()

    def _collect_member(
        self, provider: ComputeProvider, timeout: float
    ) -> inventory.MemberInventory:
        """Runs in a collector thread: Secret -> vetted kubeconfig -> lists -> figures."""
        source = provider.spec.source.kubernetes
        assert source is not None
        ref = source.kubeconfig_secret_ref
        ns = self.settings.namespace
        try:
            secret = self.host.read_secret(ns, ref.name)
        except HostError as exc:
            if exc.status == 404:
                raise _SecretError(
                    Reason.KUBECONFIG_NOT_FOUND, f"Secret {ns}/{ref.name} not found"
                ) from None
            if exc.status in (401, 403):
                raise _SecretError(
                    Reason.KUBECONFIG_NOT_FOUND, f"operator may not read Secret {ns}/{ref.name}"
                ) from None
            raise members.CollectionError(Reason.UNREACHABLE, "host API unavailable") from None
        encoded = (secret.get("data") or {}).get(ref.key)
        if not encoded:
            raise _SecretError(
                Reason.INVALID_KUBECONFIG, f"Secret {ns}/{ref.name} has no key {ref.key!r}"
            )
        try:
            text = base64.b64decode(encoded).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise _SecretError(
                Reason.INVALID_KUBECONFIG,
                f"Secret {ns}/{ref.name} key {ref.key!r} is not UTF-8 text",
            ) from None
        safe = kubeconfigs.load_safe_kubeconfig(text, deny_cidrs=self.settings.deny_cidrs)
        node_list, pod_list = members.collect_member(
            safe, node_selector=selector_string(source.node_selector), timeout=timeout
        )
        return inventory.summarize_member(
            node_list,
            pod_list,
            accelerator_model_label=source.accelerator_model_label,
            accelerator_resources=source.accelerator_resources,
            reserved=provider.spec.reserved or {},
        )

    # --- leases -------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_interval)
            jobs = []
            for name, d in list(self._desired.items()):
                node = self.world.nodes.get(name)
                if node is None or not d.lease_wanted:
                    continue
                jobs.append(self._renew_job(d, node))
            results = await asyncio.gather(*(self._call(j) for j in jobs), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    log.warning("lease renewal failed: %s", result)

    def _renew_job(self, d: nodes.DesiredNode, node: Json) -> Callable[[], None]:
        def job() -> None:
            if d.name not in self.world.leases:
                self._ensure_lease(d, node)
                return
            try:
                self.world.leases[d.name] = self.host.renew_lease(
                    nodes.LEASE_NAMESPACE, d.name, nodes.micro_time(self.clock())
                )
            except HostError as exc:
                if exc.status != 404:
                    raise
                self.world.leases.pop(d.name, None)
                self._ensure_lease(d, node)

        return job

    # --- resync -------------------------------------------------------------------------

    async def _resync_loop(self) -> None:
        """Re-list nodes and leases now and then, to repair changes made behind our back."""
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            try:
                node_list, lease_list = await self._call(self._list_virtual)
            except HostError as exc:
                log.warning("resync failed: %s", exc)
                continue
            self._replace_virtual(node_list, lease_list)
            self._dirty.set()

    def _list_virtual(self) -> tuple[list[Json], list[Json]]:
        """The operator's virtual Nodes and their Leases, as the API has them now."""
        return self.host.list_labelled(
            label=nodes.LABEL_PROVIDER, lease_namespace=nodes.LEASE_NAMESPACE
        )

    def _replace_virtual(self, node_list: list[Json], lease_list: list[Json]) -> None:
        self.world.nodes = {n["metadata"]["name"]: n for n in node_list}
        self.world.leases = {x["metadata"]["name"]: x for x in lease_list}


class _SecretError(Exception):
    """The kubeconfig Secret is missing or unusable (never carries its content)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
