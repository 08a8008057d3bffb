"""ClusterProfiles of member providers, planned: content, write-on-change, rate limit, orphans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fedcompute.api.provider import ComputeProvider
from fedcompute.capacity import profiles
from fedcompute.capacity.claims import Claim
from fedcompute.capacity.inventory import AcceleratorInventory
from fedcompute.capacity.providers import ProviderView
from fedcompute.intents import CreateObject, DeleteObject, PatchObject

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS = "fleet"
Json = dict[str, Any]


def provider(name: str = "hangzhou", *, display: str | None = "Hangzhou AI") -> ComputeProvider:
    spec: Json = {
        "region": "east-china",
        "zone": "hz-1",
        "sector": "industry",
        "source": {"kubernetes": {"kubeconfigSecretRef": {"name": f"{name}-kubeconfig"}}},
    }
    if display:
        spec["displayName"] = display
    return ComputeProvider.model_validate(
        {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": spec}
    )


def condition(type_: str, status: str, reason: str) -> Json:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": f"{type_} is {status}",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def view(
    *, collected: str = "True", pool: str | None = "train", models: tuple[str, ...] = ("H100",)
) -> ProviderView:
    return ProviderView(
        name="hangzhou",
        region="east-china",
        ready=True,
        offered=True,
        claim=Claim(pool, 0) if pool else None,
        status_wire={
            "conditions": [
                condition("Ready", "True", "Fresh"),
                condition(
                    "Collected", collected, "Collected" if collected == "True" else "Timeout"
                ),
                condition(
                    "Claimed", "True" if pool else "False", "Claimed" if pool else "NoMatchingPool"
                ),
            ],
            "capacity": {"cpu": "64"},
        },
        accelerators=tuple(
            AcceleratorInventory(m, "nvidia.com/gpu", 1, 8, 8, 0, 8) for m in models
        ),
    )


def plan(
    *,
    observed: Json | None = None,
    last_write: datetime | None = None,
    now: datetime = T0,
    the_view: ProviderView | None = None,
    version: str = "v1.34.4",
    the_provider: ComputeProvider | None = None,
) -> profiles.ProfilePlan:
    return profiles.plan_profile(
        the_provider or provider(),
        the_view or view(),
        namespace=NS,
        version=version,
        observed=observed,
        last_write=last_write,
        now=now,
    )


def applied(result: profiles.ProfilePlan, before: Json | None = None) -> Json:
    """The profile after the plan's one write."""
    (intent,) = result.intents
    if isinstance(intent, CreateObject):
        return {
            **intent.body,
            "metadata": {**intent.body["metadata"], "uid": "p1"},
            "status": intent.status,
        }
    assert isinstance(intent, PatchObject) and before is not None
    body = dict(before)
    if intent.patch:
        body["spec"] = {**body["spec"], **intent.patch["spec"]}
    if intent.status is not None:
        body["status"] = intent.status
    return body


def test_a_new_profile_identifies_locates_and_describes_the_cluster() -> None:
    result = plan()
    (intent,) = result.intents
    assert isinstance(intent, CreateObject)
    assert intent.path == f"/apis/multicluster.x-k8s.io/v1alpha1/namespaces/{NS}/clusterprofiles"
    meta = intent.body["metadata"]
    assert meta["labels"] == {"x-k8s.io/cluster-manager": "fedcompute"}
    assert meta["ownerReferences"][0]["kind"] == "ComputeProvider"
    assert meta["ownerReferences"][0]["uid"] == "uid-hangzhou"
    assert intent.body["spec"] == {
        "clusterManager": {"name": "fedcompute"},
        "displayName": "Hangzhou AI",
    }
    status = intent.status
    assert status is not None
    assert status["version"] == {"kubernetes": "v1.34.4"}
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("ControlPlaneHealthy", "True", "Collected"),
        ("Joined", "True", "Claimed"),
    ]
    assert {p["name"]: p["value"] for p in status["properties"]} == {
        "fedcompute.io/region": "east-china",
        "fedcompute.io/zone": "hz-1",
        "fedcompute.io/sector": "industry",
        "fedcompute.io/pool": "train",
        "fedcompute.io/accelerator-models": "H100",
    }
    # No capacity figure anywhere in the profile.
    assert "64" not in str(status)


def test_nothing_is_written_while_nothing_changes_whatever_the_clock() -> None:
    body = applied(plan())
    later = T0 + timedelta(hours=3)
    assert plan(observed=body, last_write=T0, now=later).intents == ()
    # A restarted operator (no write time known) writes nothing either.
    assert plan(observed=body, last_write=None, now=later).intents == ()


def test_a_change_is_written_with_times_of_unchanged_entries_kept() -> None:
    body = applied(plan())
    later = T0 + timedelta(minutes=5)
    result = plan(observed=body, last_write=T0, now=later, the_view=view(collected="False"))
    after = applied(result, body)
    conditions = {c["type"]: c for c in after["status"]["conditions"]}
    assert conditions["ControlPlaneHealthy"]["status"] == "False"
    assert conditions["ControlPlaneHealthy"]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert conditions["Joined"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    observed = {p["name"]: p["lastObservedTime"] for p in after["status"]["properties"]}
    assert set(observed.values()) == {"2026-01-01T12:00:00Z"}


def test_changes_within_30_seconds_of_the_last_write_wait() -> None:
    body = applied(plan())
    soon = T0 + timedelta(seconds=10)
    held = plan(observed=body, last_write=T0, now=soon, the_view=view(pool=None))
    assert held.intents == ()
    assert held.retry_after == 20
    due = plan(
        observed=body, last_write=T0, now=T0 + timedelta(seconds=30), the_view=view(pool=None)
    )
    (intent,) = due.intents
    assert isinstance(intent, PatchObject) and intent.patch is None
    assert intent.status is not None
    names = [p["name"] for p in intent.status["properties"]]
    assert "fedcompute.io/pool" not in names


def test_display_name_changes_patch_the_spec_only_there() -> None:
    body = applied(plan())
    result = plan(observed=body, last_write=None, the_provider=provider(display=None))
    (intent,) = result.intents
    assert isinstance(intent, PatchObject)
    assert intent.patch == {"spec": {"displayName": "hangzhou"}}
    assert intent.status is None


def test_an_unknown_version_keeps_the_one_published() -> None:
    body = applied(plan())
    assert plan(observed=body, version="", now=T0 + timedelta(hours=1)).intents == ()


def test_a_profile_of_that_name_from_another_manager_is_never_touched() -> None:
    theirs = {
        "metadata": {"name": "hangzhou", "uid": "x"},
        "spec": {"clusterManager": {"name": "ocm"}},
    }
    assert plan(observed=theirs).intents == ()
    assert profiles.orphans({"hangzhou": theirs}, namespace=NS, members=set()) == []


def test_profiles_of_gone_providers_are_deleted() -> None:
    body = applied(plan())
    (intent,) = profiles.orphans({"hangzhou": body}, namespace=NS, members=set())
    assert isinstance(intent, DeleteObject)
    assert (intent.name, intent.uid, intent.owner) == (
        "hangzhou",
        "p1",
        ("computeproviders", "hangzhou"),
    )
    assert profiles.orphans({"hangzhou": body}, namespace=NS, members={"hangzhou"}) == []
