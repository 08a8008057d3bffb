"""The collection schedule: slow members cannot hold every worker; deadlines start on start.

The collect function here stands in for the member cluster (it only sleeps and answers);
what is tested is the scheduling around it: lanes, queueing and failure mapping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from fedcompute.api.provider import ComputeProvider, Reason
from fedcompute.capacity import inventory
from fedcompute.capacity.providers import Collection
from fedcompute.kube.members import CollectionError
from fedcompute.metrics import Metrics
from fedcompute.reconcile.collecting import Scheduler
from tests.unit.builders import figures, member

TIMEOUT = 0.6


def provider(name: str) -> ComputeProvider:
    body = member(name)
    body["spec"]["monitoring"] = {"interval": "5s", "timeout": "500ms", "staleAfter": "10s"}
    return ComputeProvider.model_validate(body)


class Members:
    """Slow members sleep through their timeout; healthy ones answer at once."""

    def __init__(self, slow: set[str]) -> None:
        self.slow = slow
        self.started: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def collect(self, p: ComputeProvider, timeout: float) -> inventory.MemberInventory:
        with self.lock:
            self.started.setdefault(p.name, []).append(time.monotonic())
        if p.name in self.slow:
            time.sleep(timeout)
            raise CollectionError(Reason.TIMEOUT, "no answer")
        if p.name == "buggy":
            raise KeyError("a bug, not a member's fault")
        return figures()


def scheduler(
    members: Members, done: Callable[[str, Collection], None], *, workers: int, slow: int
) -> Scheduler:
    providers = {n: provider(n) for n in [*members.slow, "healthy", "buggy"]}
    return Scheduler(
        members.collect,
        workers=workers,
        slow_workers=slow,
        metrics=Metrics(),
        clock=lambda: datetime.now(UTC),
        provider=providers.get,
        previous=lambda name: Collection(),
        done=done,
    )


async def _run_for(s: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(s.loop())
    await asyncio.sleep(seconds)
    task.cancel()
    s.close()


def test_a_queued_collection_starts_its_deadline_when_it_starts() -> None:
    """Four slow members and two workers: the healthy one waits, then succeeds."""
    slow = {f"slow-{i}" for i in range(4)}
    members = Members(slow)
    results: dict[str, list[Collection]] = {}
    s = scheduler(members, lambda n, c: results.setdefault(n, []).append(c), workers=2, slow=1)

    async def main() -> None:
        for name in sorted(slow):
            s.due_now(name)
        await asyncio.sleep(0.05)
        s.due_now("healthy")
        await _run_for(s, 3 * TIMEOUT)

    asyncio.run(main())
    assert results["healthy"][0].error_reason is None
    assert results["healthy"][0].inventory is not None


def test_slow_members_move_to_their_own_lane() -> None:
    """After one timeout each, slow members queue on the slow lane, never the healthy one."""
    slow = {f"slow-{i}" for i in range(6)}
    members = Members(slow)
    s = scheduler(members, lambda n, c: None, workers=2, slow=1)

    async def main() -> None:
        task = asyncio.create_task(s.loop())
        for name in sorted(slow):
            s.due_now(name)
        await asyncio.sleep(3 * TIMEOUT + 0.2)  # every slow member has timed out once
        for name in sorted(slow):  # their next interval comes round
            s.due_now(name)
        await asyncio.sleep(0.05)
        asked = time.monotonic()
        s.due_now("healthy")
        await asyncio.sleep(0.3)
        task.cancel()
        s.close()
        assert members.started["healthy"][0] - asked < 0.2

    asyncio.run(main())
    assert all(members.started[n] for n in slow)


def test_an_unexpected_exception_is_a_reason_not_a_silent_pending() -> None:
    members = Members(set())
    results: dict[str, Collection] = {}
    s = scheduler(members, results.__setitem__, workers=1, slow=1)

    async def main() -> None:
        s.due_now("buggy")
        await _run_for(s, 0.3)

    asyncio.run(main())
    assert results["buggy"].error_reason == Reason.COLLECTION_FAILED
    assert "KeyError" in results["buggy"].error_message
