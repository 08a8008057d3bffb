"""The in-memory world: what the operator has observed, changed only on the event loop.

Watch events, write outcomes and collection results all arrive here, on the loop's
thread, so planning reads a world nobody mutates meanwhile. A write's answer is taken as
the newest observation only when it is not older than the copy already held (by
resourceVersion): a watch event that overtook our own write's response stays.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from fedcompute.api.accelerator import AcceleratorModel
from fedcompute.api.pool import PLURAL as POOLS
from fedcompute.api.pool import RegionPool
from fedcompute.api.provider import PLURAL as PROVIDERS
from fedcompute.api.provider import ComputeProvider
from fedcompute.capacity.catalog import Catalog, ModelSpec, from_object
from fedcompute.capacity.providers import Collection
from fedcompute.capacity.snapshot import Observed, Rejection, Snapshot
from fedcompute.intents import (
    CreateObject,
    DeleteObject,
    Intent,
    Owner,
    PatchObject,
    PatchStatus,
    PostEvent,
    SetFinalizers,
)
from fedcompute.kube.actuator import NODES, Outcome, describe

log = logging.getLogger("fedcompute.world")
Json = dict[str, Any]
STATUS: Final = "status"
NODE: Final = "node"
META: Final = "meta"
EXPORT: Final = "export"
EXPORTED: Final = ("resourceflavors", "clusterqueues", "clusterprofiles")
"""Collections of the objects the operator exports, kept in :attr:`World.exported`."""


def stream(intent: Intent) -> str:
    """Which of an owner's write streams an intent belongs to (backoff is kept per stream).

    A node write the API server refuses must not hold back the owner's status, which is
    where the refusal is reported.
    """
    if isinstance(intent, PatchStatus | PostEvent):
        return STATUS
    if isinstance(intent, SetFinalizers):
        return META
    if isinstance(intent, CreateObject | PatchObject | DeleteObject):
        return EXPORT
    return NODE


def lean(body: Json) -> Json:
    """``body`` without ``metadata.managedFields``: no plan reads them, and at thousands
    of objects they are most of the world's memory."""
    meta = body.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        body = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return body


def newer_or_same(incoming: Json, current: Json | None) -> bool:
    """Whether ``incoming`` may replace ``current`` (resourceVersions compared as numbers).

    Kubernetes calls resourceVersion opaque, but within one resource of one apiserver
    they are etcd revisions; anything non-numeric is taken as newer.
    """
    if current is None:
        return True
    new = str((incoming.get("metadata") or {}).get("resourceVersion") or "")
    old = str((current.get("metadata") or {}).get("resourceVersion") or "")
    if new.isdigit() and old.isdigit():
        return int(new) >= int(old)
    return True


@dataclass
class World:
    """Everything observed, keyed by name; the event loop is its only writer."""

    providers: dict[str, Observed] = field(default_factory=dict)
    pools: dict[str, Observed] = field(default_factory=dict)
    nodes: dict[str, Json] = field(default_factory=dict)
    leases: dict[str, Json] = field(default_factory=dict)
    collections: dict[str, Collection] = field(default_factory=dict)
    rejections: dict[tuple[Owner, str], Rejection] = field(default_factory=dict)
    """Refused writes by (owner, stream), until a retry succeeds or the owner changes."""
    models: dict[str, Json] = field(default_factory=dict)
    """AcceleratorModel objects by name, as observed."""
    exported: dict[str, dict[str, Json]] = field(default_factory=lambda: {c: {} for c in EXPORTED})
    """Exported objects by collection and name (see :data:`EXPORTED`)."""
    kueue: bool | None = None
    """None: no Kueue export in this operator; else whether Kueue's API is served."""
    cluster_profiles: str | None = None
    """The namespace ClusterProfiles are published in (None: not published)."""
    export_written: dict[tuple[str, str], datetime] = field(default_factory=dict)
    """When each exported object was last written (the rate limit of ClusterProfiles)."""
    _catalog: Catalog | None = None

    @property
    def catalog(self) -> Catalog:
        """The built-in catalog with the valid AcceleratorModels over it (by name order);
        a new object only when they change, so plans compare it by identity."""
        if self._catalog is None:
            self._catalog = Catalog(_model_specs(self.models.values()))
        return self._catalog

    def observe_model(self, event_type: str | None, body: Json) -> bool:
        """Record an AcceleratorModel event; True when the catalog changes."""
        name = str(body["metadata"]["name"])
        previous = self.models.get(name)
        if event_type == "DELETED":
            if self.models.pop(name, None) is None:
                return False
        elif previous is not None and (
            not newer_or_same(body, previous) or previous.get("spec") == body.get("spec")
        ):
            return False
        else:
            self.models[name] = lean(body)
        self._catalog = None
        return True

    def snapshot(self) -> Snapshot:
        """A read-only view for the planner (no copy: planning runs without awaiting)."""
        by_owner: dict[Owner, Rejection] = {}
        exports: dict[Owner, Rejection] = {}
        for (owner, write_stream), rejection in sorted(self.rejections.items()):
            (exports if write_stream == EXPORT else by_owner).setdefault(owner, rejection)
        return Snapshot(
            providers=types.MappingProxyType(self.providers),
            pools=types.MappingProxyType(self.pools),
            nodes=types.MappingProxyType(self.nodes),
            leases=types.MappingProxyType(self.leases),
            rejections=by_owner,
            exported=types.MappingProxyType(self.exported),
            kueue=self.kueue,
            export_rejections=exports,
            cluster_profiles=self.cluster_profiles,
            export_written=types.MappingProxyType(self.export_written),
            catalog=self.catalog,
        )

    def observe(self, plural: str, event_type: str | None, body: Json) -> Observed | None:
        """Record a watch event; returns the object replaced (None if new or deleted)."""
        objects = self.providers if plural == PROVIDERS else self.pools
        name = str(body["metadata"]["name"])
        previous = objects.get(name)
        if event_type == "DELETED":
            objects.pop(name, None)
            return None
        if previous is not None and not newer_or_same(body, previous.body):
            return previous  # an older event than our own write's answer
        objects[name] = _observed(plural, lean(body), previous)
        return previous

    def apply(self, outcomes: Iterable[Outcome], *, now: datetime | None = None) -> None:
        """Take the API's answers as observations; record or clear refused writes (and, at
        ``now``, when exported objects were written)."""
        for outcome in outcomes:
            intent = outcome.intent
            if now is not None and outcome.result == "ok":
                if isinstance(intent, CreateObject | PatchObject):
                    self.export_written[(intent.collection, intent.name)] = now
                elif isinstance(intent, DeleteObject):
                    self.export_written.pop((intent.collection, intent.name), None)
            for collection, name, body in outcome.observed:
                self._store(collection, name, body)
            key = (outcome.intent.owner, stream(outcome.intent))
            if outcome.result == "rejected":
                self.rejections[key] = Rejection(
                    describe(outcome.intent),
                    outcome.code,
                    outcome.message,
                    status_write=isinstance(outcome.intent, PatchStatus),
                )
            elif outcome.result == "ok":
                self.rejections.pop(key, None)

    def forget_rejections(self, owner: Owner | None = None, *, stream: str | None = None) -> None:
        """Drop refused writes of ``owner`` (or of everyone) in ``stream`` (or all streams)."""
        for key in list(self.rejections):
            if (owner is None or key[0] == owner) and (stream is None or key[1] == stream):
                del self.rejections[key]

    def refusal(self, outcome: Outcome) -> PostEvent:
        """An Event for a refused status write (no condition can carry that one)."""
        plural, name = outcome.intent.owner
        obs = (self.providers if plural == PROVIDERS else self.pools).get(name)
        return PostEvent(
            outcome.intent.owner,
            "ComputeProvider" if plural == PROVIDERS else "RegionPool",
            str(obs.metadata.get("uid") or "") if obs else "",
            obs.resource_version if obs else "",
            "Warning",
            "WriteRejected",
            f"the API server refused the status (HTTP {outcome.code}): {outcome.message}"[:1024],
        )

    def observe_exported(self, collection: str, event_type: str | None, body: Json) -> bool:
        """Record a watch event of an exported object; True when it changed."""
        store = self.exported[collection]
        name = str(body["metadata"]["name"])
        if event_type == "DELETED":
            return store.pop(name, None) is not None
        current = store.get(name)
        if current is not None and not newer_or_same(body, current):
            return False
        store[name] = lean(body)
        return current is None or current.get("metadata", {}).get("resourceVersion") != body.get(
            "metadata", {}
        ).get("resourceVersion")

    def replace_exported(self, collection: str, bodies: Iterable[Json]) -> None:
        """Take a fresh listing of one exported collection as the truth."""
        self.exported[collection] = {str(b["metadata"]["name"]): lean(b) for b in bodies}

    def _store(self, collection: str, name: str, body: Json | None) -> None:
        if collection in self.exported:
            store = self.exported[collection]
            if body is None:
                store.pop(name, None)
            elif newer_or_same(body, store.get(name)):
                store[name] = lean(body)
            return
        if collection in (PROVIDERS, POOLS):
            objects = self.providers if collection == PROVIDERS else self.pools
            if body is None:
                return  # the watch delivers the deletion; nothing to keep meanwhile
            current = objects.get(name)
            if current is not None and newer_or_same(body, current.body):
                objects[name] = _observed(collection, lean(body), current)
            return
        store = self.nodes if collection == NODES else self.leases
        if body is None:
            store.pop(name, None)
        elif newer_or_same(body, store.get(name)):
            store[name] = lean(body)

    def replace_virtual(self, node_list: list[Json], lease_list: list[Json]) -> None:
        """Take a fresh listing of the virtual Nodes and Leases as the truth."""
        self.nodes = {n["metadata"]["name"]: lean(n) for n in node_list}
        self.leases = {x["metadata"]["name"]: lean(x) for x in lease_list}


def _model_specs(bodies: Iterable[Json]) -> list[ModelSpec]:
    """The valid AcceleratorModels as catalog entries, by name; an invalid one (the CRD
    admits only valid ones, so this is an object written around it) is left out, logged."""
    specs = []
    for body in sorted(bodies, key=lambda b: str(b["metadata"]["name"])):
        try:
            specs.append(from_object(AcceleratorModel.model_validate(body)))
        except ValueError as exc:
            log.warning(
                "AcceleratorModel %s is not valid and is ignored: %s",
                body["metadata"]["name"],
                str(exc).splitlines()[0][:200],
            )
    return specs


def _observed(plural: str, body: Json, previous: Observed | None = None) -> Observed:
    return Observed(ComputeProvider if plural == PROVIDERS else RegionPool, body, previous)
