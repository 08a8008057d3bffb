"""Frozen, typed intents: the writes a Plan asks for, and nothing else. Pure data.

They are the contract between :mod:`fedcompute.capacity.plan`, which decides them, and
:mod:`fedcompute.kube.actuator`, which carries them out; neither imports the other.
Every intent names its ``owner`` (``(plural, name)`` of the ComputeProvider or RegionPool
whose writes must run in planned order; a virtual node and its Lease belong to their
provider).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
Owner = tuple[str, str]
"""``(plural, name)`` of the object whose writes an intent belongs to."""


@dataclass(frozen=True)
class SetFinalizers:
    """Replace ``metadata.finalizers``, guarded by the observed resourceVersion."""

    owner: Owner
    finalizers: tuple[str, ...]
    resource_version: str


@dataclass(frozen=True)
class PatchStatus:
    """Merge-patch the owner's status."""

    owner: Owner
    patch: Json


@dataclass(frozen=True)
class PostEvent:
    """Record a core/v1 Event about the owner."""

    owner: Owner
    kind: str
    uid: str
    resource_version: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class CreateNode:
    """Create a virtual Node, then (when ``lease`` is set) its Lease, owned by it."""

    owner: Owner
    name: str
    body: Json
    lease: Json | None = None
    """The Lease to create once the node exists; its owner reference gets the node's uid."""

    def lease_for(self, node_uid: str) -> Json | None:
        """The Lease body, owned by the node just created (uid known only then)."""
        if self.lease is None:
            return None
        meta = dict(self.lease.get("metadata") or {})
        meta["ownerReferences"] = [
            {**ref, "uid": node_uid} for ref in meta.get("ownerReferences") or []
        ]
        return {**self.lease, "metadata": meta}


@dataclass(frozen=True)
class PatchNode:
    """Merge-patch a virtual Node's metadata/spec, then its status."""

    owner: Owner
    name: str
    metadata: Json | None
    status: Json | None


@dataclass(frozen=True)
class DeleteNode:
    """Delete a virtual Node and its Lease."""

    owner: Owner
    name: str
    lease_namespace: str


@dataclass(frozen=True)
class CreateLease:
    """Create the Lease of an existing virtual Node."""

    owner: Owner
    name: str
    body: Json


@dataclass(frozen=True)
class RenewLease:
    """Move a node Lease's renewTime forward."""

    owner: Owner
    name: str
    namespace: str
    renew_time: str


@dataclass(frozen=True)
class DeleteLease:
    """Delete a Lease whose node is gone."""

    owner: Owner
    name: str
    namespace: str


@dataclass(frozen=True)
class CreateObject:
    """Create an object the operator exports (a Kueue ResourceFlavor or ClusterQueue, a
    ClusterProfile), then write its ``status`` subresource when one is given.

    ``collection`` keys the object in the world (``resourceflavors``, ...); ``path`` is the
    collection's URL path. A 409 means an object of that name exists already: it is read
    back, so the next pass sees whose it is.
    """

    owner: Owner
    collection: str
    path: str
    name: str
    body: Json
    status: Json | None = None


@dataclass(frozen=True)
class PatchObject:
    """Merge-patch an exported object (``patch``), then its status subresource
    (``status``); a 404 means it is gone, which the next pass plans around."""

    owner: Owner
    collection: str
    path: str
    name: str
    patch: Json | None
    status: Json | None = None


@dataclass(frozen=True)
class DeleteObject:
    """Delete an exported object, only if it is still the one observed (``uid``)."""

    owner: Owner
    collection: str
    path: str
    name: str
    uid: str


Intent = (
    SetFinalizers
    | PatchStatus
    | PostEvent
    | CreateNode
    | PatchNode
    | DeleteNode
    | CreateLease
    | RenewLease
    | DeleteLease
    | CreateObject
    | PatchObject
    | DeleteObject
)
