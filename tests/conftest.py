"""Shared fixtures: real local control planes started by the project's own harness.

``host`` is one cluster for the whole session; ``host_with_controller_manager`` is
another, which also runs kube-controller-manager (node lifecycle and garbage collector);
``member_cluster`` starts further clusters (with kwok nodes) for one test and stops them
afterwards. Every cluster is tied
to this test process, so an interrupted run leaves nothing behind.

A test that needs a tool or library which this machine lacks asks for it through
:func:`require_tool` or :func:`require_module`: it is skipped on a developer's machine and
fails under ``CI=true``, so that CI can never go green by skipping what it exists to run.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

from fedcompute.local import binaries, cluster

PREFIX = f"t{os.getpid()}"


def missing(reason: str) -> NoReturn:
    """Skip for want of a tool or library; under ``CI=true`` fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing tool fails the run)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_tool(name: str, find: Callable[[], Path]) -> str:
    """The path ``find`` resolves for ``name`` (building or fetching it as it does), or
    :func:`missing` with its reason."""
    try:
        return str(find())
    except (binaries.BinaryError, OSError) as exc:
        missing(f"{name} is not available: {exc}")


def require_module(name: str) -> ModuleType:
    """``name`` imported (for module level, like ``pytest.importorskip``), or :func:`missing`."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} cannot be imported: {exc}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so fixtures can react to failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def start_cluster(name: str, **kwargs: object) -> cluster.Cluster:
    """Start a uniquely named cluster owned by this test process."""
    return cluster.up(f"{PREFIX}-{name}", owner_pid=os.getpid(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def host() -> Iterator[cluster.Cluster]:
    """The host control plane shared by the session (kwok available, no nodes)."""
    c = start_cluster("host", with_kwok=True)
    yield c
    cluster.down(c.name)


# Short, to keep tests of stale Leases fast, yet twice the 10 s at which kwok renews its
# nodes' Leases. Tests read it back from the cluster's spec, and hand it to an operator
# they run there (--node-monitor-grace-period), which renews at a third of it.
CONTROLLER_MANAGER_GRACE_PERIOD = "20s"


@pytest.fixture(scope="session")
def host_with_controller_manager() -> Iterator[cluster.Cluster]:
    """A host control plane with kube-controller-manager, shared by the session: Nodes
    whose Lease is not renewed within ``spec["controllerManager"]["nodeMonitorGracePeriod"]``
    turn Ready=Unknown and get the unreachable taints, and owner references are garbage
    collected."""
    require_tool("kube-controller-manager", binaries.kube_controller_manager)
    c = start_cluster(
        "host-kcm",
        with_kwok=True,
        controller_manager=True,
        node_monitor_grace_period=CONTROLLER_MANAGER_GRACE_PERIOD,
    )
    yield c
    cluster.down(c.name)


MemberFactory = Callable[..., cluster.Cluster]


@pytest.fixture
def member_cluster() -> Iterator[MemberFactory]:
    """Factory for member clusters with simulated nodes; all stopped after the test."""
    created: list[cluster.Cluster] = []

    def make(
        name: str,
        *,
        nodes: int = 0,
        node_cpu: str = "32",
        node_memory: str = "256Gi",
        node_gpus: int = 0,
        gpu_model: str = "NVIDIA-A100-SXM4-80GB",
    ) -> cluster.Cluster:
        shape = cluster.NodeShape(
            cpu=node_cpu, memory=node_memory, gpus=node_gpus, gpu_model=gpu_model
        )
        c = start_cluster(name, nodes=nodes, shape=shape, with_kwok=True)
        created.append(c)
        return c

    yield make
    for c in created:
        cluster.down(c.name)
