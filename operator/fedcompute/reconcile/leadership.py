"""Leader election on a coordination.k8s.io Lease, for several operator replicas.

Kopf peering stops a standby replica's watch handlers, but the engine also acts on its
own timers (collections, Lease renewals). This elector gates those: only the holder of
the Lease runs the engine's loops; a standby keeps observing and takes over when the
holder stops renewing.

Decide, then do: :func:`decide` is the whole election rule (which Lease to write, if
any) and :func:`next_tenure` the whole timing rule (when to start and stop acting), both
pure; :class:`LeaseElector` only reads, writes and sleeps.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fedcompute.capacity.nodes import micro_time
from fedcompute.kube.host import Host, HostError, leases_path

log = logging.getLogger("fedcompute.leadership")


class Action(enum.Enum):
    """What one election attempt does."""

    CREATE = "create"  # no Lease yet: create it, holding it
    RENEW = "renew"  # ours: move renewTime forward
    TAKE_OVER = "take over"  # someone else's, expired or released: replace the holder
    STAND_BY = "stand by"  # someone else's and fresh: write nothing


@dataclass(frozen=True)
class Decision:
    """An :class:`Action` and the exact Lease to write for it (None when standing by).

    A written body keeps the observed ``metadata.resourceVersion``, so a replace races
    safely: of two replicas taking over at once, the apiserver lets one win (409 for the
    other).
    """

    action: Action
    body: dict[str, Any] | None = None


def parse_micro_time(value: object) -> datetime | None:
    """A renewTime or acquireTime as an aware datetime; None when absent or garbled."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # metav1.MicroTime is always UTC; a value without an offset is read as such.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _positive_seconds(value: object) -> float | None:
    """A usable leaseDurationSeconds (a positive number), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 and math.isfinite(value) else None


def _count(value: object) -> int:
    """A leaseTransitions counter; 0 when absent or not a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def decide(
    lease: Mapping[str, Any] | None,
    *,
    identity: str,
    now: datetime,
    duration: float,
    namespace: str,
    name: str,
) -> Decision:
    """What to do with the observed ``lease`` (None: it does not exist) at ``now``.

    The holder's Lease is fresh until ``renewTime + leaseDurationSeconds`` by this
    replica's clock; the holder's own duration counts, and this replica's ``duration``
    only when the Lease states none (absent, zero or garbled). A missing or garbled
    renewTime, or an empty holderIdentity (a released Lease), leaves the Lease free.

    Clock skew between replicas shifts that deadline by the skew: a holder whose clock
    runs ahead is honoured for longer, one whose clock lags more than a renew period is
    taken over early. The holder's own loop stops acting by its own clock (see
    :func:`next_tenure`), so replicas must keep their clocks within that margin.

    Taking over sets ``acquireTime`` and adds one to ``leaseTransitions``; renewing keeps
    both; any other field of the observed spec is kept as it is.
    """
    stamp = micro_time(now.astimezone(UTC))
    ours = {
        "holderIdentity": identity,
        # Whole seconds, rounded up: never advertise a shorter tenure than is held.
        "leaseDurationSeconds": max(1, math.ceil(duration)),
        "renewTime": stamp,
    }
    if lease is None:
        return Decision(
            Action.CREATE,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {**ours, "acquireTime": stamp, "leaseTransitions": 0},
            },
        )
    current: Mapping[str, Any] = lease.get("spec") or {}
    holder = current.get("holderIdentity")
    if holder == identity:
        return Decision(Action.RENEW, {**lease, "spec": {**current, **ours}})
    renewed = parse_micro_time(current.get("renewTime"))
    lasts = _positive_seconds(current.get("leaseDurationSeconds")) or duration
    if holder and renewed is not None and now - renewed <= timedelta(seconds=lasts):
        return Decision(Action.STAND_BY)
    transitions = _count(current.get("leaseTransitions")) + 1
    spec = {**current, **ours, "acquireTime": stamp, "leaseTransitions": transitions}
    return Decision(Action.TAKE_OVER, {**lease, "spec": spec})


@dataclass(frozen=True)
class Tenure:
    """Whether this replica acts, and when (by the loop's monotonic clock) it last held."""

    leading: bool = False
    last_held: float = 0.0


def next_tenure(
    tenure: Tenure, *, held: bool, now: float, duration: float, renew_every: float
) -> Tenure:
    """The tenure after one attempt that ended at ``now`` (``held``: it won or renewed).

    A holder that cannot renew stops acting once ``duration - renew_every`` has passed
    since it last held, a renew period before any standby may see the Lease expire, so
    that two replicas do not act at once. One failed attempt alone changes nothing.
    """
    if held:
        return Tenure(leading=True, last_held=now)
    if tenure.leading and now - tenure.last_held > duration - renew_every:
        return Tenure(leading=False, last_held=tenure.last_held)
    return tenure


class LeaseElector:
    """Hold ``namespace/name`` while alive; call back on gaining and losing it."""

    def __init__(
        self,
        host: Host,
        *,
        namespace: str,
        name: str,
        identity: str | None = None,
        duration: float = 15.0,
        renew_every: float = 5.0,
    ) -> None:
        self.host = host
        self.namespace = namespace
        self.name = name
        self.identity = identity or socket.gethostname()
        self.duration = duration
        self.renew_every = renew_every
        self.leading = False
        self._path = leases_path(namespace, name)

    def _try(self) -> bool:
        """One acquire-or-renew attempt (blocking); True while this process holds the Lease."""
        now = datetime.now(UTC)
        try:
            lease: dict[str, Any] | None = self.host.request("GET", self._path)
        except HostError as exc:
            if exc.status != 404:
                raise
            lease = None
        decision = decide(
            lease,
            identity=self.identity,
            now=now,
            duration=self.duration,
            namespace=self.namespace,
            name=self.name,
        )
        if decision.body is None:
            return False
        try:
            if decision.action is Action.CREATE:
                self.host.create_lease(decision.body)
            else:
                self.host.request("PUT", self._path, body=decision.body)
        except HostError as exc:
            if exc.status == 409:  # another replica wrote first
                return False
            raise
        return True

    async def run(
        self,
        on_start: Callable[[], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
    ) -> None:
        """Loop forever: start leading when the Lease is won, stop when it is lost."""
        tenure = Tenure()
        loop = asyncio.get_running_loop()
        while True:
            try:
                held = await asyncio.to_thread(self._try)
            except HostError as exc:
                log.warning("leader election on %s/%s failed: %s", self.namespace, self.name, exc)
                held = False
            was_leading = tenure.leading
            tenure = next_tenure(
                tenure,
                held=held,
                now=loop.time(),
                duration=self.duration,
                renew_every=self.renew_every,
            )
            self.leading = tenure.leading
            if tenure.leading and not was_leading:
                log.info("leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name)
                await on_start()
            elif was_leading and not tenure.leading:
                log.warning("lost the Lease %s/%s: standing by", self.namespace, self.name)
                await on_stop()
            await asyncio.sleep(self.renew_every)
