"""Prometheus metrics: the live capacity picture, and the operator's own health.

Base units (cores, bytes, devices), one ``fedcompute_`` prefix, ``_total`` counters.
Series are keyed by object name and removed when their object goes away, so the
cardinality is bounded by providers x resources and pools x resources.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FIGURES: Final = ("capacity", "allocatable", "allocated", "available")


class Metrics:
    """All collectors of one operator process, on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        res_help = (
            "resource: a Kubernetes resource name (cpu in cores, memory in bytes, "
            "nvidia.com/gpu in devices, ...)"
        )
        self.provider = {
            f: Gauge(
                f"fedcompute_provider_{f}",
                f"Provider {f} resources; labels provider, region, pool (empty when "
                f"unclaimed), {res_help}.",
                ["provider", "region", "pool", "resource"],
                registry=r,
            )
            for f in _FIGURES
        }
        self.provider_ready = Gauge(
            "fedcompute_provider_ready",
            "1 when the provider is Ready (collected and fresh), else 0; labels provider, "
            "region, pool.",
            ["provider", "region", "pool"],
            registry=r,
        )
        self.provider_last_collection = Gauge(
            "fedcompute_provider_last_collection_timestamp_seconds",
            "Unix time of the provider's last successful collection; label provider.",
            ["provider"],
            registry=r,
        )
        self.provider_accelerators = Gauge(
            "fedcompute_provider_accelerators",
            "Accelerator devices of a provider; labels provider, model, state=total|available.",
            ["provider", "model", "state"],
            registry=r,
        )
        self.pool = {
            f: Gauge(
                f"fedcompute_pool_{f}",
                f"Pool {f} resources over its claimed providers; labels pool, {res_help}.",
                ["pool", "resource"],
                registry=r,
            )
            for f in _FIGURES
        }
        self.pool_providers = Gauge(
            "fedcompute_pool_providers",
            "Providers claimed by the pool; labels pool, state=ready|not_ready.",
            ["pool", "state"],
            registry=r,
        )
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
            "InvalidKubeconfig, InsecureKubeconfig, SecretNotFound, CollectionFailed).",
            ["reason"],
            registry=r,
        )
        self.reconciles = Counter(
            "fedcompute_reconcile",
            "Reconcile passes over the whole platform (one per burst of changes).",
            registry=r,
        )
        self._provider_series: dict[str, set[tuple[str, ...]]] = {}
        self._pool_series: dict[str, set[tuple[str, ...]]] = {}

    # --- providers ----------------------------------------------------------------------

    def set_provider(
        self,
        name: str,
        *,
        region: str,
        pool: str,
        ready: bool,
        figures: Mapping[str, Mapping[str, Decimal]],
        accelerators: Mapping[str, tuple[int, int]],
        last_collection: float | None,
    ) -> None:
        """Publish one provider's figures, dropping series it no longer has."""
        series: set[tuple[str, ...]] = set()
        for figure, values in figures.items():
            for resource, value in values.items():
                self.provider[figure].labels(name, region, pool, resource).set(float(value))
                series.add(("figure", figure, region, pool, resource))
        self.provider_ready.labels(name, region, pool).set(1 if ready else 0)
        series.add(("ready", region, pool))
        for model, (total, available) in accelerators.items():
            self.provider_accelerators.labels(name, model, "total").set(total)
            self.provider_accelerators.labels(name, model, "available").set(available)
            series.add(("acc", model))
        if last_collection is not None:
            self.provider_last_collection.labels(name).set(last_collection)
            series.add(("last",))
        self._drop_provider(name, self._provider_series.get(name, set()) - series)
        self._provider_series[name] = series

    def remove_provider(self, name: str) -> None:
        """Remove every series of a deleted provider."""
        self._drop_provider(name, self._provider_series.pop(name, set()))

    def _drop_provider(self, name: str, stale: set[tuple[str, ...]]) -> None:
        for key in stale:
            try:
                if key[0] == "figure":
                    self.provider[key[1]].remove(name, key[2], key[3], key[4])
                elif key[0] == "ready":
                    self.provider_ready.remove(name, key[1], key[2])
                elif key[0] == "acc":
                    self.provider_accelerators.remove(name, key[1], "total")
                    self.provider_accelerators.remove(name, key[1], "available")
                elif key[0] == "last":
                    self.provider_last_collection.remove(name)
            except KeyError:
                pass

    # --- pools --------------------------------------------------------------------------

    def set_pool(
        self,
        name: str,
        *,
        figures: Mapping[str, Mapping[str, Decimal]],
        ready: int,
        not_ready: int,
    ) -> None:
        """Publish one pool's figures, dropping series it no longer has."""
        series: set[tuple[str, ...]] = set()
        for figure, values in figures.items():
            for resource, value in values.items():
                self.pool[figure].labels(name, resource).set(float(value))
                series.add((figure, resource))
        self.pool_providers.labels(name, "ready").set(ready)
        self.pool_providers.labels(name, "not_ready").set(not_ready)
        for figure, resource in self._pool_series.get(name, set()) - series:
            with contextlib.suppress(KeyError):
                self.pool[figure].remove(name, resource)
        self._pool_series[name] = series

    def remove_pool(self, name: str) -> None:
        """Remove every series of a deleted pool."""
        for figure, resource in self._pool_series.pop(name, set()):
            with contextlib.suppress(KeyError):
                self.pool[figure].remove(name, resource)
        for state in ("ready", "not_ready"):
            with contextlib.suppress(KeyError):
                self.pool_providers.remove(name, state)
