"""Prometheus series: published from figures, dropped when a figure or an object goes away."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fedcompute import quantities
from fedcompute.metrics import Metrics

GPU = "nvidia.com/gpu"

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


def publish(
    m: Metrics,
    name: str = "lingang",
    *,
    region: str = "east",
    pool: str = "main",
    ready: bool = True,
    figures: dict[str, dict[str, Decimal]] | None = None,
    accelerators: dict[str, tuple[int, int]] | None = None,
    last: float | None = 1_700_000_000.0,
) -> None:
    m.set_provider(
        name,
        region=region,
        pool=pool,
        ready=ready,
        figures=figures
        if figures is not None
        else {
            "capacity": q({"cpu": "64", "memory": "1Gi", GPU: "8"}),
            "allocatable": q({"cpu": "62", "memory": "1Gi", GPU: "8"}),
            "allocated": q({"cpu": "1500m"}),
            "available": q({"cpu": "60500m", "memory": "1Gi", GPU: "8"}),
        },
        accelerators=accelerators if accelerators is not None else {"A100": (8, 5)},
        last_collection=last,
    )


# --- providers -----------------------------------------------------------------------------


def test_provider_series_in_base_units() -> None:
    m = Metrics()
    publish(m)
    s = scrape(m)
    lbl = {"provider": "lingang", "region": "east", "pool": "main"}
    assert s[key("fedcompute_provider_capacity", **lbl, resource="cpu")] == 64
    assert s[key("fedcompute_provider_capacity", **lbl, resource="memory")] == 2**30
    assert s[key("fedcompute_provider_allocated", **lbl, resource="cpu")] == 1.5
    assert s[key("fedcompute_provider_available", **lbl, resource="cpu")] == 60.5
    assert s[key("fedcompute_provider_available", **lbl, resource=GPU)] == 8
    assert s[key("fedcompute_provider_ready", **lbl)] == 1
    assert (
        s[key("fedcompute_provider_accelerators", provider="lingang", model="A100", state="total")]
        == 8
    )
    assert (
        s[
            key(
                "fedcompute_provider_accelerators",
                provider="lingang",
                model="A100",
                state="available",
            )
        ]
        == 5
    )
    assert s[key("fedcompute_provider_last_collection_timestamp_seconds", provider="lingang")] == (
        1_700_000_000.0
    )


def test_not_ready_provider_reads_zero() -> None:
    m = Metrics()
    publish(m, ready=False)
    assert (
        scrape(m)[key("fedcompute_provider_ready", provider="lingang", region="east", pool="main")]
        == 0
    )


def test_resource_gone_from_the_figures_loses_its_series() -> None:
    m = Metrics()
    publish(m)
    assert with_label(scrape(m), "resource", GPU)
    publish(
        m,
        figures={
            "capacity": q({"cpu": "64"}),
            "allocatable": q({"cpu": "64"}),
            "allocated": {},
            "available": q({"cpu": "64"}),
        },
    )
    s = scrape(m)
    assert with_label(s, "resource", GPU) == {}
    assert with_label(s, "resource", "memory") == {}
    assert [k for k in s if k[0] == "fedcompute_provider_allocated"] == []
    assert (
        s[
            key(
                "fedcompute_provider_capacity",
                provider="lingang",
                region="east",
                pool="main",
                resource="cpu",
            )
        ]
        == 64
    )


def test_a_figure_missing_from_the_map_loses_its_series() -> None:
    m = Metrics()
    publish(m)
    publish(m, figures={"capacity": q({"cpu": "64"})})
    names = {k[0] for k in with_label(scrape(m), "provider", "lingang")}
    assert "fedcompute_provider_capacity" in names
    for gone in ("allocatable", "allocated", "available"):
        assert f"fedcompute_provider_{gone}" not in names


def test_moving_to_another_pool_or_region_leaves_no_old_series() -> None:
    m = Metrics()
    publish(m, pool="old", region="east")
    publish(m, pool="new", region="west")
    s = with_label(scrape(m), "provider", "lingang")
    assert with_label(s, "pool", "old") == {}
    assert with_label(s, "region", "east") == {}
    assert with_label(s, "pool", "new")


def test_unclaimed_provider_has_an_empty_pool_label() -> None:
    m = Metrics()
    publish(m, pool="")
    assert key("fedcompute_provider_ready", provider="lingang", region="east", pool="") in scrape(m)


def test_accelerator_model_gone_loses_both_states() -> None:
    m = Metrics()
    publish(m, accelerators={"A100": (8, 5), "H100": (4, 4)})
    publish(m, accelerators={"H100": (4, 1)})
    s = scrape(m)
    assert with_label(s, "model", "A100") == {}
    assert (
        s[
            key(
                "fedcompute_provider_accelerators",
                provider="lingang",
                model="H100",
                state="available",
            )
        ]
        == 1
    )


def test_last_collection_absent_publishes_no_timestamp() -> None:
    m = Metrics()
    publish(m, last=None)
    assert not [k for k in scrape(m) if k[0].endswith("_last_collection_timestamp_seconds")]


def test_remove_provider_leaves_no_series_with_its_name() -> None:
    m = Metrics()
    publish(m, "a")
    publish(m, "b", pool="other")
    m.remove_provider("a")
    s = scrape(m)
    assert with_label(s, "provider", "a") == {}
    b = with_label(s, "provider", "b")
    assert key("fedcompute_provider_ready", provider="b", region="east", pool="other") in b
    # 3 + 3 + 1 + 3 figure series, ready, two accelerator states and the timestamp.
    assert len(b) == 14
    m.remove_provider("a")  # removing twice, or an unknown provider, is harmless
    m.remove_provider("never-seen")


def test_republishing_after_removal_starts_afresh() -> None:
    m = Metrics()
    publish(m, "a")
    m.remove_provider("a")
    publish(m, "a", figures={"capacity": q({"cpu": "1"})}, accelerators={}, last=None)
    assert set(with_label(scrape(m), "provider", "a")) == {
        key(
            "fedcompute_provider_capacity", provider="a", region="east", pool="main", resource="cpu"
        ),
        key("fedcompute_provider_ready", provider="a", region="east", pool="main"),
    }


# --- pools ---------------------------------------------------------------------------------


def pool_series(m: Metrics, name: str) -> Series:
    return {
        k: v
        for k, v in with_label(scrape(m), "pool", name).items()
        if k[0].startswith("fedcompute_pool_")
    }


def test_pool_series_and_provider_counts() -> None:
    m = Metrics()
    m.set_pool(
        "main",
        figures={"capacity": q({"cpu": "10", GPU: "4"}), "available": q({"cpu": "2500m"})},
        ready=3,
        not_ready=1,
    )
    s = pool_series(m, "main")
    assert s == {
        key("fedcompute_pool_capacity", pool="main", resource="cpu"): 10,
        key("fedcompute_pool_capacity", pool="main", resource=GPU): 4,
        key("fedcompute_pool_available", pool="main", resource="cpu"): 2.5,
        key("fedcompute_pool_providers", pool="main", state="ready"): 3,
        key("fedcompute_pool_providers", pool="main", state="not_ready"): 1,
    }


def test_pool_resource_gone_loses_its_series() -> None:
    m = Metrics()
    m.set_pool("main", figures={"capacity": q({"cpu": "10", GPU: "4"})}, ready=1, not_ready=0)
    m.set_pool("main", figures={"capacity": q({"cpu": "10"})}, ready=0, not_ready=1)
    s = pool_series(m, "main")
    assert with_label(s, "resource", GPU) == {}
    assert s[key("fedcompute_pool_providers", pool="main", state="ready")] == 0


def test_remove_pool_leaves_no_pool_series_with_its_name() -> None:
    m = Metrics()
    m.set_pool("main", figures={"capacity": q({"cpu": "1"})}, ready=1, not_ready=0)
    m.set_pool("other", figures={"capacity": q({"cpu": "2"})}, ready=1, not_ready=0)
    m.remove_pool("main")
    assert pool_series(m, "main") == {}
    assert len(pool_series(m, "other")) == 3
    m.remove_pool("main")
    m.remove_pool("never-seen")


# --- naming --------------------------------------------------------------------------------


def test_names_have_one_prefix_and_counters_end_in_total() -> None:
    m = Metrics()
    publish(m)
    m.set_pool("main", figures={"capacity": q({"cpu": "1"})}, ready=1, not_ready=0)
    m.reconciles.inc()
    m.collection_errors.labels("Timeout").inc(2)
    m.collection_duration.labels("kubernetes").observe(0.2)
    text = generate_latest(m.registry).decode()
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert family.name.startswith("fedcompute_"), family.name
        for sample in family.samples:
            assert sample.name.startswith("fedcompute_"), sample.name
    counters = {f.name: f for f in families if f.type == "counter"}
    assert set(counters) == {"fedcompute_reconcile", "fedcompute_collection_errors"}
    for family in counters.values():
        assert {s.name for s in family.samples} == {family.name + "_total"}
    lines = text.splitlines()
    assert "fedcompute_reconcile_total 1.0" in lines
    assert 'fedcompute_collection_errors_total{reason="Timeout"} 2.0' in lines
    assert "# TYPE fedcompute_reconcile_total counter" in lines
    assert any(line.startswith("fedcompute_collection_duration_seconds_count") for line in lines)


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    publish(a)
    assert with_label(scrape(b), "provider", "lingang") == {}
