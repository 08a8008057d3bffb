"""Several operator replicas: one acts, the others stand by and take over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedcompute.local import cluster
from tests.conftest import start_cluster
from tests.integration.operator_harness import (
    NAMESPACE,
    REPO,
    Platform,
    region_pool,
    static_provider,
    wait_for,
)

pytestmark = pytest.mark.integration


def _reconciles(replica: Platform) -> float:
    for family in text_string_to_metric_families(replica.metrics()):
        for sample in family.samples:
            if sample.name == "fedcompute_reconcile_total":
                return sample.value
    raise AssertionError("no fedcompute_reconcile_total")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Platform, Platform]]:
    host = start_cluster("ha")
    try:
        host.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        host.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        host.kubectl("create", "namespace", NAMESPACE)
        pair = tuple(
            Platform(
                host=host,
                log_path=tmp_path / f"{name}.log",
                extra_args=("--peering", "ha"),
                env={"POD_NAME": name},
            )
            for name in ("replica-a", "replica-b")
        )
        yield pair  # type: ignore[misc]
        for replica in pair:
            replica.stop()
    finally:
        cluster.down(host.name)


def test_one_replica_acts_and_a_standby_takes_over(replicas: tuple[Platform, Platform]) -> None:
    first, second = replicas
    first.start()
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/fedcompute-ha"
    wait_for(
        "replica-a leads",
        lambda: (first.get(lease_path) or {}).get("spec", {}).get("holderIdentity") == "replica-a",
    )
    second.start()
    first.apply(static_provider("ha-1", "ha"), region_pool("ha-pool", regions=["ha"]))
    wait_for("node of ha-1", lambda: first.node("fc-ha-1"))
    wait_for("lease of ha-1", lambda: first.lease("fc-ha-1"))
    assert _reconciles(first) >= 1
    assert _reconciles(second) == 0  # the standby observes but never plans or writes
    assert first.get(lease_path)["spec"]["holderIdentity"] == "replica-a"

    first.kill()
    wait_for(
        "replica-b takes over",
        lambda: (second.get(lease_path) or {}).get("spec", {}).get("holderIdentity") == "replica-b",
        timeout=40,
    )
    second.apply(static_provider("ha-2", "ha"))
    wait_for("node of ha-2 made by replica-b", lambda: second.node("fc-ha-2"), timeout=20)
    assert _reconciles(second) >= 1
    renewed = second.lease("fc-ha-1")["spec"]["renewTime"]
    wait_for(
        "replica-b renews node leases",
        lambda: second.lease("fc-ha-1")["spec"]["renewTime"] != renewed,
        timeout=20,
    )
