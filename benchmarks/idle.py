"""Idle cost: the writes an idle platform makes, per minute per provider, by resource.

On a fresh local control plane with kube-controller-manager (the node lifecycle
controller and the garbage collector, as real host clusters run them): 1,000 static
providers in 10 regions and 50 pools; the operator is started and left to converge and
settle; then, over an idle window (5 minutes by default), the API server's own
``apiserver_request_total`` says what was written. The only write an idle platform needs
is a Lease renewal per Ready virtual node; every other write is a defect and is listed.
It also reports whether the node lifecycle controller ever marked a virtual node NotReady.

Usage::

    .venv/bin/python benchmarks/idle.py [--providers 1000] [--pools 50] [--minutes 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from convergence import REPO, converged, create_objects, expected_pools, lifecycle_marks
from fedcompute.capacity import nodes
from fedcompute.kube.host import Host
from fedcompute.local import cluster

WRITES = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def writes_by_resource(c: cluster.Cluster) -> dict[str, float]:
    """Write requests so far, by ``resource[/subresource] verb``."""
    text = c.kubectl("get", "--raw", "/metrics").stdout
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "apiserver_request_total" and s.labels.get("verb") in WRITES:
                resource = s.labels["resource"]
                if s.labels.get("subresource"):
                    resource += "/" + s.labels["subresource"]
                key = f"{resource} {s.labels['verb']}"
                counts[key] = counts.get(key, 0.0) + s.value
    return counts


# Writes the control plane makes of itself, whoever else is there: kube-apiserver renews
# its identity Lease (PUT) and reconciles the `kubernetes` Service's endpoints.
CONTROL_PLANE = frozenset({"leases PUT", "endpoints POST", "endpoints PUT", "endpointslices PUT"})


def wait_until_quiet(c: cluster.Cluster, *, window: float = 15.0, limit: float = 1200.0) -> float:
    """Wait until nothing but Lease renewals and the control plane's own writes happens for
    ``window`` seconds; return how long that took.

    kube-controller-manager registers every new node once (a ``RegisteredNode`` Event, a
    label and a taint patch) at its client's rate limit (20 requests/s by default): at 1,000
    nodes that takes minutes after the operator has converged, and those writes are not
    the operator's. Measured: its log shows no write after convergence while the node
    patches and Events come from ``kube-controller-manager`` (managedFields, Event source).
    """
    started = time.monotonic()
    previous = writes_by_resource(c)
    while time.monotonic() - started < limit:
        time.sleep(window)
        current = writes_by_resource(c)
        delta = delta_of(previous, current)
        if not {k for k in delta if k not in CONTROL_PLANE and k != "leases PATCH"}:
            break
        previous = current
    return time.monotonic() - started


def delta_of(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The writes made between two readings."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return {k: v for k, v in delta.items() if v}


@dataclass
class IdleResult:
    """What an idle window cost."""

    providers: int
    virtual: int
    minutes: float
    writes: dict[str, float]
    """The operator's writes by ``resource verb`` (the control plane's own left out)."""
    own: dict[str, float]
    marked: list[str]
    quiet_after: float
    """Seconds waited after the settle for kube-controller-manager to finish its own
    writes (see :func:`wait_until_quiet`)."""

    @property
    def per_minute(self) -> float:
        """Writes per minute per virtual node."""
        return sum(self.writes.values()) / (self.minutes * max(self.virtual, 1))

    @property
    def defects(self) -> dict[str, float]:
        return {k: v for k, v in self.writes.items() if k != "leases PATCH"}


def idle_run(providers: int, pools: int, minutes: float, settle: float) -> IdleResult | None:
    """A fresh platform of this size, converged, settled, then left idle and measured."""
    c = cluster.up(
        f"idle-{os.getpid()}-{providers}",
        owner_pid=os.getpid(),
        with_kwok=False,
        controller_manager=True,
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        c.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        c.kubectl("create", "namespace", "fedcompute-system")
        host = Host.from_kubeconfig(str(c.kubeconfig))
        create_objects(host, providers, pools)
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"idle-operator-{os.getpid()}.log"
        command = [sys.executable, "-m", "fedcompute", "run", "--kubeconfig", str(c.kubeconfig)]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*command, "--standalone"], stdout=log, stderr=subprocess.STDOUT
            )
        started = time.monotonic()
        while not converged(host, providers, pools):
            if proc.poll() is not None or time.monotonic() - started > 900:
                print(f"the operator did not converge; log in {log_path}")
                return None
            time.sleep(1)
        time.sleep(settle)
        quiet_after = wait_until_quiet(c)
        before = writes_by_resource(c)
        time.sleep(minutes * 60)
        delta = delta_of(before, writes_by_resource(c))
        return IdleResult(
            providers,
            sum(expected_pools(providers, pools).values()),
            minutes,
            {k: v for k, v in delta.items() if k not in CONTROL_PLANE},
            {k: v for k, v in delta.items() if k in CONTROL_PLANE},
            lifecycle_marks(c),
            quiet_after,
        )
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.down(c.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds before measuring")
    args = parser.parse_args()
    result = idle_run(args.providers, args.pools, args.minutes, args.settle)
    if result is None:
        return 1
    period = nodes.lease_period(nodes.NODE_MONITOR_GRACE_SECONDS)
    print(
        f"providers={result.providers} ({result.virtual} claimed, one virtual node each) "
        f"pools={args.pools} idle={args.minutes:g} min"
    )
    print(f"lease period {period:g} s (grace {nodes.NODE_MONITOR_GRACE_SECONDS} s)")
    per = args.minutes * result.virtual
    for key, value in sorted(result.writes.items()):
        print(f"  {key:40s} {value:8.0f}  {value / per:6.2f} per minute per provider")
    print(f"expected lease renewals: {60 / period:.2f} per minute per provider")
    print(f"the control plane's own writes (not the operator's): {result.own or 'none'}")
    print("writes other than Lease renewals:", result.defects or "none")
    print(f"virtual nodes the node lifecycle controller marked NotReady: {len(result.marked)}")
    print(f"(measured after waiting {result.quiet_after:.0f} s for kube-controller-manager's")
    print(" own writes, registering the new nodes, to end)")
    return 0 if not result.defects and not result.marked else 1


if __name__ == "__main__":
    sys.exit(main())
