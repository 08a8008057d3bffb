"""A real operator process against a real host control plane, for integration tests.

The operator runs as ``python -m fedcompute run`` in a subprocess, exactly as users run
it, against a host cluster of its own (so other tests' objects never meet it).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fedcompute.capacity.nodes import LABEL_PROVIDER, LEASE_NAMESPACE
from fedcompute.kube.host import leases_path
from fedcompute.local import cluster
from fedcompute.local.cluster import free_port

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "fedcompute-system"
GROUP_PATH = "/apis/fedcompute.io/v1alpha1"
T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float = 60.0, every: float = 0.25
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class Platform:
    """Host cluster + CRDs + a running operator process."""

    host: cluster.Cluster
    log_path: Path
    metrics_port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ("--standalone",)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    _client: Any = None

    # --- operator process ---------------------------------------------------------------

    def start(self) -> None:
        """Start the operator (idempotent)."""
        if self.process is not None and self.process.poll() is None:
            return
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedcompute",
                "run",
                "--kubeconfig",
                str(self.host.kubeconfig),
                "--namespace",
                NAMESPACE,
                "--metrics-port",
                str(self.metrics_port),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        wait_for("operator metrics endpoint", self._metrics_up, timeout=60)

    def _metrics_up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited ({self.process.returncode}):\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the operator: no cleanup of any kind runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop the operator gracefully."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            text: str = r.read().decode()
            return text

    # --- raw API access -----------------------------------------------------------------

    @property
    def api(self) -> Any:
        if self._client is None:
            from fedcompute.kube.host import Host

            self._client = Host.from_kubeconfig(str(self.host.kubeconfig))
        return self._client

    def get(self, path: str) -> dict[str, Any] | None:
        from fedcompute.kube.host import HostError

        try:
            result: dict[str, Any] = self.api.request("GET", path)
            return result
        except HostError as exc:
            if exc.status == 404:
                return None
            raise

    def provider(self, name: str) -> dict[str, Any] | None:
        return self.get(f"{GROUP_PATH}/computeproviders/{name}")

    def pool(self, name: str) -> dict[str, Any] | None:
        return self.get(f"{GROUP_PATH}/regionpools/{name}")

    def node(self, name: str) -> dict[str, Any] | None:
        return self.get(f"/api/v1/nodes/{name}")

    def lease(self, name: str) -> dict[str, Any] | None:
        return self.get(leases_path(LEASE_NAMESPACE, name))

    def virtual_nodes(self) -> list[dict[str, Any]]:
        return self.virtual()[0]

    def virtual(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The virtual Nodes and their Leases."""
        result: tuple[list[dict[str, Any]], list[dict[str, Any]]] = self.api.list_labelled(
            label=LABEL_PROVIDER, lease_namespace=LEASE_NAMESPACE
        )
        return result

    def apply(self, *objects: dict[str, Any]) -> None:
        body = "\n---\n".join(json.dumps(o) for o in objects)
        self.host.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=body)

    def delete(self, kind: str, *names: str, wait: bool = False) -> None:
        self.host.kubectl(
            "delete", kind, *names, "--ignore-not-found", f"--wait={str(wait).lower()}"
        )

    def kubeconfig_secret(self, name: str, text: str, key: str = "kubeconfig") -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "data": {key: base64.b64encode(text.encode()).decode()},
            }
        )


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """A condition of an object's status ({} when absent)."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def static_provider(
    name: str,
    region: str,
    *,
    labels: dict[str, str] | None = None,
    cpu: str = "64",
    memory: str = "256Gi",
    gpus: int = 8,
    model: str = "NVIDIA-A100-SXM4-80GB",
) -> dict[str, Any]:
    resources: dict[str, str] = {"cpu": cpu, "memory": memory}
    accelerators: list[dict[str, Any]] = []
    if gpus:
        resources["nvidia.com/gpu"] = str(gpus)
        accelerators.append(
            {"model": model, "count": gpus, "tflopsPerDevice": {"fp64": "9.7", "bf16": "312"}}
        )
    static: dict[str, Any] = {"resources": resources, "nodeCount": 1}
    if accelerators:
        static["accelerators"] = accelerators
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"region": region, "source": {"static": static}},
    }


def member_provider(
    name: str,
    region: str,
    secret: str,
    *,
    interval: str = "5s",
    timeout: str = "3s",
    stale_after: str = "12s",
    labels: dict[str, str] | None = None,
    reserved: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "region": region,
        "source": {"kubernetes": {"kubeconfigSecretRef": {"name": secret}}},
        "monitoring": {"interval": interval, "timeout": timeout, "staleAfter": stale_after},
    }
    if reserved:
        spec["reserved"] = reserved
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def region_pool(
    name: str,
    *,
    regions: list[str] | None = None,
    selector: dict[str, Any] | None = None,
    priority: int = 0,
    paused: bool = False,
    min_ready: int = 1,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"priority": priority, "paused": paused, "minReadyProviders": min_ready}
    if regions is not None:
        spec["regions"] = regions
    if selector is not None:
        spec["providerSelector"] = selector
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "RegionPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def start_platform(
    name: str,
    log_path: Path,
    *,
    node_monitor_grace_period: str | None = None,
    extra_args: Sequence[str] = (),
    prepare: Callable[[cluster.Cluster], None] | None = None,
) -> Iterator[Platform]:
    """A dedicated host cluster with CRDs and the operator namespace, then the operator.

    With ``node_monitor_grace_period`` the host runs kube-controller-manager (the node
    lifecycle controller and the garbage collector) with that grace period, and the
    operator is told the same. ``extra_args`` go to ``fedcompute run``; ``prepare`` runs
    on the host before the operator starts (third-party CRDs, namespaces).
    """
    from tests.conftest import start_cluster

    args: tuple[str, ...] = ("--standalone",)
    if node_monitor_grace_period is None:
        host = start_cluster(name)
    else:
        host = start_cluster(
            name, controller_manager=True, node_monitor_grace_period=node_monitor_grace_period
        )
        args += (f"--node-monitor-grace-period={node_monitor_grace_period}",)
    try:
        host.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        host.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        host.kubectl("create", "namespace", NAMESPACE)
        if prepare is not None:
            prepare(host)
        platform = Platform(host=host, log_path=log_path, extra_args=(*args, *extra_args))
        platform.start()
        yield platform
        platform.stop()
    finally:
        cluster.down(host.name)
