"""Convergence benchmark: 1,000 static providers in 10 regions and 50 pools, from empty.

Two runs on one fresh local control plane, in the same process:

* baseline: a bare client (the same HTTP transport, the same 16-way concurrency) makes
  exactly the writes a converged platform needs: finalizers on every object, every
  provider's status, every virtual node, every lease, every pool's status;
* operator: the same objects, then ``fedcompute run`` started as users run it; timed
  until every pool's status is correct and every node and lease exists.

Prints wall time, API requests (from the apiserver's own ``apiserver_request_total``),
the operator's peak RSS, and the ratio to the baseline. Usage::

    .venv/bin/python benchmarks/convergence.py [--providers 1000] [--pools 50]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fedcompute import quantities
from fedcompute.capacity import nodes as vnodes
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
        "metadata": {"name": f"pool-{j:02d}"},
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


def expected_pools(n_providers: int, n_pools: int) -> dict[str, int]:
    counts = {f"pool-{j:02d}": 0 for j in range(n_pools)}
    for i in range(n_providers):
        for j in range(n_pools):
            if i % REGIONS == j % REGIONS and i % 5 == j // REGIONS % 5:
                counts[f"pool-{j:02d}"] += 1
                break
    return counts


def baseline(host: Host, n_providers: int, n_pools: int) -> None:
    """The same writes as a converged operator, made by a bare client."""
    now = "2026-01-01T00:00:00Z"
    claims = {}
    for i in range(n_providers):
        for j in range(n_pools):
            if i % REGIONS == j % REGIONS and i % 5 == j // REGIONS % 5:
                claims[i] = j
                break
    fin = {"metadata": {"finalizers": ["fedcompute.io/finalizer"]}}
    merge = "application/merge-patch+json"
    jobs: list[Any] = []
    for i in range(n_providers):
        name = f"p-{i:04d}"
        status = {
            "observedGeneration": 1,
            "conditions": [
                {"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": now}
                for t in ("Ready", "Collected", "Claimed")
            ],
            "capacity": {"cpu": "128", "memory": "1Ti", "nvidia.com/gpu": "8"},
            "allocatable": {"cpu": "128", "memory": "1Ti", "nvidia.com/gpu": "8"},
            "allocated": {},
            "available": {"cpu": "128", "memory": "1Ti", "nvidia.com/gpu": "8"},
            "pool": f"pool-{claims.get(i, 0):02d}",
        }
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": f"fc-{name}", "labels": {vnodes.LABEL_PROVIDER: name}},
            "spec": {"taints": [vnodes.VIRTUAL_TAINT]},
            "status": {"capacity": status["capacity"], "allocatable": status["available"]},
        }

        def one(
            name: str = name, status: dict[str, Any] = status, node: dict[str, Any] = node
        ) -> None:
            host.request("PATCH", f"{GROUP}/computeproviders/{name}", body=fin, content_type=merge)
            host.request(
                "PATCH",
                f"{GROUP}/computeproviders/{name}/status",
                body={"status": status},
                content_type=merge,
            )
            created = host.create_node(node)
            host.create_lease(
                vnodes.lease_body(f"fc-{name}", name, created["metadata"]["uid"], _now())
            )

        jobs.append(one)
    for j in range(n_pools):
        name = f"pool-{j:02d}"

        def one_pool(name: str = name) -> None:
            host.request("PATCH", f"{GROUP}/regionpools/{name}", body=fin, content_type=merge)
            host.request(
                "PATCH",
                f"{GROUP}/regionpools/{name}/status",
                body={"status": {"observedGeneration": 1, "providers": {"total": 20, "ready": 20}}},
                content_type=merge,
            )

        jobs.append(one_pool)
    run_parallel(jobs)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def virtual(host: Host) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The virtual Nodes and their Leases."""
    return host.list_labelled(label=vnodes.LABEL_PROVIDER, lease_namespace=vnodes.LEASE_NAMESPACE)


def converged(host: Host, n_providers: int, n_pools: int) -> bool:
    """Every node and lease exists and every pool's status is correct."""
    node_list, leases = virtual(host)
    if len(node_list) != n_providers or len(leases) != n_providers:
        return False
    want = expected_pools(n_providers, n_pools)
    for p in host.list_all(f"{GROUP}/regionpools"):
        status = p.get("status") or {}
        count = want[p["metadata"]["name"]]
        if (
            status.get("providers") != {"total": count, "ready": count}
            or status.get("nodes") != count
        ):
            return False
        if quantities.parse((status.get("allocatable") or {}).get("cpu", "0")) != Decimal(
            128 * count
        ):
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


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    c = cluster.up(f"bench-{os.getpid()}", owner_pid=os.getpid(), with_kwok=False)
    try:
        c.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        c.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        c.kubectl("create", "namespace", "fedcompute-system")
        host = Host.from_kubeconfig(str(c.kubeconfig), pool_size=CONCURRENCY * 2)

        # --- baseline -------------------------------------------------------------------
        create_objects(host, args.providers, args.pools)
        before = apiserver_requests(c)
        started = time.monotonic()
        baseline(host, args.providers, args.pools)
        base_time = time.monotonic() - started
        base_requests = apiserver_requests(c) - before - 1
        clean(c, host)

        # --- operator -------------------------------------------------------------------
        create_objects(host, args.providers, args.pools)
        before = apiserver_requests(c)
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-operator-{os.getpid()}.log"
        log = log_path.open("wb")  # the operator writes to it until the end
        own_reads = sum(host.requests.counts.values())
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedcompute",
                "run",
                "--kubeconfig",
                str(c.kubeconfig),
                "--standalone",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while True:
                if proc.poll() is not None:
                    print(f"operator exited with {proc.returncode}; log in {log.name}")
                    return 1
                if converged(host, args.providers, args.pools):
                    break
                if time.monotonic() - started > args.timeout:
                    print(f"not converged after {args.timeout:.0f}s; log in {log.name}")
                    return 1
                time.sleep(0.5)
            op_time = time.monotonic() - started
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        # Leave out the benchmark's own convergence checks (counted by its client).
        own_reads = sum(host.requests.counts.values()) - own_reads
        op_requests = apiserver_requests(c) - before - 1 - own_reads
        log.close()

        print(f"providers={args.providers} pools={args.pools} regions={REGIONS}")
        print(f"concurrency={CONCURRENCY}")
        print(
            f"baseline (bare client, same writes): {base_time:7.2f} s {base_requests:6.0f} requests"
        )
        print(f"operator (start to converged):       {op_time:7.2f} s {op_requests:6.0f} requests")
        ratio_t = op_time / base_time
        ratio_r = op_requests / max(base_requests, 1)
        print(f"ratio operator/baseline: time {ratio_t:.2f}x, requests {ratio_r:.2f}x")
        print(f"operator peak RSS: {rss:.0f} MB")
        ok = op_time <= 1.5 * base_time and rss < 300
        print("target (<= 1.5x baseline time, < 300 MB RSS):", "met" if ok else "NOT met")
        return 0
    finally:
        cluster.down(c.name)


if __name__ == "__main__":
    sys.exit(main())
