"""A pool's Kueue export, planned: flavors, the ClusterQueue's quotas, ownership, deletion."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

from fedcompute import quantities
from fedcompute.api.pool import Reason, RegionPool
from fedcompute.capacity import kueue
from fedcompute.capacity.claims import Claim
from fedcompute.capacity.inventory import AcceleratorInventory
from fedcompute.capacity.providers import ProviderView
from fedcompute.intents import CreateObject, DeleteObject, Intent, PatchObject

GPU = "nvidia.com/gpu"
NPU = "huawei.com/Ascend910"
H100 = "NVIDIA-H100-80GB-HBM3"


def q(values: Mapping[str, str | int]) -> dict[str, Decimal]:
    return quantities.parse_map(values)


def pool(
    name: str = "train",
    *,
    export: dict[str, Any] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> RegionPool:
    spec: dict[str, Any] = {"regions": ["east"]}
    if export is not None:
        spec["kueue"] = export
    if taints is not None:
        spec["nodeTemplate"] = {"taints": taints}
    return RegionPool.model_validate(
        {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": spec}
    )


def devices(
    model: str, count: int, free: int, resource: str = GPU, capacity: int | None = None
) -> AcceleratorInventory:
    return AcceleratorInventory(
        model, resource, 1, capacity or count, count, count - free, free, vendor="NVIDIA"
    )


def view(
    name: str,
    *accelerators: AcceleratorInventory,
    cpu: str = "64",
    used: str = "16",
    ready: bool = True,
    schedulable: bool = True,
) -> ProviderView:
    allocatable = q({"cpu": cpu, "memory": "256Gi"})
    allocated = q({"cpu": used, "memory": "64Gi"})
    return ProviderView(
        name=name,
        region="east",
        ready=ready,
        offered=ready and schedulable,
        claim=Claim("train", 0),
        status_wire={},
        capacity=dict(allocatable),
        allocatable=allocatable,
        allocated=allocated,
        available=quantities.subtract(allocatable, allocated),
        accelerators=accelerators,
    )


def by_name(intents: tuple[Intent, ...]) -> dict[str, Intent]:
    return {i.name: i for i in intents if isinstance(i, CreateObject | PatchObject | DeleteObject)}


def queue_of(intents: tuple[Intent, ...], name: str = "fc-train") -> dict[str, Any]:
    intent = by_name(intents)[name]
    assert isinstance(intent, CreateObject)
    spec: dict[str, Any] = intent.body["spec"]
    return spec


def quotas(queue_spec: dict[str, Any]) -> dict[str, dict[str, str]]:
    group = queue_spec["resourceGroups"][0]
    return {
        f["name"]: {r["name"]: r["nominalQuota"] for r in f["resources"]} for f in group["flavors"]
    }


def created(plan: kueue.KueuePlan) -> dict[str, Json]:
    return {i.name: i.body for i in plan.intents if isinstance(i, CreateObject)}


Json = dict[str, Any]
VIEWS = [
    view("a", devices(H100, 8, 6)),
    view("b", devices(H100, 8, 8), devices("A100", 2, 2), cpu="32", used="0"),
    view("c", devices("910B3", 16, 10, NPU)),
    view("plain", cpu="128", used="100"),
    view("stale", devices(H100, 8, 8), ready=False),
    view("drained", cpu="1000", schedulable=False),
]


def test_one_flavor_per_model_and_one_without_accelerators() -> None:
    plan = kueue.plan_export(pool(export={}), VIEWS, {}, installed=True)
    bodies = created(plan)
    flavors = {n: b for n, b in bodies.items() if b["kind"] == "ResourceFlavor"}
    assert set(flavors) == {
        "fc-train-cpu",
        kueue.flavor_name("train", H100),
        kueue.flavor_name("train", "910B3"),
    }
    h100 = flavors[kueue.flavor_name("train", H100)]["spec"]
    assert h100["nodeLabels"] == {"fedcompute.io/pool": "train", "fedcompute.io/accelerator": H100}
    assert h100["tolerations"] == [
        {
            "key": "fedcompute.io/virtual",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }
    ]
    cpu_only = flavors["fc-train-cpu"]["spec"]
    assert cpu_only["nodeLabels"]["fedcompute.io/accelerator"] == "none"


def test_quotas_are_the_sums_over_ready_schedulable_providers_of_each_flavor() -> None:
    plan = kueue.plan_export(pool(export={}), VIEWS, {}, installed=True)
    spec = queue_of(plan.intents)
    assert spec["namespaceSelector"] == {}
    covered = spec["resourceGroups"][0]["coveredResources"]
    assert covered == ["cpu", "memory", NPU, GPU]
    got = quotas(spec)
    h100 = kueue.flavor_name("train", H100)
    npu = kueue.flavor_name("train", "910B3")
    # a (64 cpu, 8 H100) + b (32 cpu, 8 H100; its 2 A100 belong to no flavor of theirs);
    # "stale" is not Ready and "drained" not schedulable: neither counts.
    assert got[h100] == {"cpu": "96", "memory": "512Gi", NPU: "0", GPU: "16"}
    assert got[npu] == {"cpu": "64", "memory": "256Gi", NPU: "16", GPU: "0"}
    assert got["fc-train-cpu"] == {"cpu": "128", "memory": "256Gi", NPU: "0", GPU: "0"}


def test_available_quota_takes_what_is_free() -> None:
    plan = kueue.plan_export(pool(export={"quota": "Available"}), VIEWS, {}, installed=True)
    got = quotas(queue_of(plan.intents))
    h100 = kueue.flavor_name("train", H100)
    assert got[h100] == {"cpu": "80", "memory": "384Gi", NPU: "0", GPU: "14"}


def test_queue_name_cohort_and_pool_taints_as_tolerations() -> None:
    the_pool = pool(
        export={"clusterQueue": "gpu-queue", "cohort": "national"},
        taints=[{"key": "example.com/gpu", "value": "true", "effect": "NoSchedule"}],
    )
    plan = kueue.plan_export(the_pool, VIEWS[:1], {}, installed=True)
    spec = queue_of(plan.intents, "gpu-queue")
    assert spec["cohortName"] == "national"
    flavor = created(plan)[kueue.flavor_name("train", H100)]["spec"]
    assert {
        "key": "example.com/gpu",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in flavor["tolerations"]


def test_objects_carry_the_label_and_the_pool_as_owner() -> None:
    plan = kueue.plan_export(pool(export={}), VIEWS[:1], {}, installed=True)
    for body in created(plan).values():
        meta = body["metadata"]
        assert meta["labels"] == {
            "app.kubernetes.io/managed-by": "fedcompute",
            "fedcompute.io/pool": "train",
        }
        assert meta["ownerReferences"][0]["uid"] == "uid-train"
        assert meta["ownerReferences"][0]["kind"] == "RegionPool"
    # Flavors are created before the queue that names them.
    kinds = [i.body["kind"] for i in plan.intents if isinstance(i, CreateObject)]
    assert kinds == ["ResourceFlavor", "ClusterQueue"]
    assert plan.condition is not None
    assert plan.condition[:2] == ("False", Reason.EXPORT_PENDING)


def observed_from(plan: kueue.KueuePlan) -> dict[str, dict[str, Json]]:
    """The world after the plan's creates succeeded (Kueue's defaults added)."""
    world: dict[str, dict[str, Json]] = {kueue.FLAVORS: {}, kueue.QUEUES: {}}
    for intent in plan.intents:
        assert isinstance(intent, CreateObject)
        body = {**intent.body, "metadata": {**intent.body["metadata"], "uid": f"u-{intent.name}"}}
        if intent.collection == kueue.QUEUES:
            body["spec"] = {
                **body["spec"],
                "queueingStrategy": "BestEffortFIFO",
                "stopPolicy": "None",
            }
        world[intent.collection][intent.name] = body
    return world


def test_nothing_is_written_once_the_objects_match_despite_kueue_defaults() -> None:
    first = kueue.plan_export(pool(export={}), VIEWS, {}, installed=True)
    again = kueue.plan_export(pool(export={}), VIEWS, observed_from(first), installed=True)
    assert again.intents == ()
    assert again.condition is not None
    assert again.condition[:2] == ("True", Reason.EXPORTED)


def test_quota_follows_a_provider_that_goes_stale_and_comes_back() -> None:
    world = observed_from(kueue.plan_export(pool(export={}), VIEWS, {}, installed=True))
    views = [view("a", devices(H100, 8, 6), ready=False), *VIEWS[1:]]
    plan = kueue.plan_export(pool(export={}), views, world, installed=True)
    (patch,) = plan.intents
    assert isinstance(patch, PatchObject)
    assert patch.name == "fc-train"
    assert quotas(patch.patch["spec"])[kueue.flavor_name("train", H100)][GPU] == "8"  # type: ignore[index]
    assert plan.condition is not None and plan.condition[0] == "True"  # no status churn
    back = kueue.plan_export(pool(export={}), VIEWS, world, installed=True)
    assert back.intents == ()


def test_a_model_that_leaves_the_pool_loses_its_flavor_after_the_queue_stops_naming_it() -> None:
    world = observed_from(kueue.plan_export(pool(export={}), VIEWS, {}, installed=True))
    views = [v for v in VIEWS if v.name != "c"]
    plan = kueue.plan_export(pool(export={}), views, world, installed=True)
    names = [(type(i).__name__, i.name) for i in plan.intents]  # type: ignore[union-attr]
    npu = kueue.flavor_name("train", "910B3")
    assert names == [("PatchObject", "fc-train"), ("DeleteObject", npu)]
    delete = plan.intents[1]
    assert isinstance(delete, DeleteObject) and delete.uid == f"u-{npu}"


def test_an_empty_pool_gets_a_queue_without_resource_groups_until_it_has_some() -> None:
    # Kueue refuses a resource group without flavors: an empty pool's queue has none (and
    # admits nothing), and gains them with its first provider, and loses them with its last.
    empty = kueue.plan_export(pool(export={}), [], {}, installed=True)
    (create,) = empty.intents
    assert isinstance(create, CreateObject) and create.name == "fc-train"
    assert "resourceGroups" not in create.body["spec"]
    world = observed_from(empty)
    assert kueue.plan_export(pool(export={}), [], world, installed=True).intents == ()

    grown = kueue.plan_export(pool(export={}), VIEWS, world, installed=True)
    patches = [i for i in grown.intents if isinstance(i, PatchObject)]
    assert [p.name for p in patches] == ["fc-train"]
    assert quotas(patches[0].patch["spec"])  # type: ignore[arg-type]

    world = observed_from(kueue.plan_export(pool(export={}), VIEWS, {}, installed=True))
    emptied = kueue.plan_export(pool(export={}), [], world, installed=True)
    patch = emptied.intents[0]
    assert isinstance(patch, PatchObject) and patch.name == "fc-train"
    assert patch.patch["spec"]["resourceGroups"] is None  # type: ignore[index]
    assert all(isinstance(i, DeleteObject) for i in emptied.intents[1:])


def test_switching_export_off_deletes_what_was_exported_and_drops_the_condition() -> None:
    world = observed_from(kueue.plan_export(pool(export={}), VIEWS, {}, installed=True))
    plan = kueue.plan_export(pool(), VIEWS, world, installed=True)
    assert plan.condition is None
    assert {i.name for i in plan.intents if isinstance(i, DeleteObject)} == set(
        world[kueue.FLAVORS]
    ) | {"fc-train"}


def test_an_object_fedcompute_did_not_create_is_never_touched() -> None:
    foreign = {"metadata": {"name": "fc-train", "uid": "theirs"}, "spec": {"resourceGroups": []}}
    plan = kueue.plan_export(
        pool(export={}), VIEWS, {kueue.QUEUES: {"fc-train": foreign}}, installed=True
    )
    assert "fc-train" not in by_name(plan.intents)
    assert plan.condition is not None
    status, reason, message = plan.condition
    assert (status, reason) == ("False", Reason.NAME_TAKEN)
    assert "ClusterQueue fc-train" in message


@pytest.mark.parametrize(
    ("installed", "enabled", "reason"),
    [(False, True, Reason.KUEUE_NOT_INSTALLED), (True, False, Reason.KUEUE_EXPORT_DISABLED)],
)
def test_no_kueue_or_no_export_rights_is_a_condition_and_no_write(
    installed: bool, enabled: bool, reason: str
) -> None:
    plan = kueue.plan_export(pool(export={}), VIEWS, {}, installed=installed, enabled=enabled)
    assert plan.intents == ()
    assert plan.condition is not None and plan.condition[:2] == ("False", reason)


def test_orphans_of_deleted_pools_are_deleted_and_foreign_objects_kept() -> None:
    world = observed_from(kueue.plan_export(pool(export={}), VIEWS[:1], {}, installed=True))
    world[kueue.QUEUES]["someone-elses"] = {"metadata": {"name": "someone-elses", "uid": "x"}}
    intents = kueue.orphans(world, pools={"other"})
    assert {i.name for i in intents} == {"fc-train", kueue.flavor_name("train", H100)}
    assert all(i.owner == ("regionpools", "train") for i in intents)
    assert kueue.orphans(world, pools={"train"}) == []


@pytest.mark.parametrize(
    "model", ["NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb-hbm3", "Ascend910B3", "a_b.c"]
)
def test_flavor_names_are_dns_subdomains_and_spellings_stay_apart(model: str) -> None:
    import re

    name = kueue.flavor_name("train", model)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name)
    assert len(name) <= 253
    assert kueue.flavor_name("train", "NVIDIA-H100-80GB-HBM3") != kueue.flavor_name(
        "train", "nvidia-h100-80gb-hbm3"
    )
