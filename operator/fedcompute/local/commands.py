"""``fedcompute local``: run real local control planes (host and member clusters)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fedcompute.local import binaries, cluster


def register(subparsers: Any) -> None:
    """Add the ``local`` command group."""
    local = subparsers.add_parser(
        "local",
        help="run local Kubernetes control planes (etcd + kube-apiserver + kwok)",
        description="Run real local Kubernetes control planes for development and tests.",
    )
    sub = local.add_subparsers(dest="local_command", metavar="COMMAND", required=True)

    up = sub.add_parser("up", help="start a cluster and print its kubeconfig path")
    up.add_argument("name")
    up.add_argument("--nodes", type=int, default=0, help="simulated nodes to create (kwok)")
    _shape_args(up)
    up.add_argument(
        "--controller-manager",
        action="store_true",
        help="also run kube-controller-manager (node lifecycle and garbage collector)",
    )
    up.add_argument(
        "--node-monitor-grace-period",
        metavar="DURATION",
        help=(
            "how long a node may go without a heartbeat before it turns Ready=Unknown "
            f"(with --controller-manager; default {cluster.NODE_MONITOR_GRACE_PERIOD})"
        ),
    )
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="stop clusters and remove their state")
    down.add_argument("name", nargs="?")
    down.add_argument("--all", action="store_true", help="stop every local cluster")
    down.set_defaults(func=_down)

    lst = sub.add_parser("list", help="show running clusters")
    lst.add_argument("-o", "--output", choices=("table", "json"), default="table")
    lst.set_defaults(func=_list)

    kc = sub.add_parser("kubeconfig", help="print the path of a cluster's admin kubeconfig")
    kc.add_argument("name")
    kc.set_defaults(func=_kubeconfig)

    nodes = sub.add_parser("nodes", help="add, remove or list a cluster's simulated nodes")
    nsub = nodes.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)
    add = nsub.add_parser("add", help="add simulated nodes")
    add.add_argument("name")
    add.add_argument("--count", type=int, default=1)
    _shape_args(add)
    add.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="extra node label"
    )
    add.set_defaults(func=_nodes_add)
    rm = nsub.add_parser("remove", help="remove simulated nodes (by name, or the last N)")
    rm.add_argument("name")
    rm.add_argument("nodes", nargs="*", help="node names")
    rm.add_argument("--count", type=int, default=0, help="remove the last N nodes")
    rm.set_defaults(func=_nodes_remove)
    ls = nsub.add_parser("list", help="list simulated nodes")
    ls.add_argument("name")
    ls.set_defaults(func=_nodes_list)

    bins = sub.add_parser(
        "binaries", help="build or fetch the pinned binaries and print their paths"
    )
    bins.add_argument(
        "--link-into", type=Path, help="also symlink kubectl, helm and the test tools here"
    )
    bins.add_argument("--no-kwok", action="store_true", help="skip kwok")
    bins.set_defaults(func=_binaries)


def _shape_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-cpu", default="32", help="CPU per node (quantity)")
    parser.add_argument("--node-memory", default="256Gi", help="memory per node (quantity)")
    parser.add_argument("--node-gpus", type=int, default=0, help="nvidia.com/gpu per node")
    parser.add_argument(
        "--gpu-model", default="NVIDIA-A100-SXM4-80GB", help="value of nvidia.com/gpu.product"
    )


def _shape(args: argparse.Namespace) -> cluster.NodeShape:
    return cluster.NodeShape(
        cpu=args.node_cpu, memory=args.node_memory, gpus=args.node_gpus, gpu_model=args.gpu_model
    )


def _fail(message: str) -> int:
    print(f"fedcompute local: {message}", file=sys.stderr)
    return 1


def _up(args: argparse.Namespace) -> int:
    try:
        c = cluster.up(
            args.name,
            nodes=args.nodes,
            shape=_shape(args),
            controller_manager=args.controller_manager,
            node_monitor_grace_period=args.node_monitor_grace_period,
            timeout=args.timeout,
        )
    except (cluster.ClusterError, binaries.BinaryError) as exc:
        return _fail(str(exc))
    print(c.kubeconfig)
    return 0


def _down(args: argparse.Namespace) -> int:
    if args.all:
        for name in cluster.down_all():
            print(f"stopped {name}", file=sys.stderr)
        return 0
    if not args.name:
        return _fail("give a cluster NAME or --all")
    if not cluster.down(args.name):
        return _fail(f"no local cluster named {args.name!r}")
    print(f"stopped {args.name}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    clusters = cluster.list_clusters()
    if args.output == "json":
        print(cluster.dumps(clusters))
        return 0
    rows = [("NAME", "SERVER", "STATUS", "KWOK", "KUBECONFIG")]
    for c in clusters:
        d = cluster.describe(c)
        rows.append(
            (c.name, d["server"], d["status"], "yes" if d["kwok"] else "no", d["kubeconfig"])
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    try:
        print(cluster.get(args.name).kubeconfig)
    except cluster.ClusterError as exc:
        return _fail(str(exc))
    return 0


def _nodes_add(args: argparse.Namespace) -> int:
    try:
        labels = dict(item.split("=", 1) for item in args.label if "=" in item)
        names = cluster.get(args.name).add_nodes(args.count, _shape(args), labels=labels)
    except cluster.ClusterError as exc:
        return _fail(str(exc))
    print("\n".join(names))
    return 0


def _nodes_remove(args: argparse.Namespace) -> int:
    try:
        c = cluster.get(args.name)
        names = list(args.nodes)
        if args.count:
            names += c.node_names()[-args.count :]
        if not names:
            return _fail("name nodes to remove, or give --count")
        c.remove_nodes(names)
    except cluster.ClusterError as exc:
        return _fail(str(exc))
    print("\n".join(names))
    return 0


def _nodes_list(args: argparse.Namespace) -> int:
    try:
        print("\n".join(cluster.get(args.name).node_names()))
    except cluster.ClusterError as exc:
        return _fail(str(exc))
    return 0


def _binaries(args: argparse.Namespace) -> int:
    try:
        found = binaries.ensure_all(with_kwok=not args.no_kwok)
    except (binaries.BinaryError, OSError) as exc:
        return _fail(str(exc))
    table = {
        "kube-apiserver": found.kube_apiserver,
        "kube-controller-manager": found.kube_controller_manager,
        "etcd": found.etcd,
        "kwok": found.kwok,
        "kubectl": found.kubectl,
        "helm": found.helm,
        "argocd-lua": found.argocd_lua,
        "kstatus": found.kstatus,
        "flux-health": found.flux_health,
        "promql": found.promql,
        "kueue": found.kueue,
    }
    for name, path in table.items():
        print(f"{name}\t{path or '-'}")
    if args.link_into:
        for name in ("kubectl", "helm", *binaries.TEST_TOOLS):
            link = args.link_into / name
            if link.is_symlink() or link.exists():
                link.unlink()
            target = table[name]
            if target is not None:
                os.symlink(target, link)
    return 0
