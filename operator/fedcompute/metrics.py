"""Prometheus metrics: the live capacity picture, and the operator's own health.

The capacity gauges are not set one series at a time: a custom collector yields them from
the last Plan at every scrape. So every live object has a sample for every figure (zeros
included, which keeps "allocated share" panels drawn on an idle platform), and an object
that is gone has none, without any series tracked by hand.

Base units (cores, bytes, devices), one ``fedcompute_`` prefix, ``_total`` counters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fedcompute.capacity.plan import Plan
from fedcompute.capacity.providers import Collection, ProviderView

FIGURES: Final = ("capacity", "allocatable", "allocated", "available")
_RESOURCE_HELP: Final = (
    "resource: a Kubernetes resource name (cpu in cores, memory in bytes, "
    "nvidia.com/gpu in devices, ...)"
)


def _figures(view: ProviderView) -> dict[str, Mapping[str, Decimal]]:
    return {
        "capacity": view.capacity,
        "allocatable": view.allocatable,
        "allocated": view.allocated,
        "available": view.available,
    }


def _resources(figures: Mapping[str, Mapping[str, Decimal]]) -> list[str]:
    """Every resource any figure names: each figure gets a sample for each (0 if absent)."""
    names: set[str] = set()
    for values in figures.values():
        names.update(values)
    return sorted(names)


class PlanCollector(Collector):
    """Yields the capacity gauges from the last Plan (swapped in whole, read at scrape)."""

    def __init__(self) -> None:
        self._plan = Plan()
        self._collections: Mapping[str, Collection] = {}
        self._lock = threading.Lock()

    def update(self, plan: Plan, collections: Mapping[str, Collection]) -> None:
        """Publish a new Plan (called by the event loop after each pass)."""
        with self._lock:
            self._plan = plan
            self._collections = dict(collections)

    def collect(self) -> Iterator[Metric]:
        """The gauges of the last Plan."""
        with self._lock:
            plan, collections = self._plan, self._collections
        yield from self._providers(plan, collections)
        yield from self._pools(plan)

    def _providers(self, plan: Plan, collections: Mapping[str, Collection]) -> Iterator[Metric]:
        labels = ["provider", "region", "pool", "resource"]
        families = {
            f: GaugeMetricFamily(
                f"fedcompute_provider_{f}",
                f"Provider {f} resources; labels provider, region, pool (empty when "
                f"unclaimed), {_RESOURCE_HELP}.",
                labels=labels,
            )
            for f in FIGURES
        }
        ready = GaugeMetricFamily(
            "fedcompute_provider_ready",
            "1 when the provider is Ready (collected and fresh), else 0; labels provider, "
            "region, pool.",
            labels=["provider", "region", "pool"],
        )
        last = GaugeMetricFamily(
            "fedcompute_provider_last_collection_timestamp_seconds",
            "Unix time of the provider's last successful collection; label provider.",
            labels=["provider"],
        )
        devices = GaugeMetricFamily(
            "fedcompute_provider_accelerators",
            "Accelerator devices of a provider; labels provider, model, state=total|available.",
            labels=["provider", "model", "state"],
        )
        slots = GaugeMetricFamily(
            "fedcompute_provider_accelerator_slots",
            "Jobs of `size` devices of one model on one node that fit now on the provider's "
            "Ready, schedulable nodes; labels provider, pool, region, model, size (1, 2, 4, "
            "8, 16). Absent for a static provider without devicesPerNode.",
            labels=["provider", "pool", "region", "model", "size"],
        )
        for name, view in sorted(plan.providers.items()):
            pool = view.claim.pool if view.claim else ""
            figures = _figures(view)
            for resource in _resources(figures):
                for f in FIGURES:
                    value = float(figures[f].get(resource, Decimal(0)))
                    families[f].add_metric([name, view.region, pool, resource], value)
            ready.add_metric([name, view.region, pool], 1.0 if view.ready else 0.0)
            when = _last_collection(view, collections.get(name))
            if when is not None:
                last.add_metric([name], when.timestamp())
            models: dict[str, list[int]] = {}
            for d in view.accelerators:
                tally = models.setdefault(d.model, [0, 0])
                tally[0] += d.capacity
                tally[1] += d.available
            for model, (total, available) in sorted(models.items()):
                devices.add_metric([name, model, "total"], total)
                devices.add_metric([name, model, "available"], available)
            for entry in view.status_wire.get("accelerators") or ():
                for size, count in (entry.get("slots") or {}).items():
                    slots.add_metric([name, pool, view.region, entry["model"], size], count)
        yield from families.values()
        yield from (ready, last, devices, slots)

    def _pools(self, plan: Plan) -> Iterator[Metric]:
        families = {
            f: GaugeMetricFamily(
                f"fedcompute_pool_{f}",
                f"Pool {f} resources over its claimed providers; labels pool, {_RESOURCE_HELP}.",
                labels=["pool", "resource"],
            )
            for f in FIGURES
        }
        providers = GaugeMetricFamily(
            "fedcompute_pool_providers",
            "Providers claimed by the pool; labels pool, state=ready|not_ready.",
            labels=["pool", "state"],
        )
        slots = GaugeMetricFamily(
            "fedcompute_pool_accelerator_slots",
            "Jobs of `size` devices of one model on one node that fit now, summed over the "
            "pool's Ready, schedulable providers; labels pool, model, size.",
            labels=["pool", "model", "size"],
        )
        for name, view in sorted(plan.pools.items()):
            status = view.status
            for accelerator in status.accelerators or ():
                for size, count in (accelerator.slots or {}).items():
                    slots.add_metric([name, accelerator.model, size], count)
            figures: dict[str, Mapping[str, Decimal]] = {
                "capacity": status.capacity or {},
                "allocatable": status.allocatable or {},
                "allocated": status.allocated or {},
                "available": status.available or {},
            }
            for resource in _resources(figures):
                for f in FIGURES:
                    value = float(figures[f].get(resource, Decimal(0)))
                    families[f].add_metric([name, resource], value)
            providers.add_metric([name, "ready"], view.ready)
            providers.add_metric([name, "not_ready"], view.not_ready)
        yield from families.values()
        yield from (providers, slots)


def _last_collection(view: ProviderView, collection: Collection | None) -> datetime | None:
    if collection is not None and collection.succeeded_at is not None and not collection.resumed:
        return collection.succeeded_at
    return view.last_collection_time


class Metrics:
    """All collectors of one operator process, on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.plan = PlanCollector()
        r.register(self.plan)
        self.collection_duration = Histogram(
            "fedcompute_collection_duration_seconds",
            "Time to collect one provider's inventory; label source=static|kubernetes.",
            ["source"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.collection_errors = Counter(
            "fedcompute_collection_errors",
            "Failed collections; label reason (Unreachable, Unauthorized, Timeout, "
            "InvalidKubeconfig, InsecureKubeconfig, SecretNotFound, InvalidInventory, "
            "CollectionFailed).",
            ["reason"],
            registry=r,
        )
        self.write_errors = Counter(
            "fedcompute_write_errors",
            "Writes the API server refused or that failed; labels resource (computeproviders, "
            "regionpools, nodes, leases, events), code (HTTP status, 0 for no answer).",
            ["resource", "code"],
            registry=r,
        )
        self.plan_failures = Counter(
            "fedcompute_plan_failures",
            "Objects whose plan raised in a pass (each is reported on its own condition); "
            "label kind (ComputeProvider, RegionPool).",
            ["kind"],
            registry=r,
        )
        self.reconciles = Counter(
            "fedcompute_reconcile",
            "Reconcile passes over the whole platform (one per burst of changes).",
            registry=r,
        )
