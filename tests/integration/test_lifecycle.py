"""Virtual nodes on a host that runs kube-controller-manager, as real host clusters do.

The node lifecycle controller marks a node whose Lease is late Ready=Unknown and taints
it unreachable; the garbage collector deletes what an owner leaves behind. With both
running (grace period 20 s, the operator told the same):

* a Ready provider's node is never marked Unknown nor tainted by the lifecycle
  controller, across several grace periods;
* a provider that turns Stale gets a NotReady node and the taints the lifecycle
  controller adds, and the two do not fight over the node (no flapping);
* coming back, the node is Ready and untainted again;
* deleting a RegionPool with the garbage collector running leaves no orphan and no
  failed delete.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CONTROLLER_MANAGER_GRACE_PERIOD, MemberFactory
from tests.integration.operator_harness import (
    Platform,
    condition,
    member_provider,
    region_pool,
    start_platform,
    static_provider,
    wait_for,
)

pytestmark = pytest.mark.integration

GRACE = 20.0
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    assert CONTROLLER_MANAGER_GRACE_PERIOD == "20s"
    log = tmp_path_factory.mktemp("lifecycle") / "operator.log"
    yield from start_platform("life", log, node_monitor_grace_period="20s")


@pytest.fixture(autouse=True)
def _show_operator_log_on_failure(
    request: pytest.FixtureRequest, platform: Platform
) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log:\n{platform.log_tail(120)}")
        print(f"--- kube-controller-manager:\n{platform.host.logs('kube-controller-manager', 60)}")


def _taints(node: dict[str, Any] | None) -> set[str]:
    return {t["key"] for t in ((node or {}).get("spec") or {}).get("taints") or []}


def _node_events(platform: Platform, node: str) -> list[str]:
    text = platform.host.kubectl(
        "get", "events", "-A", "--field-selector", f"involvedObject.name={node}", "-o", "json"
    ).stdout
    return [e.get("reason", "") for e in json.loads(text)["items"]]


def test_a_ready_providers_node_is_never_marked_unknown(platform: Platform) -> None:
    names = [f"steady-{i}" for i in range(3)]
    platform.apply(
        region_pool("steady-pool", regions=["steady"]),
        *(static_provider(n, "steady") for n in names),
    )
    for n in names:
        wait_for(
            f"{n} node Ready",
            lambda n=n: condition(platform.node(f"fc-{n}"), "Ready").get("status") == "True",
        )
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 3 * GRACE
    while time.monotonic() < deadline:
        for n in names:
            node = platform.node(f"fc-{n}")
            ready = condition(node, "Ready")
            seen.add((ready.get("status", ""), ready.get("reason", "")))
            assert UNREACHABLE not in _taints(node), node
            assert NOT_READY not in _taints(node), node
        time.sleep(1)
    assert seen == {("True", "ProviderReady")}, seen
    for n in names:
        assert "NodeNotReady" not in _node_events(platform, f"fc-{n}")
    platform.delete("computeprovider", *names)
    platform.delete("regionpool", "steady-pool")


def test_a_stale_provider_and_the_lifecycle_controller_agree(
    platform: Platform, member_cluster: MemberFactory
) -> None:
    member = member_cluster("lc-member", nodes=1)
    platform.kubeconfig_secret("lc-kubeconfig", member.reader_kubeconfig())
    platform.apply(
        region_pool("lc-pool", regions=["lc"]),
        member_provider(
            "lc", "lc", "lc-kubeconfig", interval="5s", timeout="2s", stale_after="12s"
        ),
    )
    wait_for(
        "lc Ready",
        lambda: condition(platform.node("fc-lc"), "Ready").get("status") == "True",
        timeout=30,
    )
    apiserver = member.state()["children"]["kube-apiserver"]
    os.kill(apiserver, signal.SIGSTOP)
    try:
        wait_for(
            "lc Stale",
            lambda: condition(platform.provider("lc"), "Ready").get("reason") == "Stale",
            timeout=40,
        )
        # The lifecycle controller takes over once the Lease is a grace period late.
        unknown = wait_for(
            "the lifecycle controller's Unknown and unreachable taints",
            lambda: (
                (n := platform.node("fc-lc"))
                and condition(n, "Ready").get("status") == "Unknown"
                and UNREACHABLE in _taints(n)
                and n
            ),
            timeout=3 * GRACE,
        )
        assert "fedcompute.io/virtual" in _taints(unknown)
        # No flapping: for two grace periods the node stays as the controller left it
        # (the operator does not put its own NotReady back, nor the controller its own).
        states: list[tuple[str, bool]] = []
        deadline = time.monotonic() + 2 * GRACE
        while time.monotonic() < deadline:
            node = platform.node("fc-lc")
            states.append(
                (condition(node, "Ready").get("status", ""), UNREACHABLE in _taints(node))
            )
            time.sleep(1)
        assert set(states) == {("Unknown", True)}, states
    finally:
        os.kill(apiserver, signal.SIGCONT)
    back = wait_for(
        "lc Ready and untainted again",
        lambda: (
            (n := platform.node("fc-lc"))
            and condition(n, "Ready").get("status") == "True"
            and not ({UNREACHABLE, NOT_READY} & _taints(n))
            and n
        ),
        timeout=3 * GRACE,
    )
    assert "fedcompute.io/virtual" in _taints(back)
    platform.delete("computeprovider", "lc")
    platform.delete("regionpool", "lc-pool")


def test_deleting_a_pool_with_the_garbage_collector_leaves_nothing(platform: Platform) -> None:
    names = [f"gc-{i}" for i in range(5)]
    platform.apply(
        region_pool("gc-pool", regions=["gc"]), *(static_provider(n, "gc") for n in names)
    )
    wait_for("gc leases", lambda: all(platform.lease(f"fc-{n}") for n in names), timeout=30)
    platform.delete("regionpool", "gc-pool", wait=True)
    wait_for("gc-pool gone", lambda: platform.pool("gc-pool") is None, timeout=60)
    wait_for(
        "no node and no lease left",
        lambda: not any(platform.node(f"fc-{n}") or platform.lease(f"fc-{n}") for n in names),
        timeout=60,
    )
    orphans = [
        n["metadata"]["name"]
        for n in platform.virtual_nodes()
        if n["metadata"]["labels"].get("fedcompute.io/pool") == "gc-pool"
    ]
    assert orphans == []
    log = platform.log_tail(400)
    assert "write for computeproviders/gc-" not in log, log
    for n in names:
        unclaimed = platform.provider(n)
        assert condition(unclaimed, "Claimed").get("status") == "False"
    platform.delete("computeprovider", *names)
