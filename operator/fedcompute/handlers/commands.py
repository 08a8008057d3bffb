"""``fedcompute run``: the operator process."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from fedcompute.api.common import parse_duration
from fedcompute.kube import kubeconfigs


def register(subparsers: Any) -> None:
    """Add the ``run`` command."""
    run = subparsers.add_parser(
        "run",
        help="run the operator (cluster-wide, for ComputeProviders and RegionPools)",
        description="Run the fedcompute operator against a host cluster.",
    )
    run.add_argument("--kubeconfig", help="host cluster kubeconfig (default: in-cluster)")
    run.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE") or "fedcompute-system",
        help="where kubeconfig Secrets are read from, and nowhere else "
        "(default: $POD_NAMESPACE, else fedcompute-system)",
    )
    run.add_argument("--health-port", type=int, help="serve liveness on :PORT/healthz")
    run.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on :PORT/metrics")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument(
        "--standalone", action="store_true", help="a single replica that always acts (default)"
    )
    mode.add_argument(
        "--peering",
        metavar="NAME",
        help="run as one of several replicas: every replica watches, only the holder of "
        "the Lease fedcompute-NAME in --namespace writes; the others stand by",
    )
    run.add_argument(
        "--deny-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help="refuse member API servers in this range too (repeatable; link-local and "
        "cloud metadata addresses are always refused)",
    )
    run.add_argument(
        "--node-monitor-grace-period",
        default="50s",
        metavar="DURATION",
        help="the host's kube-controller-manager --node-monitor-grace-period (default 50s, "
        "its own default): virtual nodes' Leases are renewed just under every half of it",
    )
    run.add_argument(
        "--kueue",
        action="store_true",
        help="export RegionPools with spec.kueue to Kueue (kueue.x-k8s.io/v1beta2 "
        "ResourceFlavors and ClusterQueues; needs the chart's kueue.enabled RBAC)",
    )
    run.add_argument(
        "--cluster-profiles-namespace",
        metavar="NS",
        help="publish one multicluster.x-k8s.io/v1alpha1 ClusterProfile per member-cluster "
        "provider in NS (needs the chart's clusterProfiles RBAC); unset: none",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from fedcompute.handlers import process
    from fedcompute.handlers.operator import OperatorOptions, build_registry
    from fedcompute.metrics import Metrics
    from fedcompute.reconcile.engine import EngineSettings

    try:
        deny = kubeconfigs.deny_list(args.deny_cidr)
    except ValueError as exc:
        print(f"fedcompute run: --deny-cidr: {exc}")
        return 2
    try:
        grace = parse_duration(args.node_monitor_grace_period)
    except ValueError as exc:
        print(f"fedcompute run: --node-monitor-grace-period: {exc}")
        return 2
    if grace < 3:
        print("fedcompute run: --node-monitor-grace-period: must be at least 3s")
        return 2
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    if not args.verbose:
        # Kopf logs every handled watch event; only problems are worth a line.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    options = OperatorOptions(
        kubeconfig=args.kubeconfig,
        settings=EngineSettings(
            namespace=args.namespace,
            deny_cidrs=deny,
            node_monitor_grace_period=grace,
            kueue=args.kueue,
            cluster_profiles_namespace=args.cluster_profiles_namespace,
        ),
        metrics=Metrics(),
        metrics_port=args.metrics_port,
        peering=args.peering,
    )
    registry = build_registry(options)
    process.tune_gc()
    kopf.run(
        registry=registry,
        clusterwide=True,
        # Kopf's own peering freezes peers of equal priority, so identical replicas would
        # all stop; active/standby comes from the engine's Lease instead (--peering).
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz"
        if args.health_port
        else None,
        memo=kopf.Memo(),
    )
    return 0
