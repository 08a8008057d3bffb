"""Convergence benchmark: 1,000 static providers in 10 regions and 50 pools, from empty.

Pairs of runs on one fresh local control plane, in the same process (three by default,
reported with the median ratio):

* baseline: a bare client (the same HTTP transport, the same 16-way concurrency) makes
  exactly the writes a converged platform needs, with the very bodies the operator
  writes (computed ahead by the same pure planning code): finalizers on every object,
  every provider's status, every virtual node, every lease, every pool's status, and,
  like the operator, renews the Leases it has created on the operator's own schedule
  while it works;
* operator: the same objects, then ``fedcompute run`` started as users run it; timed
  until every pool's status is correct and every node and lease exists.

Prints wall time, API requests (from the apiserver's own ``apiserver_request_total``),
the operator's peak RSS, its passes (plan time and writes, from its log), and the ratio to
the baseline. Convergence is judged by the operator's own claim rule (priority, then name),
so any number of pools can be judged. Usage::

    .venv/bin/python benchmarks/convergence.py [--providers 1000] [--pools 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fedcompute import quantities
from fedcompute.api.pool import RegionPool
from fedcompute.api.provider import ComputeProvider
from fedcompute.capacity import claims, rollup
from fedcompute.capacity import nodes as vnodes
from fedcompute.capacity.plan import RenewalSchedule
from fedcompute.capacity.providers import plan_provider
from fedcompute.kube.host import Host, HostError
from fedcompute.local import cluster

REPO = Path(__file__).resolve().parents[1]
GROUP = "/apis/fedcompute.io/v1alpha1"
CONCURRENCY = 16
REGIONS = 10


def provider(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": f"p-{i:04d}", "labels": {"shard": f"s{i % 5}"}},
        "spec": {
            "region": f"region-{i % REGIONS}",
            "source": {
                "static": {
                    "resources": {"cpu": "128", "memory": "1Ti", "nvidia.com/gpu": "8"},
                    "accelerators": [
                        {
                            "model": "NVIDIA-A100-SXM4-80GB",
                            "count": 8,
                            "tflopsPerDevice": {"fp64": "9.7", "bf16": "312"},
                        }
                    ],
                }
            },
        },
    }


def pool(j: int) -> dict[str, Any]:
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "RegionPool",
        "metadata": {"name": f"pool-{j:02d}" if j < 100 else f"pool-{j}"},
        "spec": {
            "regions": [f"region-{j % REGIONS}"],
            "providerSelector": {"matchLabels": {"shard": f"s{j // REGIONS % 5}"}},
        },
    }


def apiserver_requests(c: cluster.Cluster) -> float:
    text = c.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "apiserver_request_total":
                total += s.value
    return total


def run_parallel(jobs: list[Any]) -> None:
    with ThreadPoolExecutor(CONCURRENCY) as pool_:
        for future in [pool_.submit(j) for j in jobs]:
            future.result()


def create_objects(host: Host, n_providers: int, n_pools: int) -> None:
    bodies = [("computeproviders", provider(i)) for i in range(n_providers)]
    bodies += [("regionpools", pool(j)) for j in range(n_pools)]
    run_parallel(
        [(lambda p=p, b=b: host.request("POST", f"{GROUP}/{p}", body=b)) for p, b in bodies]
    )


@functools.cache
def expected_pools(n_providers: int, n_pools: int) -> dict[str, int]:
    """Providers per pool by the operator's own rule (priority, then name), from the bodies."""
    providers = [ComputeProvider.model_validate(provider(i)) for i in range(n_providers)]
    pools = [RegionPool.model_validate(pool(j)) for j in range(n_pools)]
    members = claims.by_pool(claims.claim_all(providers, pools))
    return {p.name: len(members.get(p.name, [])) for p in pools}


def planned_writes(
    host: Host,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The bodies a converged operator writes, computed ahead by the same pure planning code.

    Returns provider statuses, virtual Nodes (by provider) and pool statuses, so the
    baseline sends byte-for-byte what the operator sends and the comparison measures the
    operator's overhead, not a difference in payload.
    """
    now = _now()
    providers = [
        ComputeProvider.model_validate(b) for b in host.list_all(f"{GROUP}/computeproviders")
    ]
    pools = {
        p["metadata"]["name"]: RegionPool.model_validate(p)
        for p in host.list_all(f"{GROUP}/regionpools")
    }
    claim_map = claims.claim_all(providers, pools.values())
    views = {
        p.name: plan_provider(p, collection=None, claim=claim_map[p.name], now=now)
        for p in providers
    }
    statuses = {name: v.status.to_wire() for name, v in views.items()}
    node_bodies = {
        p.name: vnodes.node_body(vnodes.desired_node(p, pools[c.pool], views[p.name]), now)
        for p in providers
        if (c := claim_map[p.name]) is not None
    }
    members = claims.by_pool(claim_map)
    pool_statuses = {
        name: rollup.plan_pool(
            pool,
            [views[m] for m in members.get(name, [])],
            nodes=len(members.get(name, [])),
            now=now,
        ).to_wire()
        for name, pool in pools.items()
    }
    return statuses, node_bodies, pool_statuses


def baseline(host: Host, planned: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]) -> None:
    """The same writes as a converged operator, made by a bare client.

    Like the operator, it keeps the Leases it creates alive while it works: each is renewed
    on the operator's own schedule (:class:`RenewalSchedule`, the default grace period),
    on the same 16 threads, so both sides pay for the heartbeats a live platform needs.
    """
    statuses, node_bodies, pool_statuses = planned
    fin = {"metadata": {"finalizers": ["fedcompute.io/finalizer"]}}
    merge = "application/merge-patch+json"
    leases: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def one(name: str) -> None:
        host.request("PATCH", f"{GROUP}/computeproviders/{name}", body=fin, content_type=merge)
        host.patch_status("computeproviders", name, statuses[name])
        if name in node_bodies:
            created = host.create_node(node_bodies[name])
            lease = host.create_lease(
                vnodes.lease_body(f"fc-{name}", name, created["metadata"]["uid"], _now())
            )
            with lock:
                leases[f"fc-{name}"] = lease

    def one_pool(name: str) -> None:
        host.request("PATCH", f"{GROUP}/regionpools/{name}", body=fin, content_type=merge)
        host.patch_status("regionpools", name, pool_statuses[name])

    with ThreadPoolExecutor(CONCURRENCY) as pool_:
        jobs = [pool_.submit(one, n) for n in statuses]
        jobs += [pool_.submit(one_pool, n) for n in pool_statuses]
        keep_alive(host, pool_, leases, lock, until=lambda: all(j.done() for j in jobs))
        for job in jobs:
            job.result()


def keep_alive(
    host: Host,
    pool_: ThreadPoolExecutor,
    leases: dict[str, dict[str, Any]],
    lock: threading.Lock,
    *,
    until: Any,
) -> None:
    """Renew the Leases created so far on the operator's schedule, until ``until()``."""
    schedule = RenewalSchedule(vnodes.lease_period(vnodes.NODE_MONITOR_GRACE_SECONDS))
    while not until():
        time.sleep(1.0)
        with lock:
            current = dict(leases)
        wanted = {name: name for name in current}
        stamp = vnodes.micro_time(_now())
        for name in schedule.due(wanted, current, _now().timestamp()):
            pool_.submit(host.renew_lease, vnodes.LEASE_NAMESPACE, name, stamp)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def virtual(host: Host) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The virtual Nodes and their Leases."""
    return host.list_labelled(label=vnodes.LABEL_PROVIDER, lease_namespace=vnodes.LEASE_NAMESPACE)


def count(host: Host, path: str) -> int:
    """How many objects a collection holds, read cheaply (one item and the apiserver's
    remainingItemCount, which it gives only without a selector: the benchmark's cluster
    holds nothing but the virtual nodes and their Leases), so that polling does not load
    the control plane."""
    page = host.request("GET", path, query=[("limit", "1")])
    meta = page.get("metadata") or {}
    return len(page.get("items") or []) + int(meta.get("remainingItemCount") or 0)


def converged(host: Host, n_providers: int, n_pools: int) -> bool:
    """Every claimed provider's node and lease exists and every pool's status is correct."""
    want = expected_pools(n_providers, n_pools)
    claimed = sum(want.values())
    if count(host, "/api/v1/nodes") != claimed:
        return False
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{vnodes.LEASE_NAMESPACE}/leases"
    if count(host, leases) != claimed:
        return False
    for p in host.list_all(f"{GROUP}/regionpools"):
        status = p.get("status") or {}
        total = want[p["metadata"]["name"]]
        if (
            status.get("providers") != {"total": total, "ready": total}
            or status.get("nodes") != total
        ):
            return False
        cpu = quantities.parse((status.get("allocatable") or {}).get("cpu", "0"))
        if cpu != Decimal(128 * total):
            return False
    return True


def clean(c: cluster.Cluster, host: Host) -> None:
    """Delete every object of a run (finalizers removed first)."""
    for plural in ("computeproviders", "regionpools"):
        items = list(host.list_all(f"{GROUP}/{plural}"))

        def drop(name: str, plural: str = plural) -> None:
            try:
                host.request(
                    "PATCH",
                    f"{GROUP}/{plural}/{name}",
                    body={"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json",
                )
                host.delete(f"{GROUP}/{plural}/{name}")
            except HostError:
                pass

        run_parallel([lambda n=i["metadata"]["name"]: drop(n) for i in items])
    node_list, leases = virtual(host)
    run_parallel(
        [lambda n=n["metadata"]["name"]: host.delete(f"/api/v1/nodes/{n}") for n in node_list]
    )
    run_parallel(
        [
            lambda n=x["metadata"]["name"]: host.delete_lease(vnodes.LEASE_NAMESPACE, n)
            for x in leases
        ]
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control_plane_cpu(c: cluster.Cluster) -> float:
    """CPU seconds used so far by the cluster's etcd and kube-apiserver."""
    children = c.state()["children"]
    return sum(cpu_seconds(children[name]) for name in ("etcd", "kube-apiserver"))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Run:
    """One baseline run and one operator run on the same control plane."""

    base_time: float
    base_requests: float
    base_cpu: float
    base_plane_cpu: float
    op_time: float
    op_requests: float
    op_cpu: float
    op_plane_cpu: float
    rss: float
    passes: list[tuple[float, int]]
    """(plan seconds, writes) of each operator pass until converged, from its log."""
    end_to_end: list[float]
    """Seconds from patching one provider to its status showing the change."""
    changed: list[float]
    """Plan plus write seconds of each pass a single change caused, from the log."""
    marked: int = 0
    """NodeNotReady Events the lifecycle controller emitted while the operator ran (from
    its start to its stop, single changes included; not the baseline's or the clean-up's)."""

    @property
    def ratio(self) -> float:
        return self.op_time / self.base_time


PASS_LINE = re.compile(r"pass \d+: planned .* in ([0-9.]+)s, (\d+) writes")
PASS_TIMES = re.compile(r"pass \d+: planned .* in ([0-9.]+)s, (\d+) writes in ([0-9.]+)s")


def measure_baseline(c: cluster.Cluster, host: Host, args: argparse.Namespace) -> list[float]:
    create_objects(host, args.providers, args.pools)
    planned = planned_writes(host)
    before = apiserver_requests(c)
    plane_cpu, own_cpu = control_plane_cpu(c), time.process_time()
    started = time.monotonic()
    baseline(host, planned)
    elapsed = time.monotonic() - started
    result = [
        elapsed,
        apiserver_requests(c) - before - 1,
        time.process_time() - own_cpu,
        control_plane_cpu(c) - plane_cpu,
    ]
    clean(c, host)
    return result


def measure_operator(
    c: cluster.Cluster, host: Host, args: argparse.Namespace
) -> tuple[list[float], list[tuple[float, int]], list[float], list[float], int] | None:
    """Time the operator from start to converged, then single changes; clean up."""
    create_objects(host, args.providers, args.pools)
    before = apiserver_requests(c)
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-operator-{os.getpid()}.log"
    log = log_path.open("wb")  # the operator writes to it until the end
    own_reads = sum(host.requests.counts.values())
    plane_cpu = control_plane_cpu(c)
    marks_before = set(lifecycle_events(c)) if not args.no_controller_manager else set()
    started = time.monotonic()
    command = [sys.executable, "-m", "fedcompute", "run", "--kubeconfig", str(c.kubeconfig)]
    proc = subprocess.Popen([*command, "--standalone"], stdout=log, stderr=subprocess.STDOUT)
    try:
        while not converged(host, args.providers, args.pools):
            if proc.poll() is not None:
                print(f"operator exited with {proc.returncode}; log in {log.name}")
                return None
            if time.monotonic() - started > args.timeout:
                print(f"not converged after {args.timeout:.0f}s; log in {log.name}")
                return None
            time.sleep(0.5)
        op_time = time.monotonic() - started
        op_plane_cpu = control_plane_cpu(c) - plane_cpu
        op_cpu = cpu_seconds(proc.pid)
        own_reads = sum(host.requests.counts.values()) - own_reads
        op_requests = apiserver_requests(c) - before - 1 - own_reads
        mark = log_path.stat().st_size
        end_to_end = single_changes(host, args.changes)
        rss = peak_rss_mb(proc.pid)
        marked = (
            len(set(lifecycle_events(c)) - marks_before) if not args.no_controller_manager else 0
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.close()
    text = log_path.read_text(errors="replace")
    passes = [(float(m.group(1)), int(m.group(2))) for m in PASS_LINE.finditer(text[:mark])]
    changed = [
        float(m.group(1)) + float(m.group(3))
        for m in PASS_TIMES.finditer(text[mark:])
        if int(m.group(2)) > 0
    ]
    clean(c, host)
    return [op_time, op_requests, op_cpu, op_plane_cpu, rss], passes, end_to_end, changed, marked


def single_changes(host: Host, n: int) -> list[float]:
    """Change one provider at a time; seconds from the patch to its status showing it."""
    latencies = []
    for i in range(n):
        name = f"p-{i * 37 % 1000:04d}"
        cpu = str(200 + i)
        patch = {"spec": {"source": {"static": {"resources": {"cpu": cpu}}}}}
        started = time.monotonic()
        host.request(
            "PATCH",
            f"{GROUP}/computeproviders/{name}",
            body=patch,
            content_type="application/merge-patch+json",
        )
        while True:
            status = host.request("GET", f"{GROUP}/computeproviders/{name}").get("status") or {}
            if (status.get("allocatable") or {}).get("cpu") == cpu:
                break
            time.sleep(0.01)
        latencies.append(time.monotonic() - started)
        time.sleep(1.0)
    return latencies


def lifecycle_events(c: cluster.Cluster) -> dict[str, str]:
    """The node lifecycle controller's NodeNotReady Events on virtual nodes: Event uid ->
    node name (a node recreated under the same name gets Events of its own)."""
    text = c.kubectl(
        "get", "events", "-A", "--field-selector", "involvedObject.kind=Node", "-o", "json"
    ).stdout
    return {
        e["metadata"]["uid"]: e["involvedObject"]["name"]
        for e in json.loads(text)["items"]
        if e.get("reason") == "NodeNotReady" and e["involvedObject"]["name"].startswith("fc-")
    }


def lifecycle_marks(c: cluster.Cluster) -> list[str]:
    """Virtual nodes the node lifecycle controller ever marked (its NodeNotReady events)."""
    return sorted(set(lifecycle_events(c).values()))


def report(run: Run, index: int) -> None:
    print(f"--- run {index}")
    base, op = run.base_requests, run.op_requests
    print(f"baseline (bare client, same writes): {run.base_time:7.2f} s {base:6.0f} requests")
    print(f"operator (start to converged):       {run.op_time:7.2f} s {op:6.0f} requests")
    ratio_r = run.op_requests / max(run.base_requests, 1)
    print(f"ratio operator/baseline: time {run.ratio:.2f}x, requests {ratio_r:.2f}x")
    print(
        f"CPU seconds: baseline client {run.base_cpu:.1f}, its control plane "
        f"{run.base_plane_cpu:.1f}; operator {run.op_cpu:.1f}, its control plane "
        f"{run.op_plane_cpu:.1f}"
    )
    print(f"operator peak RSS: {run.rss:.0f} MB")
    print(f"NodeNotReady Events while the operator ran: {run.marked}")
    plan_times = [p for p, _ in run.passes]
    print(
        f"operator passes: {len(run.passes)}, plan time max {max(plan_times, default=0):.2f} s "
        f"total {sum(plan_times):.2f} s, writes {sum(w for _, w in run.passes)} "
        f"(first pass {run.passes[0][1] if run.passes else 0})"
    )
    if run.changed:
        print(
            f"one changed provider: pass (plan + writes) median "
            f"{statistics.median(run.changed) * 1000:.0f} ms, max {max(run.changed) * 1000:.0f} ms "
            f"over {len(run.changed)} passes; patch to status median "
            f"{statistics.median(run.end_to_end) * 1000:.0f} ms"
        )


@dataclass
class SizeResult:
    """The median run of one size, and what it ran into."""

    providers: int
    pools: int
    runs: list[Run]
    marked: list[str]

    @property
    def median(self) -> Run:
        ordered = sorted(self.runs, key=lambda r: r.ratio)
        return ordered[len(ordered) // 2]


def run_size(args: argparse.Namespace, providers: int, pools: int) -> SizeResult | None:
    """Baseline and operator runs of one size on a fresh control plane."""
    args.providers, args.pools = providers, pools
    c = cluster.up(
        f"bench-{os.getpid()}-{providers}",
        owner_pid=os.getpid(),
        with_kwok=False,
        controller_manager=not args.no_controller_manager,
    )
    try:
        c.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        c.kubectl("create", "namespace", "fedcompute-system")
        host = Host.from_kubeconfig(str(c.kubeconfig), pool_size=CONCURRENCY * 2)
        print(f"providers={providers} pools={pools} regions={REGIONS}")
        print(f"concurrency={CONCURRENCY} runs={args.runs}")
        runs: list[Run] = []
        for index in range(1, args.runs + 1):
            base = measure_baseline(c, host, args)
            measured = measure_operator(c, host, args)
            if measured is None:
                return None
            op, passes, end_to_end, changed, marked = measured
            runs.append(
                Run(
                    *base,
                    *op,
                    passes=passes,
                    end_to_end=end_to_end,
                    changed=changed,
                    marked=marked,
                )
            )
            report(runs[-1], index)
        marked = [] if args.no_controller_manager else lifecycle_marks(c)
        return SizeResult(providers, pools, runs, marked)
    finally:
        cluster.down(c.name)


def arguments(description: str) -> argparse.ArgumentParser:
    """The options shared by this benchmark and benchmarks/scale.py."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3, help="runs to take the median of")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--changes", type=int, default=10, help="single changes timed after")
    parser.add_argument(
        "--no-controller-manager",
        action="store_true",
        help="run the host without kube-controller-manager (node lifecycle controller, GC)",
    )
    return parser


def main() -> int:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument(
        "--rss-target", type=float, default=None, help="MB (300 up to 1,000 providers, else 400)"
    )
    args = parser.parse_args()
    if args.rss_target is None:
        args.rss_target = 300.0 if args.providers <= 1000 else 400.0
    result = run_size(args, args.providers, args.pools)
    if result is None:
        return 1
    ratio = statistics.median(r.ratio for r in result.runs)
    rss = max(r.rss for r in result.runs)
    if not args.no_controller_manager:
        print(f"virtual nodes the node lifecycle controller marked NotReady: {len(result.marked)}")
    print(
        f"=== median time ratio over {len(result.runs)} runs: {ratio:.2f}x; peak RSS {rss:.0f} MB"
    )
    ok = ratio <= 1.5 and rss < args.rss_target
    print(
        f"target (median <= 1.5x baseline time, < {args.rss_target:.0f} MB RSS):",
        "met" if ok else "NOT met",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
