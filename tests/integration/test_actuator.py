"""The actuator against a real API server: order per owner, and one answer policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fedcompute.capacity import nodes
from fedcompute.intents import (
    CreateLease,
    CreateNode,
    DeleteNode,
    Intent,
    PatchNode,
    PatchStatus,
    SetFinalizers,
)
from fedcompute.kube.actuator import Actuator, Outcome
from fedcompute.kube.host import Host
from fedcompute.local import cluster
from tests.integration.operator_harness import REPO

pytestmark = pytest.mark.integration
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def api(host: cluster.Cluster) -> Iterator[Host]:
    host.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    host.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    adapter = Host.from_kubeconfig(str(host.kubeconfig))
    yield adapter
    adapter.close()


def run(api: Host, *chain: Intent) -> list[Outcome]:
    async def main() -> list[Outcome]:
        actuator = Actuator(api, concurrency=4, clock=lambda: NOW)
        try:
            return await actuator.execute({chain[0].owner: list(chain)})
        finally:
            actuator.close()

    return asyncio.run(main())


def node(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {nodes.LABEL_PROVIDER: name, **(labels or {})}},
        "status": {"capacity": {"cpu": "1"}},
    }


def lease(name: str) -> dict[str, Any]:
    return nodes.lease_body(name, name, "", NOW)


def test_a_node_and_its_lease_are_created_and_owned(api: Host) -> None:
    owner = ("computeproviders", "act-a")
    (created,) = run(api, CreateNode(owner, "act-a", node("act-a"), lease("act-a")))
    assert created.result == "ok"
    got = dict((c, b) for c, _, b in created.observed)
    assert got["leases"]["metadata"]["ownerReferences"][0]["uid"] == got["nodes"]["metadata"]["uid"]
    again = run(api, CreateNode(owner, "act-a", node("act-a"), lease("act-a")))
    assert again[0].result == "ok"  # 409: read back, Lease renewed
    assert (
        dict((c, b) for c, _, b in again[0].observed)["nodes"]["metadata"]["uid"]
        == (got["nodes"]["metadata"]["uid"])
    )
    (deleted,) = run(api, DeleteNode(owner, "act-a", nodes.LEASE_NAMESPACE))
    assert deleted.result == "ok" and [b for _, _, b in deleted.observed] == [None, None]
    (gone,) = run(api, DeleteNode(owner, "act-a", nodes.LEASE_NAMESPACE))
    assert gone.result == "ok"  # 404 on delete is done


def test_a_refused_write_stops_its_chain_with_the_api_message(api: Host) -> None:
    owner = ("computeproviders", "act-b")
    bad = node("act-b", labels={"example.com/x": "not a label value!"})
    outcomes = run(
        api,
        CreateNode(owner, "act-b", bad),
        CreateLease(owner, "act-b", lease("act-b")),
    )
    assert [o.result for o in outcomes] == ["rejected", "skipped"]
    assert outcomes[0].code == 422
    assert 'metadata.labels: Invalid value: "not a label value!"' in outcomes[0].message
    assert (
        api.request(
            "GET", "/api/v1/nodes", query=[("labelSelector", f"{nodes.LABEL_PROVIDER}=act-b")]
        )["items"]
        == []
    )


def test_gone_objects_are_done_and_a_stale_guard_is_a_conflict(
    api: Host, host: cluster.Cluster
) -> None:
    owner = ("computeproviders", "act-c")
    (patched,) = run(
        api, PatchNode(owner, "act-missing", {"metadata": {"labels": {"a": "b"}}}, None)
    )
    assert patched.result == "ok" and patched.observed == (("nodes", "act-missing", None),)
    (status,) = run(api, PatchStatus(owner, {"conditions": []}))
    assert status.result == "ok" and status.observed[0][2] is None
    provider = {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": "act-c"},
        "spec": {"region": "r", "source": {"static": {"resources": {"cpu": "1"}}}},
    }
    host.kubectl("apply", "-f", "-", input=json.dumps(provider))
    (conflict,) = run(api, SetFinalizers(owner, ("fedcompute.io/finalizer",), "1"))
    assert conflict.result == "conflict"
    current = api.request("GET", "/apis/fedcompute.io/v1alpha1/computeproviders/act-c")
    rv = current["metadata"]["resourceVersion"]
    (done,) = run(api, SetFinalizers(owner, (), rv))
    assert done.result == "ok"
    host.kubectl("delete", "computeprovider", "act-c", "--wait=false")
