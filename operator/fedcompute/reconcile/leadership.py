"""Leader election on a coordination.k8s.io Lease, for several operator replicas.

Kopf peering stops a standby replica's watch handlers, but the engine also acts on its
own timers (collections, Lease renewals). This elector gates those: only the holder of
the Lease runs the engine's loops; a standby keeps observing and takes over when the
holder stops renewing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fedcompute.kube.host import Host, HostError, leases_path

log = logging.getLogger("fedcompute.leadership")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _micro(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": _micro(now),
        }
        try:
            lease = self.host.request("GET", self._path)
        except HostError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": _micro(now), "leaseTransitions": 0},
            }
            try:
                self.host.create_lease(body)
            except HostError as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = _parse(current.get("renewTime"))
        expired = renewed is None or now - renewed > timedelta(
            seconds=float(current.get("leaseDurationSeconds") or self.duration)
        )
        if holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**current, **spec}
        try:
            self.host.request("PUT", self._path, body=lease)  # resourceVersion guards races
        except HostError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def run(
        self,
        on_start: Callable[[], Awaitable[None]],
        on_stop: Callable[[], Awaitable[None]],
    ) -> None:
        """Loop forever: start leading when the Lease is won, stop when it is lost."""
        last_held = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                held = await asyncio.to_thread(self._try)
            except HostError as exc:
                log.warning("leader election on %s/%s failed: %s", self.namespace, self.name, exc)
                held = False
            now = loop.time()
            if held:
                last_held = now
                if not self.leading:
                    log.info(
                        "leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name
                    )
                    self.leading = True
                    await on_start()
            elif self.leading and now - last_held > self.duration - self.renew_every:
                log.warning("lost the Lease %s/%s: standing by", self.namespace, self.name)
                self.leading = False
                await on_stop()
            await asyncio.sleep(self.renew_every)
