"""The collection schedule: each member provider collected every ``monitoring.interval``.

Collections run on two lanes of worker threads. A member whose last attempt timed out or
could not be reached goes to the slow lane, which has a few workers of its own, so slow
members can never hold every worker and a healthy member is always tried. A queued
collection's deadline starts only when a worker starts it (the deadline lives inside
:func:`fedcompute.kube.members.collect_provider`). Results come back to the event loop,
which alone stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from fedcompute.api.provider import ComputeProvider, Reason
from fedcompute.capacity import inventory
from fedcompute.capacity.providers import Collection
from fedcompute.kube import members
from fedcompute.metrics import Metrics

log = logging.getLogger("fedcompute.collection")

Collect = Callable[[ComputeProvider, float], inventory.MemberInventory]
"""Blocking: one provider's figures within the timeout, or a CollectionError."""


class _Lane:
    def __init__(self, name: str, workers: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fc-{name}")
        self.slots = asyncio.Semaphore(workers)


class Scheduler:
    """Due times, lanes and results of member collections."""

    def __init__(
        self,
        collect: Collect,
        *,
        workers: int,
        slow_workers: int,
        metrics: Metrics,
        clock: Callable[[], datetime],
        provider: Callable[[str], ComputeProvider | None],
        previous: Callable[[str], Collection],
        done: Callable[[str, Collection], None],
    ) -> None:
        self._collect = collect
        self._metrics = metrics
        self._clock = clock
        self._provider = provider
        self._previous = previous
        self._done = done
        self._lanes = (_Lane("collect", workers), _Lane("collect-slow", max(1, slow_workers)))
        self._due: dict[str, float] = {}
        self._running: set[str] = set()
        self._slow: set[str] = set()
        self._changed = asyncio.Event()

    def due_now(self, name: str) -> None:
        """Collect ``name`` as soon as a worker is free (new provider or changed spec)."""
        self._due[name] = 0.0
        self._changed.set()

    def forget(self, name: str) -> None:
        """Stop collecting ``name`` (deleted, or no longer a member provider)."""
        self._due.pop(name, None)
        self._slow.discard(name)

    def close(self) -> None:
        """Release the worker threads."""
        for lane in self._lanes:
            lane.pool.shutdown(wait=False, cancel_futures=True)

    async def loop(self) -> None:
        """Start every due collection; sleep until the next one is due or the schedule moves."""
        while True:
            now = time.monotonic()
            for name, due in list(self._due.items()):
                if due <= now and name not in self._running:
                    self._running.add(name)
                    asyncio.get_running_loop().create_task(self._run(name))
            waiting = [d for n, d in self._due.items() if n not in self._running]
            delay = max(0.05, min(waiting) - time.monotonic()) if waiting else 3600.0
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=delay)

    async def _run(self, name: str) -> None:
        interval = 30.0
        try:
            provider = self._provider(name)
            if provider is None or provider.spec.source.kubernetes is None:
                self.forget(name)
                return
            interval = provider.spec.monitoring.interval
            result = await self._attempt(name, provider)
            if result.error_reason in members.SLOW_REASONS:
                self._slow.add(name)
            else:
                self._slow.discard(name)
            self._done(name, result)
        finally:
            self._running.discard(name)
            if name in self._due:
                self._due[name] = time.monotonic() + interval
                self._changed.set()

    async def _attempt(self, name: str, provider: ComputeProvider) -> Collection:
        """One collection on the member's lane; every failure becomes a reason."""
        lane = self._lanes[1 if name in self._slow else 0]
        timeout = provider.spec.monitoring.timeout
        generation = provider.metadata.generation
        previous = self._previous(name)
        async with lane.slots:  # queued here: the deadline has not started yet
            started = time.monotonic()
            try:
                figures = await asyncio.get_running_loop().run_in_executor(
                    lane.pool, self._collect, provider, timeout
                )
            except members.CollectionError as exc:
                result = previous.failed(
                    self._clock(), exc.reason, exc.message, generation=generation
                )
            except Exception as exc:  # collect_provider maps everything; this is a backstop
                log.error("collecting %s failed unexpectedly (%s)", name, type(exc).__name__)
                result = previous.failed(
                    self._clock(),
                    Reason.COLLECTION_FAILED,
                    f"collection failed ({type(exc).__name__})",
                )
            else:
                at = self._clock()
                result = Collection(figures, at, at, generation=generation)
            finally:
                self._metrics.collection_duration.labels("kubernetes").observe(
                    time.monotonic() - started
                )
        if result.error_reason:
            self._metrics.collection_errors.labels(result.error_reason).inc()
            # One warning per change of failure, then quieter: a dead member fails every
            # interval and its condition already says so.
            news = (result.error_reason, result.error_message) != (
                previous.error_reason,
                previous.error_message,
            )
            log.log(
                logging.WARNING if news else logging.DEBUG,
                "collecting %s: %s: %s",
                name,
                result.error_reason,
                result.error_message,
            )
        elif previous.error_reason:
            log.info("collecting %s: recovered", name)
        return result
