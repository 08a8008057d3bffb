"""Carry out a Plan's intents on the host cluster, and say what happened to each.

The actuator is the only code that writes. It runs one owner's intents in the order they
were planned (a failed step stops that owner's chain, never another's), different owners
concurrently on a bounded thread pool, and applies one policy to every answer:

* 404 on a patch or delete: the object is gone, which is what a delete wanted and what
  the next pass will plan around;
* 409 on a create: someone else's copy exists; it is read back and compared on the next
  pass (a Lease is renewed instead); 409 on a guarded patch: a conflict, planned again;
* any other 4xx but 429: the API server refused the write (``rejected``, with its
  message), which becomes a ``WriteRejected`` condition on the owner;
* 429, 5xx and transport errors: ``failed``, retried after the owner's backoff.

It never changes the in-memory world: it hands :class:`Outcome` values (with the bodies
the API answered) back to the event loop, which alone decides what to keep.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from fedcompute.api import API_VERSION
from fedcompute.intents import (
    CreateLease,
    CreateNode,
    CreateObject,
    DeleteLease,
    DeleteNode,
    DeleteObject,
    Intent,
    Owner,
    PatchNode,
    PatchObject,
    PatchStatus,
    PostEvent,
    RenewLease,
    SetFinalizers,
)
from fedcompute.kube.host import MERGE, Host, HostError

log = logging.getLogger("fedcompute.actuator")

EVENT_NAMESPACE: Final = "default"
NODES: Final = "nodes"
LEASES: Final = "leases"
Json = dict[str, Any]
Result = Literal["ok", "conflict", "rejected", "failed", "skipped"]
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What became of one intent."""

    intent: Intent
    result: Result
    observed: tuple[tuple[str, str, Json | None], ...] = field(default=())
    """``(collection, name, body)`` the API answered; body None when the object is gone.
    Collections: ``computeproviders``, ``regionpools``, ``nodes``, ``leases``."""
    code: int = 0
    message: str = ""


class _Stop(Exception):
    """Ends an owner's chain with a non-ok outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _classify(intent: Intent, exc: HostError) -> Outcome:
    if exc.status == 409:
        return Outcome(intent, "conflict", code=409, message=str(exc))
    if 400 <= exc.status < 500 and exc.status != 429:
        return Outcome(intent, "rejected", code=exc.status, message=_api_message(exc))
    return Outcome(intent, "failed", code=exc.status, message=str(exc))


def _api_message(exc: HostError) -> str:
    """The API server's own message (HostError carries ``HTTP nnn Reason: message``)."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def describe(intent: Intent) -> str:
    """What an intent writes, for conditions and logs (``create Node fc-a``)."""
    match intent:
        case SetFinalizers():
            return "the finalizers"
        case PatchStatus():
            return "the status"
        case PostEvent():
            return "an Event"
        case CreateNode(name=name):
            return f"create Node {name}"
        case PatchNode(name=name):
            return f"update Node {name}"
        case DeleteNode(name=name):
            return f"delete Node {name}"
        case CreateLease(name=name) | RenewLease(name=name):
            return f"write the Lease of Node {name}"
        case DeleteLease(name=name):
            return f"delete the Lease of Node {name}"
        case CreateObject(collection=collection, name=name):
            return f"create {collection} {name}"
        case PatchObject(collection=collection, name=name):
            return f"update {collection} {name}"
        case DeleteObject(collection=collection, name=name):
            return f"delete {collection} {name}"
    return type(intent).__name__  # pragma: no cover - the match is exhaustive


def resource_of(intent: Intent) -> str:
    """The API resource an intent writes (the ``resource`` label of write-error metrics)."""
    match intent:
        case SetFinalizers(owner=owner) | PatchStatus(owner=owner):
            return owner[0]
        case PostEvent():
            return "events"
        case CreateNode() | PatchNode() | DeleteNode():
            return NODES
        case CreateObject(collection=c) | PatchObject(collection=c) | DeleteObject(collection=c):
            return c
    return LEASES


class Actuator:
    """Executes intents through a :class:`Host`, ``concurrency`` owners at a time."""

    def __init__(
        self,
        host: Host,
        *,
        concurrency: int = 16,
        clock: Callable[[], datetime],
        instance: str | None = None,
    ) -> None:
        self.host = host
        self.clock = clock
        self.instance = (instance or socket.gethostname())[:128]
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fc-write")
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency

    def close(self) -> None:
        """Release the threads (pending chains are cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run one blocking host call on the actuator's threads (reads at start-up, resync)."""
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def execute(
        self,
        chains: Mapping[Owner, Sequence[Intent]],
        on_done: Callable[[list[Outcome]], T] | None = None,
    ) -> list[T] | list[Outcome]:
        """Run every owner's chain, ``concurrency`` at a time.

        With ``on_done``, each chain's outcomes are handed to it (on the event loop) as
        soon as that chain is done, and its results are returned; a chain's intents and
        answers are let go as soon as they are handled, so the memory a large pass needs
        shrinks as it goes. Without, all outcomes are returned in chain order.
        """
        queue = deque(chains.values())
        loop = asyncio.get_running_loop()
        handled: list[Any] = []

        async def worker() -> None:
            while queue:
                chain = queue.popleft()
                try:
                    outcomes = await loop.run_in_executor(self._pool, self.run_chain, chain)
                except Exception as exc:  # a bug in a step: contain it to the chain
                    log.error("writing %s failed", chain[0].owner, exc_info=exc)
                    outcomes = [Outcome(i, "failed", message=type(exc).__name__) for i in chain]
                if on_done is not None:
                    handled.append(on_done(outcomes))
                else:
                    handled.extend(outcomes)

        workers = min(self._concurrency, len(queue))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return handled

    def run_chain(self, chain: Iterable[Intent]) -> list[Outcome]:
        """One owner's intents in order (blocking); the first non-ok outcome stops it."""
        outcomes: list[Outcome] = []
        stopped = False
        for intent in chain:
            if stopped:
                outcomes.append(Outcome(intent, "skipped"))
                continue
            try:
                outcomes.append(self._step(intent))
            except _Stop as stop:
                outcomes.append(stop.outcome)
                stopped = True
            except HostError as exc:
                outcomes.append(_classify(intent, exc))
                stopped = True
        return outcomes

    # --- the steps -----------------------------------------------------------------------

    def _step(self, intent: Intent) -> Outcome:
        match intent:
            case SetFinalizers():
                return self._finalizers(intent)
            case PatchStatus(owner=(plural, name)):
                return self._gone_is_fine(
                    intent, plural, name, lambda: self.host.patch_status(plural, name, intent.patch)
                )
            case PostEvent():
                self._event(intent)
                return Outcome(intent, "ok")
            case CreateNode():
                return self._create_node(intent)
            case PatchNode():
                return self._patch_node(intent)
            case DeleteNode(name=name, lease_namespace=namespace):
                self.host.delete_lease(namespace, name)
                self.host.delete(f"/api/v1/nodes/{name}")
                return Outcome(intent, "ok", ((LEASES, name, None), (NODES, name, None)))
            case CreateLease(name=name, body=body):
                return Outcome(intent, "ok", ((LEASES, name, self._ensure_lease(body)),))
            case RenewLease(name=name, namespace=namespace, renew_time=renew_time):
                # The answer is not read: the renewal schedule keeps its own times, and
                # a Lease's body matters only while it is missing (404: gone).
                try:
                    self.host.renew_lease(namespace, name, renew_time, decode=False)
                except HostError as exc:
                    if exc.status != 404:
                        raise
                    return Outcome(intent, "ok", ((LEASES, name, None),))
                return Outcome(intent, "ok")
            case DeleteLease(name=name, namespace=namespace):
                self.host.delete_lease(namespace, name)
                return Outcome(intent, "ok", ((LEASES, name, None),))
            case CreateObject():
                return self._create_object(intent)
            case PatchObject():
                return self._patch_object(intent)
            case DeleteObject(collection=collection, path=path, name=name, uid=uid):
                self.host.delete(f"{path}/{name}", uid=uid)
                return Outcome(intent, "ok", ((collection, name, None),))
        raise TypeError(f"unknown intent {intent!r}")  # pragma: no cover

    def _gone_is_fine(
        self, intent: Intent, collection: str, name: str, write: Callable[[], Json]
    ) -> Outcome:
        try:
            return Outcome(intent, "ok", ((collection, name, write()),))
        except HostError as exc:
            if exc.status == 404:
                return Outcome(intent, "ok", ((collection, name, None),))
            raise

    def _finalizers(self, intent: SetFinalizers) -> Outcome:
        plural, name = intent.owner
        return self._gone_is_fine(
            intent,
            plural,
            name,
            lambda: self.host.set_finalizers(
                plural, name, list(intent.finalizers), intent.resource_version
            ),
        )

    def _create_node(self, intent: CreateNode) -> Outcome:
        try:
            node = self.host.create_node(intent.body)
        except HostError as exc:
            if exc.status != 409:
                raise
            # Someone else's copy (or ours from before a restart): the next pass compares it.
            node = self.host.request("GET", f"/api/v1/nodes/{intent.name}")
        observed: list[tuple[str, str, Json | None]] = [(NODES, intent.name, node)]
        lease = intent.lease_for(str((node.get("metadata") or {}).get("uid") or ""))
        if lease is not None:
            observed.append((LEASES, intent.name, self._ensure_lease(lease)))
        return Outcome(intent, "ok", tuple(observed))

    def _patch_node(self, intent: PatchNode) -> Outcome:
        node: Json | None = None
        try:
            if intent.metadata:
                node = self.host.patch_node(intent.name, intent.metadata)
            if intent.status:
                node = self.host.patch_node_status(intent.name, intent.status)
        except HostError as exc:
            if exc.status != 404:
                raise
            return Outcome(intent, "ok", ((NODES, intent.name, None),))
        return Outcome(intent, "ok", ((NODES, intent.name, node),) if node else ())

    def _create_object(self, intent: CreateObject) -> Outcome:
        where = f"{intent.path}/{intent.name}"
        try:
            body = self.host.request("POST", intent.path, body=intent.body)
        except HostError as exc:
            if exc.status != 409:
                raise
            # Taken: read it back, so the next pass sees whose it is (never overwritten).
            body = self.host.request("GET", where)
            return Outcome(intent, "ok", ((intent.collection, intent.name, body),))
        if intent.status is not None:
            body = self.host.request(
                "PATCH", f"{where}/status", body={"status": intent.status}, content_type=MERGE
            )
        return Outcome(intent, "ok", ((intent.collection, intent.name, body),))

    def _patch_object(self, intent: PatchObject) -> Outcome:
        where = f"{intent.path}/{intent.name}"
        body: Json | None = None
        try:
            if intent.patch:
                body = self.host.request("PATCH", where, body=intent.patch, content_type=MERGE)
            if intent.status is not None:
                body = self.host.request(
                    "PATCH", f"{where}/status", body={"status": intent.status}, content_type=MERGE
                )
        except HostError as exc:
            if exc.status != 404:
                raise
            return Outcome(intent, "ok", ((intent.collection, intent.name, None),))
        return Outcome(intent, "ok", ((intent.collection, intent.name, body),) if body else ())

    def _ensure_lease(self, body: Json) -> Json:
        try:
            return self.host.create_lease(body)
        except HostError as exc:
            if exc.status != 409:
                raise
            meta = body["metadata"]
            return self.host.renew_lease(meta["namespace"], meta["name"], body["spec"]["renewTime"])

    def _event(self, intent: PostEvent) -> None:
        """Post an Event; a failure is logged and never stops the owner's chain."""
        plural, name = intent.owner
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}."},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": intent.kind,
                "name": name,
                "uid": intent.uid,
                "resourceVersion": intent.resource_version,
            },
            "type": intent.type,
            "reason": intent.reason,
            "message": intent.message,
            "source": {"component": "fedcompute", "host": self.instance},
            "reportingComponent": "fedcompute.io/operator",
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.host.create_event(EVENT_NAMESPACE, body)
        except HostError as exc:
            log.warning("could not post event %s for %s %s: %s", intent.reason, plural, name, exc)
