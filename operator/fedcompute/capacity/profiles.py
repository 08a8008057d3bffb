"""ClusterProfiles (SIG-Multicluster, ``multicluster.x-k8s.io/v1alpha1``) of member providers. Pure.

With ``--cluster-profiles-namespace NS`` the operator keeps one ClusterProfile per
kubernetes-sourced ComputeProvider in NS, named after it: the inventory MultiKueue,
multicluster-runtime and Argo CD's syncers read to discover clusters. It carries what
identifies and locates the cluster, never capacity figures (KEP-4322 rules dynamic data
out of the profile):

* ``spec.clusterManager.name: fedcompute`` and the label
  ``x-k8s.io/cluster-manager: fedcompute``; ``spec.displayName``;
* ``status.version.kubernetes``: the member's ``/version``, read at each collection;
* ``status.conditions``: ``ControlPlaneHealthy`` from the provider's ``Collected``
  condition and ``Joined`` from ``Claimed``;
* ``status.properties``: ``fedcompute.io/region``, ``zone``, ``sector``, ``pool`` and
  ``accelerator-models``, each with the time its value was first seen.

A profile is written only when something in it changes, and at most once per
:data:`MIN_WRITE_INTERVAL` seconds (as the KEP asks of cluster managers): a change that
comes sooner waits, and the pass says when to come back. A profile of that name that the
operator did not create is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from fedcompute.api import API_VERSION
from fedcompute.api.common import format_time
from fedcompute.api.provider import KIND as PROVIDER_KIND
from fedcompute.api.provider import PLURAL as PROVIDERS
from fedcompute.api.provider import ComputeProvider, ConditionType
from fedcompute.capacity.providers import ProviderView
from fedcompute.intents import CreateObject, DeleteObject, Intent, PatchObject

GROUP_VERSION: Final = "multicluster.x-k8s.io/v1alpha1"
COLLECTION: Final = "clusterprofiles"
LABEL_MANAGER: Final = "x-k8s.io/cluster-manager"
MANAGER: Final = "fedcompute"
SELECTOR: Final = f"{LABEL_MANAGER}={MANAGER}"
MIN_WRITE_INTERVAL: Final = 30.0
CONTROL_PLANE_HEALTHY: Final = "ControlPlaneHealthy"
JOINED: Final = "Joined"
PROPERTY_PREFIX: Final = "fedcompute.io/"
_VALUE_MAX: Final = 1024

Json = dict[str, Any]


def path(namespace: str) -> str:
    """The collection path of ClusterProfiles in ``namespace``."""
    return f"/apis/{GROUP_VERSION}/namespaces/{namespace}/{COLLECTION}"


def ours(body: Json) -> bool:
    """Whether fedcompute manages ``body`` (its label and cluster manager say so)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    manager = ((body.get("spec") or {}).get("clusterManager") or {}).get("name")
    return labels.get(LABEL_MANAGER) == MANAGER and manager == MANAGER


@dataclass(frozen=True)
class ProfilePlan:
    """One profile's writes, and when to come back for a change held by the rate limit."""

    intents: tuple[Intent, ...] = ()
    retry_after: float | None = None
    """Seconds until a held change may be written (None: nothing held)."""


def _conditions(view: ProviderView, previous: list[Json], now: datetime) -> list[Json]:
    """ControlPlaneHealthy and Joined, from the provider's desired Collected and Claimed."""
    mine = {
        str(c.get("type")): c
        for c in view.status_wire.get("conditions") or []
        if isinstance(c, Mapping)
    }
    before = {str(c.get("type")): c for c in previous if isinstance(c, Mapping)}
    result = []
    for type_, source in (
        (CONTROL_PLANE_HEALTHY, ConditionType.COLLECTED),
        (JOINED, ConditionType.CLAIMED),
    ):
        found = mine.get(source) or {}
        value = str(found.get("status") or "Unknown")
        reason = str(found.get("reason") or "Pending")
        message = str(found.get("message") or "")
        prior = before.get(type_)
        since = (
            prior.get("lastTransitionTime")
            if prior is not None and prior.get("status") == value
            else None
        ) or format_time(now)
        result.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message[:32768],
                "lastTransitionTime": since,
            }
        )
    return result


def _properties(
    provider: ComputeProvider, view: ProviderView, previous: list[Json], now: datetime
) -> list[Json]:
    spec = provider.spec
    models = sorted({d.model for d in view.accelerators})
    values = {
        "region": spec.region,
        "zone": spec.zone or "",
        "sector": spec.sector or "",
        "pool": view.claim.pool if view.claim else "",
        "accelerator-models": ",".join(models)[:_VALUE_MAX],
    }
    before = {str(p.get("name")): p for p in previous if isinstance(p, Mapping)}
    result = []
    for key, value in values.items():
        if not value:
            continue
        name = f"{PROPERTY_PREFIX}{key}"
        prior = before.get(name)
        seen = (
            prior.get("lastObservedTime")
            if prior is not None and prior.get("value") == value
            else None
        ) or format_time(now)
        result.append({"name": name, "value": value, "lastObservedTime": seen})
    return result


def desired(
    provider: ComputeProvider,
    view: ProviderView,
    *,
    version: str,
    observed: Json | None,
    now: datetime,
) -> tuple[Json, Json]:
    """``(spec, status)`` of the provider's profile; times of unchanged entries kept."""
    previous = (observed or {}).get("status") or {}
    spec = {
        "clusterManager": {"name": MANAGER},
        "displayName": provider.spec.display_name or provider.name,
    }
    status: Json = {
        "conditions": _conditions(view, previous.get("conditions") or [], now),
        "properties": _properties(provider, view, previous.get("properties") or [], now),
    }
    known = version or ((previous.get("version") or {}).get("kubernetes") or "")
    if known:
        status["version"] = {"kubernetes": known}
    return spec, status


def plan_profile(
    provider: ComputeProvider,
    view: ProviderView,
    *,
    namespace: str,
    version: str,
    observed: Json | None,
    last_write: datetime | None,
    now: datetime,
) -> ProfilePlan:
    """The writes that bring the provider's ClusterProfile to what its status says."""
    owner = (PROVIDERS, provider.name)
    if observed is not None and not ours(observed):
        return ProfilePlan()  # someone else's profile of that name: never touched
    spec, status = desired(provider, view, version=version, observed=observed, now=now)
    where = path(namespace)
    if observed is None:
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": "ClusterProfile",
            "metadata": {
                "name": provider.name,
                "namespace": namespace,
                "labels": {LABEL_MANAGER: MANAGER},
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": PROVIDER_KIND,
                        "name": provider.name,
                        "uid": provider.metadata.uid or "",
                        "blockOwnerDeletion": False,
                    }
                ],
            },
            "spec": spec,
        }
        return ProfilePlan((CreateObject(owner, COLLECTION, where, provider.name, body, status),))
    spec_patch = None
    if (observed.get("spec") or {}).get("displayName") != spec["displayName"]:
        spec_patch = {"spec": {"displayName": spec["displayName"]}}
    status_patch = status if _status_differs(observed.get("status") or {}, status) else None
    if spec_patch is None and status_patch is None:
        return ProfilePlan()
    if last_write is not None:
        wait = MIN_WRITE_INTERVAL - (now - last_write).total_seconds()
        if wait > 0:
            return ProfilePlan(retry_after=wait)
    return ProfilePlan(
        (PatchObject(owner, COLLECTION, where, provider.name, spec_patch, status_patch),)
    )


def _status_differs(observed: Json, wanted: Json) -> bool:
    return any(observed.get(key) != value for key, value in wanted.items())


def orphans(observed: Mapping[str, Json], *, namespace: str, members: set[str]) -> list[Intent]:
    """Deletions of our profiles whose provider is gone or no longer a member cluster."""
    result: list[Intent] = []
    for name, body in sorted(observed.items()):
        meta = body.get("metadata") or {}
        if name in members or not ours(body) or meta.get("deletionTimestamp"):
            continue
        result.append(
            DeleteObject(
                (PROVIDERS, name), COLLECTION, path(namespace), name, str(meta.get("uid") or "")
            )
        )
    return result
