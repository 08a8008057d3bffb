"""Writing a pass's intents and folding the answers back, one owner at a time.

Backoff is per owner and per write stream, so one failing object never delays another;
each chain's answers reach the world as soon as that chain is done, so a large pass does
not hold every answer at once; refusals are counted, logged and (for a refused status,
which no condition can carry) reported with an Event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from fedcompute.intents import Intent, Owner, PatchStatus
from fedcompute.kube.actuator import Actuator, Outcome, resource_of
from fedcompute.metrics import Metrics
from fedcompute.reconcile.backoff import Backoff
from fedcompute.reconcile.world import World, stream

log = logging.getLogger("fedcompute.engine")


class Writer:
    """The actuator, the backoff and the world, joined for one operator process."""

    def __init__(
        self,
        world: World,
        actuator: Actuator,
        backoff: Backoff,
        metrics: Metrics,
        *,
        wake: Callable[[float | None], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.clock = clock
        self.world = world
        self.actuator = actuator
        self.backoff = backoff
        self.metrics = metrics
        self._wake = wake

    def due(self, groups: Mapping[Owner, Sequence[Intent]]) -> dict[Owner, list[Intent]]:
        """Each owner's intents, minus the streams still backing off."""
        now = time.monotonic()
        due: dict[Owner, list[Intent]] = {}
        for owner, intents in groups.items():
            kept = [i for i in intents if not self.backoff.waiting((owner, stream(i)), now)]
            if kept:
                due[owner] = kept
        return due

    async def write(self, chains: dict[Owner, list[Intent]]) -> None:
        """Write the chains, folding each one's answers back as soon as it is done."""
        events: dict[Owner, list[Intent]] = {}
        again = await self.actuator.execute(
            chains, on_done=lambda outcomes: self._settle(outcomes, events)
        )
        if events:
            await self.actuator.execute(events)
        now = time.monotonic()
        due = self.backoff.next_due(now)
        if due is not None:
            self._wake(due - now + 0.01)
        if any(again):
            self._wake(None)

    def _settle(self, outcomes: list[Outcome], events: dict[Owner, list[Intent]]) -> bool:
        """Fold one chain's answers into the world; back off what failed; note refusals.

        Returns whether another pass is needed at once (a conflict, or something gone).
        """
        before = {
            k: self.world.rejections.get(k)
            for k in {(o.intent.owner, stream(o.intent)) for o in outcomes}
        }
        self.world.apply(outcomes, now=self.clock())
        now = time.monotonic()
        again = False
        for o in outcomes:
            key = (o.intent.owner, stream(o.intent))
            if o.result == "ok":
                self.backoff.succeeded(key)
                again = again or any(body is None for _, _, body in o.observed)
            elif o.result in ("rejected", "failed"):
                self.backoff.failed(key, now)
                self.metrics.write_errors.labels(resource_of(o.intent), str(o.code)).inc()
                log.warning("write for %s/%s %s: %s", *o.intent.owner, o.result, o.message)
                refused_status = o.result == "rejected" and isinstance(o.intent, PatchStatus)
                if refused_status and before.get(key) != self.world.rejections.get(key):
                    events.setdefault(o.intent.owner, []).append(self.world.refusal(o))
            elif o.result == "conflict":
                again = True
        return again
