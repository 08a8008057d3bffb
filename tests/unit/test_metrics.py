"""Prometheus series: yielded from the last Plan, every figure for every live object."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fedcompute import quantities
from fedcompute.api.pool import RegionPoolStatus
from fedcompute.capacity.claims import Claim
from fedcompute.capacity.inventory import AcceleratorInventory
from fedcompute.capacity.plan import Plan, PoolView
from fedcompute.capacity.providers import Collection, ProviderView
from fedcompute.metrics import Metrics

GPU = "nvidia.com/gpu"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(m: Metrics) -> Series:
    """Every sample of the exposition, keyed by name and labels."""
    text = generate_latest(m.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


def with_label(series: Series, label: str, value: str) -> Series:
    return {k: v for k, v in series.items() if (label, value) in k[1]}


def q(values: Mapping[str, str]) -> dict[str, Decimal]:
    return quantities.parse_map(values)


def view(
    name: str = "lingang",
    *,
    region: str = "east",
    pool: str | None = "main",
    ready: bool = True,
    figures: dict[str, dict[str, Decimal]] | None = None,
    accelerators: dict[str, tuple[int, int]] | None = None,
) -> ProviderView:
    f = (
        figures
        if figures is not None
        else {
            "capacity": q({"cpu": "64", "memory": "1Gi", GPU: "8"}),
            "allocatable": q({"cpu": "62", "memory": "1Gi", GPU: "8"}),
            "allocated": q({"cpu": "1500m"}),
            "available": q({"cpu": "60500m", "memory": "1Gi", GPU: "8"}),
        }
    )
    devices = tuple(
        AcceleratorInventory(model, GPU, 1, total, total, total - free, free)
        for model, (total, free) in (
            accelerators if accelerators is not None else {"A100": (8, 5)}
        ).items()
    )
    return ProviderView(
        name=name,
        region=region,
        ready=ready,
        offered=ready,
        claim=Claim(pool, 0) if pool else None,
        status_wire={},
        capacity=f.get("capacity", {}),
        allocatable=f.get("allocatable", {}),
        allocated=f.get("allocated", {}),
        available=f.get("available", {}),
        accelerators=devices,
    )


def pool(
    name: str = "main", ready: int = 1, not_ready: int = 0, **figures: Mapping[str, str]
) -> PoolView:
    status = RegionPoolStatus.model_validate(figures)
    return PoolView(name, status, ready, not_ready)


def publish(
    m: Metrics,
    *views: ProviderView,
    pools: tuple[PoolView, ...] = (),
    collections: Mapping[str, Collection] | None = None,
) -> None:
    m.plan.update(
        Plan(providers={v.name: v for v in views}, pools={p.name: p for p in pools}),
        collections or {},
    )


COLLECTED = {"lingang": Collection(succeeded_at=datetime.fromtimestamp(1_700_000_000, UTC))}

# --- providers -----------------------------------------------------------------------------


def test_provider_series_in_base_units() -> None:
    m = Metrics()
    publish(m, view(), collections=COLLECTED)
    s = scrape(m)
    lbl = {"provider": "lingang", "region": "east", "pool": "main"}
    assert s[key("fedcompute_provider_capacity", **lbl, resource="cpu")] == 64
    assert s[key("fedcompute_provider_capacity", **lbl, resource="memory")] == 2**30
    assert s[key("fedcompute_provider_allocated", **lbl, resource="cpu")] == 1.5
    assert s[key("fedcompute_provider_available", **lbl, resource="cpu")] == 60.5
    assert s[key("fedcompute_provider_available", **lbl, resource=GPU)] == 8
    assert s[key("fedcompute_provider_ready", **lbl)] == 1
    acc = "fedcompute_provider_accelerators"
    assert s[key(acc, provider="lingang", model="A100", state="total")] == 8
    assert s[key(acc, provider="lingang", model="A100", state="available")] == 5
    assert s[key("fedcompute_provider_last_collection_timestamp_seconds", provider="lingang")] == (
        1_700_000_000.0
    )


def test_every_figure_has_a_sample_for_every_resource_zeros_included() -> None:
    """An idle provider still has allocated=0 for each resource, so share panels draw."""
    m = Metrics()
    publish(m, view())
    s = scrape(m)
    lbl = {"provider": "lingang", "region": "east", "pool": "main"}
    for resource in ("cpu", "memory", GPU):
        for figure in ("capacity", "allocatable", "allocated", "available"):
            assert key(f"fedcompute_provider_{figure}", **lbl, resource=resource) in s
    assert s[key("fedcompute_provider_allocated", **lbl, resource=GPU)] == 0
    assert s[key("fedcompute_provider_allocated", **lbl, resource="memory")] == 0


def test_not_ready_provider_reads_zero() -> None:
    m = Metrics()
    publish(m, view(ready=False))
    ready = key("fedcompute_provider_ready", provider="lingang", region="east", pool="main")
    assert scrape(m)[ready] == 0


def test_resource_gone_from_the_figures_loses_its_series() -> None:
    m = Metrics()
    publish(m, view())
    assert with_label(scrape(m), "resource", GPU)
    cpu_only = {
        "capacity": q({"cpu": "64"}),
        "allocatable": q({"cpu": "64"}),
        "allocated": {},
        "available": q({"cpu": "64"}),
    }
    publish(m, view(figures=cpu_only))
    s = scrape(m)
    assert with_label(s, "resource", GPU) == {}
    assert with_label(s, "resource", "memory") == {}
    lbl = {"provider": "lingang", "region": "east", "pool": "main", "resource": "cpu"}
    assert s[key("fedcompute_provider_capacity", **lbl)] == 64
    assert s[key("fedcompute_provider_allocated", **lbl)] == 0


def test_moving_to_another_pool_or_region_leaves_no_old_series() -> None:
    m = Metrics()
    publish(m, view(pool="old", region="east"))
    publish(m, view(pool="new", region="west"))
    s = with_label(scrape(m), "provider", "lingang")
    assert with_label(s, "pool", "old") == {}
    assert with_label(s, "region", "east") == {}
    assert with_label(s, "pool", "new")


def test_unclaimed_provider_has_an_empty_pool_label() -> None:
    m = Metrics()
    publish(m, view(pool=None))
    assert key("fedcompute_provider_ready", provider="lingang", region="east", pool="") in scrape(m)


def test_accelerator_model_gone_loses_both_states() -> None:
    m = Metrics()
    publish(m, view(accelerators={"A100": (8, 5), "H100": (4, 4)}))
    publish(m, view(accelerators={"H100": (4, 1)}))
    s = scrape(m)
    assert with_label(s, "model", "A100") == {}
    acc = key(
        "fedcompute_provider_accelerators", provider="lingang", model="H100", state="available"
    )
    assert s[acc] == 1


def test_no_collection_and_no_status_time_publishes_no_timestamp() -> None:
    m = Metrics()
    publish(m, view())
    assert not [k for k in scrape(m) if k[0].endswith("_last_collection_timestamp_seconds")]


def test_a_resumed_collection_reports_the_time_in_status_not_the_restart() -> None:
    m = Metrics()
    v = view()
    v = ProviderView(
        **{**v.__dict__, "status_wire": {"lastCollectionTime": "2026-01-01T00:00:00Z"}}
    )
    resumed = {
        "lingang": Collection(
            succeeded_at=datetime(2027, 1, 1, tzinfo=UTC), carried_ready=("True", "Fresh", "")
        )
    }
    publish(m, v, collections=resumed)
    stamp = key("fedcompute_provider_last_collection_timestamp_seconds", provider="lingang")
    assert scrape(m)[stamp] == T0.timestamp()


def test_a_deleted_provider_leaves_no_series_with_its_name() -> None:
    m = Metrics()
    publish(m, view("a"), view("b", pool="other"))
    publish(m, view("b", pool="other"))
    s = scrape(m)
    assert with_label(s, "provider", "a") == {}
    b = with_label(s, "provider", "b")
    assert key("fedcompute_provider_ready", provider="b", region="east", pool="other") in b
    # 3 resources x 4 figures, ready, two accelerator states.
    assert len(b) == 15


# --- pools ---------------------------------------------------------------------------------


def pool_series(m: Metrics, name: str) -> Series:
    return {
        k: v
        for k, v in with_label(scrape(m), "pool", name).items()
        if k[0].startswith("fedcompute_pool_")
    }


def test_pool_series_and_provider_counts_with_zeros() -> None:
    m = Metrics()
    figures = {"capacity": {"cpu": "10", GPU: "4"}, "available": {"cpu": "2500m"}}
    publish(m, pools=(pool("main", 3, 1, **figures),))
    s = pool_series(m, "main")
    assert s[key("fedcompute_pool_capacity", pool="main", resource="cpu")] == 10
    assert s[key("fedcompute_pool_capacity", pool="main", resource=GPU)] == 4
    assert s[key("fedcompute_pool_available", pool="main", resource="cpu")] == 2.5
    assert s[key("fedcompute_pool_available", pool="main", resource=GPU)] == 0
    assert s[key("fedcompute_pool_allocated", pool="main", resource="cpu")] == 0
    assert s[key("fedcompute_pool_providers", pool="main", state="ready")] == 3
    assert s[key("fedcompute_pool_providers", pool="main", state="not_ready")] == 1
    assert len(s) == 2 * 4 + 2


def test_an_empty_pool_still_reports_its_provider_counts() -> None:
    m = Metrics()
    publish(m, pools=(pool("empty", 0, 0),))
    s = pool_series(m, "empty")
    assert s == {
        key("fedcompute_pool_providers", pool="empty", state="ready"): 0,
        key("fedcompute_pool_providers", pool="empty", state="not_ready"): 0,
    }


def test_a_deleted_pool_leaves_no_series() -> None:
    m = Metrics()
    publish(m, pools=(pool("main"), pool("other")))
    publish(m, pools=(pool("other"),))
    assert pool_series(m, "main") == {}
    assert len(pool_series(m, "other")) == 2


# --- naming --------------------------------------------------------------------------------


def test_names_have_one_prefix_and_counters_end_in_total() -> None:
    m = Metrics()
    publish(m, view(), pools=(pool("main", capacity={"cpu": "1"}),))
    m.reconciles.inc()
    m.collection_errors.labels("Timeout").inc(2)
    m.write_errors.labels("nodes", "422").inc()
    m.plan_failures.labels("RegionPool").inc()
    m.collection_duration.labels("kubernetes").observe(0.2)
    text = generate_latest(m.registry).decode()
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert family.name.startswith("fedcompute_"), family.name
        for sample in family.samples:
            assert sample.name.startswith("fedcompute_"), sample.name
    counters = {f.name: f for f in families if f.type == "counter"}
    assert set(counters) == {
        "fedcompute_reconcile",
        "fedcompute_collection_errors",
        "fedcompute_write_errors",
        "fedcompute_plan_failures",
    }
    for family in counters.values():
        assert {s.name for s in family.samples} == {family.name + "_total"}
    lines = text.splitlines()
    assert "fedcompute_reconcile_total 1.0" in lines
    assert 'fedcompute_collection_errors_total{reason="Timeout"} 2.0' in lines
    assert 'fedcompute_write_errors_total{code="422",resource="nodes"} 1.0' in lines
    assert "# TYPE fedcompute_reconcile_total counter" in lines
    assert any(line.startswith("fedcompute_collection_duration_seconds_count") for line in lines)


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    publish(a, view())
    assert with_label(scrape(b), "provider", "lingang") == {}
