"""Collection benchmark: the cost of collecting one big member cluster, against a bare client.

One local control plane (kube-apiserver 1.34 and etcd, no kwok) is filled through the API
with a big member's objects (see benchmarks/_member_objects.py): 5,000 Nodes, 50,000 Pods
bound to them, 5,000 ResourceSlices, DeviceClasses and allocated ResourceClaims by
default. The member also serves as the host: a Secret in it holds its own kubeconfig.
Then, alternately, each in a fresh subprocess (so that its peak RSS is its own), median
of three runs each:

* operator: exactly what the engine runs for one collection,
  ``fedcompute.kube.members.collect_provider(host, provider, namespace=..., deny_cidrs=(),
  timeout=..., summarize=member_summarizer(provider))`` for a ComputeProvider whose
  ``kubeconfigSecretRef`` names that Secret; the summary is wrapped in a sink that only
  reads the clock around each page, for the time per phase;
* baseline: a bare urllib3 client making the same requests on one connection (the same
  paths, page size, field selector, discovery request and ``Accept-Encoding: gzip``),
  parsing each page's JSON and discarding it.

Prints the wall time, peak RSS (the child's ``VmHWM``: its ``ru_maxrss`` would be the
parent's, see :func:`peak_rss_mb`), CPU seconds of the client (and how much of them the
cyclic garbage collector took) and of the control plane, the time per list (and how much
of it the figures took), the ratio operator/baseline (target <= 1.5x) and the operator's
figures against those the objects should give. ``--profile`` adds one more operator run
under cProfile. Usage::

    .venv/bin/python benchmarks/collection.py [--nodes 5000 --pods 50000 --slices 5000]
    .venv/bin/python benchmarks/collection.py --nodes 200 --pods 2000 --slices 200
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAMESPACE = "fedcompute-bench"
SECRET = "member-kubeconfig"
PROVIDER = "bench-member"
Json = dict[str, Any]


def peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM``, the high-water mark of its own memory.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a child at exec
    (``subprocess`` forks with vfork, so the child's memory is the parent's until then),
    which made every child report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class GcTimer:
    """Seconds spent in the cyclic garbage collector, and collections per generation."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        self.tracked_before = len(gc.get_objects())
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def stop(self) -> Json:
        gc.callbacks.remove(self._note)
        return {
            "seconds": self.seconds,
            "collections": self.collections,
            "tracked_before": self.tracked_before,
        }


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the children (each run in a fresh process) ---------------------------------------------


class _TimedSink:
    """Passes pages on to the summary, noting when each arrives and how long its figures take.

    ``fetch`` of a list is the time from the end of the previous page's figures to the
    arrival of this page (request, transfer, gunzip, JSON parsing); the first page fed
    (``version``, where the operator reads ``/version``) also carries reading the Secret,
    vetting the kubeconfig and the TLS handshake, the first DRA page the discovery
    request.
    """

    def __init__(self, inner: Any, started: float) -> None:
        self.inner = inner
        self.last = started
        self.phases: dict[str, dict[str, float]] = {}

    def feed(self, kind: str, items: list[Json]) -> None:
        arrived = time.perf_counter()
        phase = self.phases.setdefault(kind, {"fetch": 0.0, "figures": 0.0, "pages": 0, "items": 0})
        phase["fetch"] += arrived - self.last
        self.inner.feed(kind, items)
        self.last = time.perf_counter()
        phase["figures"] += self.last - arrived
        phase["pages"] += 1
        phase["items"] += len(items)

    def result(self, notes: Any) -> Any:
        started = time.perf_counter()
        figures = self.inner.result(notes)
        self.phases["result"] = {"fetch": 0.0, "figures": time.perf_counter() - started}
        return figures


def child_operator(spec: Json) -> Json:
    from fedcompute.api.provider import ComputeProvider
    from fedcompute.capacity.providers import member_summarizer
    from fedcompute.handlers import process
    from fedcompute.kube import members
    from fedcompute.kube.host import Host

    host = Host.from_kubeconfig(spec["kubeconfig"])
    process.tune_gc()  # as `fedcompute run` does at start-up
    provider = ComputeProvider.model_validate(
        {
            "apiVersion": "fedcompute.io/v1alpha1",
            "kind": "ComputeProvider",
            "metadata": {"name": PROVIDER},
            "spec": {
                "region": "bench",
                "source": {"kubernetes": {"kubeconfigSecretRef": {"name": SECRET}}},
            },
        }
    )
    rss_before = rss_mb()
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    collector = GcTimer()
    cpu = cpu_self()
    started = time.perf_counter()
    sink = _TimedSink(member_summarizer(provider), started)
    if profiler is not None:
        profiler.enable()
    inventory = members.collect_provider(
        host,
        provider,
        namespace=NAMESPACE,
        deny_cidrs=(),
        timeout=spec["timeout"],
        summarize=sink,
    )
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    cpu = cpu_self() - cpu
    garbage = collector.stop()
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rss": peak_rss_mb(),
        "rss_before": rss_before,
        "gc": garbage,
        "phases": sink.phases,
        "figures": {
            "nodes_total": inventory.nodes_total,
            "nodes_ready": inventory.nodes_ready,
            "nodes_counted": inventory.nodes_counted,
            "pods": str(inventory.allocated.get("pods", 0)),
            "cpu_allocatable": str(inventory.allocatable.get("cpu", 0)),
            "dra_served": inventory.dra_served,
            "partial_pools": len(inventory.partial_pools),
            "device_pools": len(inventory.device_pools),
            "notes": list(inventory.notes),
            "accelerators": [
                {
                    "model": a.model,
                    "vendor": a.vendor,
                    "resources": list(a.resource_names),
                    "nodes": a.nodes,
                    "capacity": a.capacity,
                    "allocatable": a.allocatable,
                    "allocated": a.allocated,
                    "available": a.available,
                }
                for a in inventory.accelerators
            ],
        },
    }


def child_baseline(spec: Json) -> Json:
    import json as json_
    from urllib.parse import urlencode

    import urllib3

    rss_before = rss_mb()
    collector = GcTimer()
    cpu = cpu_self()
    started = time.perf_counter()
    pool = urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        spec["port"],
        maxsize=1,
        cert_reqs="CERT_REQUIRED",
        ca_certs=spec["ca"],
        cert_file=spec["cert"],
        key_file=spec["key"],
        retries=False,
        timeout=urllib3.Timeout(connect=30, read=spec["timeout"]),
    )
    headers = {"Accept": "application/json", "Accept-Encoding": "gzip"}
    phases: dict[str, dict[str, float]] = {}
    received = 0
    last = started
    for kind, path, selectors in spec["lists"]:
        if kind in ("version", "discovery"):  # a single GET, not a list
            response = pool.request("GET", path, headers=headers)
            assert response.status == 200, response.status
            json_.loads(response.data)
            if kind == "version":  # as the operator's phases count it (the discovery
                now = time.perf_counter()  # request goes with the next list)
                phases[kind] = {"fetch": now - last, "figures": 0.0, "pages": 1, "items": 1}
                last = now
            continue
        phase = phases.setdefault(kind, {"fetch": 0.0, "figures": 0.0, "pages": 0, "items": 0})
        token = ""
        while True:
            query = [("limit", str(spec["page_size"])), *selectors]
            if token:
                query.append(("continue", token))
            response = pool.request("GET", f"{path}?{urlencode(query)}", headers=headers)
            assert response.status == 200, response.status
            data = response.data  # gunzipped by urllib3
            received += len(data)
            page = json_.loads(data)
            del data
            token = (page.get("metadata") or {}).get("continue") or ""
            phase["pages"] += 1
            phase["items"] += len(page.get("items") or [])
            del page
            now = time.perf_counter()
            phase["fetch"] += now - last
            last = now
            if not token:
                break
    pool.close()
    seconds = time.perf_counter() - started
    cpu = cpu_self() - cpu
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rss": peak_rss_mb(),
        "rss_before": rss_before,
        "gc": collector.stop(),
        "phases": phases,
        "received": received,
    }


# --- the parent -----------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plane_cpu(c: Any) -> float:
    children = c.state()["children"]
    return sum(proc_cpu(children[name]) for name in ("etcd", "kube-apiserver"))


def run_child(c: Any, role: str, spec: Json) -> Json:
    before = plane_cpu(c)
    done = subprocess.run(
        [sys.executable, __file__, "--child", role, json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=spec["timeout"] + 120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{role} run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: Json = json.loads(done.stdout.strip().splitlines()[-1])
    result["plane_cpu"] = plane_cpu(c) - before
    return result


def lists_read() -> list[list[Any]]:
    """The requests a collection makes, in its order, from the operator's own constants
    (``version`` and ``discovery`` are single GETs; the others are paginated lists)."""
    from fedcompute.kube import members

    lists: list[list[Any]] = [
        ["version", "/version", []],
        ["nodes", "/api/v1/nodes", []],
        ["pods", "/api/v1/pods", [["fieldSelector", members.NON_TERMINAL_PODS]]],
        ["discovery", members.RESOURCE_API, []],
    ]
    lists += [[kind, path, []] for kind, path in members.DRA_LISTS]
    return lists


def put_secret(client: Any, kubeconfig: Path) -> None:
    import base64

    from _member_objects import ApiError, namespace

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET},
        "data": {"kubeconfig": base64.b64encode(kubeconfig.read_bytes()).decode()},
    }
    for path, body in (
        ("/api/v1/namespaces", namespace(NAMESPACE)),
        (f"/api/v1/namespaces/{NAMESPACE}/secrets", secret),
    ):
        try:
            client.request("POST", path, body)
        except ApiError as exc:
            if exc.status != 409:
                raise


def machine() -> str:
    cpus = os.cpu_count() or 0
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{cpus} CPUs, {memory:.0f} GiB, {platform.machine()}, Python "
        f"{platform.python_version()}, load average {load:.1f} at the start"
    )


def check_figures(figures: Json, want: Json) -> list[str]:
    """Differences between the operator's figures and what the objects should give."""
    problems = []
    if figures["nodes_total"] != want["nodes"] or figures["nodes_counted"] != want["nodes"]:
        problems.append(f"nodes {figures['nodes_total']}/{figures['nodes_counted']}")
    if int(figures["pods"]) != want["pods"]:
        problems.append(f"pods {figures['pods']} != {want['pods']}")
    for vendor in ("NVIDIA", "Huawei"):
        got = [a for a in figures["accelerators"] if a["vendor"] == vendor]
        for key in ("capacity", "allocated"):
            total = sum(a[key] for a in got)
            if total != want[vendor][key]:
                problems.append(f"{vendor} {key} {total} != {want[vendor][key]}")
    if figures["partial_pools"] or not figures["dra_served"]:
        problems.append(f"DRA served {figures['dra_served']}, partial {figures['partial_pools']}")
    return problems


LABELS = {"version": "start, /version"}


def print_phases(op: Json, base: Json) -> None:
    print("time per list (operator run and baseline run of median time):")
    print(
        f"  {'list':15s} {'items':>7s} {'pages':>5s} {'operator fetch':>15s} "
        f"{'figures':>8s} {'baseline':>9s}"
    )
    for kind, phase in op["phases"].items():
        if kind == "result":
            continue
        b = base["phases"].get(kind, {})
        print(
            f"  {LABELS.get(kind, kind):15s} {int(phase['items']):7d} {int(phase['pages']):5d} "
            f"{phase['fetch']:13.2f} s {phase['figures']:6.2f} s {b.get('fetch', 0.0):7.2f} s"
        )
    print(f"  {'result()':15s} {'':7s} {'':5s} {'':15s} {op['phases']['result']['figures']:6.2f} s")


def print_profile(path: str, top: int) -> None:
    import io
    import pstats

    for key, pattern, title in (
        ("cumulative", "fedcompute", "fedcompute functions by cumulative time"),
        ("tottime", "", "all functions by own time"),
    ):
        out = io.StringIO()
        stats = pstats.Stats(path, stream=out)
        stats.sort_stats(key)
        if pattern:
            stats.print_stats(pattern, top)
        else:
            stats.print_stats(top)
        text = out.getvalue()
        start = text.find("   ncalls")
        print(f"--- profile: {title}")
        print(text[start:] if start >= 0 else text)


def median_run(runs: list[Json]) -> Json:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=50000)
    parser.add_argument("--slices", type=int, default=5000)
    parser.add_argument(
        "--dra-nodes", type=int, default=None, help="nodes with GPU slices (min(slices, nodes)/2)"
    )
    parser.add_argument("--claims", type=int, default=None, help="allocated claims (dra-nodes/2)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each to take the median of")
    parser.add_argument("--timeout", type=float, default=600.0, help="collection timeout, s")
    parser.add_argument("--threads", type=int, default=16, help="concurrent creates in setup")
    parser.add_argument("--rss-target", type=float, default=400, help="MB")
    parser.add_argument("--profile", action="store_true", help="one more run under cProfile")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--keep", action="store_true", help="leave the cluster up")
    parser.add_argument("--reuse", metavar="NAME", help="a cluster left up by --keep, same sizes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        child_spec = json.loads(rest[0])
        result = (child_operator if args.child == "operator" else child_baseline)(child_spec)
        print(json.dumps(result))
        return 0

    from _member_objects import Layout, RawClient, create_all, expected
    from fedcompute.kube import members
    from fedcompute.local import cluster

    layout = Layout.of(args.nodes, args.pods, args.slices, args.dra_nodes, args.claims)
    print(f"machine: {machine()}")
    print(
        f"member: {layout.nodes:,} nodes ({layout.dra_nodes:,} with DRA GPUs), "
        f"{layout.pods:,} pods, {layout.slices:,} ResourceSlices ({layout.dra_nodes:,} GPU, "
        f"{layout.slices - layout.dra_nodes:,} NIC), {layout.claims:,} allocated claims"
    )
    started = time.monotonic()
    if args.reuse:
        c = cluster.get(args.reuse)
    else:
        c = cluster.up(
            f"collect-{os.getpid()}",
            owner_pid=None if args.keep else os.getpid(),
            with_kwok=False,
        )
    keep = args.keep or bool(args.reuse)
    try:
        print(f"control plane up in {time.monotonic() - started:.1f} s ({c.name})")
        client = RawClient(c.server, c.directory / "pki", maxsize=args.threads)
        if not args.reuse:
            started = time.monotonic()
            seconds = create_all(client, layout, threads=args.threads)
            total = time.monotonic() - started
            detail = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
            print(f"setup: objects created in {total:.1f} s ({args.threads} threads; {detail})")
        put_secret(client, c.kubeconfig)
        counts = {
            "nodes": client.count("/api/v1/nodes"),
            "pods": client.count("/api/v1/pods"),
            "resourceslices": client.count(f"{members.RESOURCE_API}/resourceslices"),
            "resourceclaims": client.count(f"{members.RESOURCE_API}/resourceclaims"),
        }
        print(f"objects in the member: {counts}")
        client.close()
        pki = c.directory / "pki"
        spec: Json = {
            "kubeconfig": str(c.kubeconfig),
            "timeout": args.timeout,
            "port": c.port,
            "ca": str(pki / "ca.crt"),
            "cert": str(pki / "admin.crt"),
            "key": str(pki / "admin.key"),
            "page_size": members.PAGE_SIZE,
            "lists": lists_read(),
        }
        ops: list[Json] = []
        bases: list[Json] = []
        for index in range(1, args.runs + 1):
            bases.append(run_child(c, "baseline", spec))
            ops.append(run_child(c, "operator", spec))
            b, o = bases[-1], ops[-1]
            print(
                f"--- run {index}: operator {o['seconds']:.2f} s (CPU {o['cpu']:.1f} s, "
                f"control plane {o['plane_cpu']:.1f} s, peak RSS {o['rss']:.0f} MB); "
                f"baseline {b['seconds']:.2f} s (CPU {b['cpu']:.1f} s, control plane "
                f"{b['plane_cpu']:.1f} s, peak RSS {b['rss']:.0f} MB); cyclic GC "
                f"{o['gc']['seconds']:.1f} s vs {b['gc']['seconds']:.1f} s"
            )
        op, base = median_run(ops), median_run(bases)
        op_time = statistics.median(r["seconds"] for r in ops)
        base_time = statistics.median(r["seconds"] for r in bases)
        ratio = op_time / base_time
        op_rss = max(r["rss"] for r in ops)
        base_rss = max(r["rss"] for r in bases)
        figures = op["figures"]
        print_phases(op, base)
        print(
            f"figures: {figures['nodes_total']} nodes ({figures['nodes_counted']} counted), "
            f"{figures['pods']} pods, allocatable cpu {figures['cpu_allocatable']}, "
            f"DRA served {figures['dra_served']}, {figures['device_pools']} complete device "
            f"pools, {figures['partial_pools']} partial; notes {figures['notes'] or 'none'}"
        )
        for a in figures["accelerators"]:
            print(
                f"  {a['vendor']:7s} {a['model']:24s} {'+'.join(a['resources']):38s} "
                f"nodes {a['nodes']:5d} capacity {a['capacity']:6d} allocated "
                f"{a['allocated']:6d} available {a['available']:6d}"
            )
        problems = check_figures(figures, expected(layout))
        print("figures as the objects give them:", problems or "yes")
        print(f"JSON listed (decompressed): {bases[-1]['received'] / 2**20:.0f} MiB")
        print(f"\nMachine: {machine()}")
        print(
            f"| {layout.nodes:,} nodes, {layout.pods:,} pods, {layout.slices:,} slices "
            f"| operator | baseline | ratio |"
        )
        print("| --- | --- | --- | --- |")
        print(
            f"| collection time (median of {args.runs}) | {op_time:.2f} s | {base_time:.2f} s "
            f"| {ratio:.2f}x (target <= 1.5x) |"
        )
        print(
            f"| peak RSS (max of {args.runs}) | {op_rss:.0f} MB | {base_rss:.0f} MB "
            f"| target < {args.rss_target:.0f} MB |"
        )
        print(
            f"| RSS before collecting (imports, client) | {op['rss_before']:.0f} MB "
            f"| {base['rss_before']:.0f} MB | |"
        )
        print(
            f"| client CPU (median run) | {op['cpu']:.1f} s | {base['cpu']:.1f} s "
            f"| {op['cpu'] / max(base['cpu'], 1e-9):.2f}x |"
        )
        print(
            f"| control plane CPU (median run) | {op['plane_cpu']:.1f} s "
            f"| {base['plane_cpu']:.1f} s | |"
        )
        print(
            f"| of client CPU, cyclic GC (median run) | {op['gc']['seconds']:.1f} s "
            f"| {base['gc']['seconds']:.1f} s | |"
        )
        print(
            f"| GC-tracked objects before collecting | {op['gc']['tracked_before']:,} "
            f"| {base['gc']['tracked_before']:,} | |"
        )
        met = ratio <= 1.5 and op_rss < args.rss_target and not problems
        print(
            f"target (<= 1.5x baseline time, < {args.rss_target:.0f} MB RSS, right figures):",
            "met" if met else "NOT met",
        )
        if args.profile:
            path = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"collection-{os.getpid()}.prof")
            profiled = run_child(c, "operator", {**spec, "profile": path})
            print(f"\nprofiled operator run: {profiled['seconds']:.2f} s (cProfile overhead)")
            print_profile(path, args.profile_top)
        return 0
    finally:
        if keep:
            print(f"cluster {c.name} left up: kubeconfig {c.kubeconfig}")
        else:
            cluster.down(c.name)


if __name__ == "__main__":
    sys.exit(main())
