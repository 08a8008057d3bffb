"""The health samples under deploy/argocd, and what each GitOps tool must say of them.

Each sample is an object as the operator (or an older operator) writes it. Argo CD's
verdict is in the ``health_test.yaml`` next to the script, in Argo CD's own format; the
kstatus and Flux verdicts are below. The three agree in this sense (docs/install.md):

* Argo CD Progressing  <->  kstatus InProgress or Terminating (or Current for an object
  with no status at all, kstatus's own gap)  <->  Flux InProgress (Unknown while no
  status exists: Flux keeps waiting);
* Argo CD Degraded with Stalled=True  <->  kstatus Failed  <->  Flux Failed;
* Argo CD Healthy, Suspended, or Degraded without Stalled (the member is down, the
  pool short of providers)  <->  kstatus Current  <->  Flux Current.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CUSTOMIZATIONS = ROOT / "deploy" / "argocd" / "resource_customizations" / "fedcompute.io"
FLUX = ROOT / "deploy" / "flux" / "platform.yaml"
KINDS = ("ComputeProvider", "RegionPool")

# (kind, sample) -> (kstatus, Flux)
EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    ("ComputeProvider", "no-status"): ("Current", "InProgress"),
    ("ComputeProvider", "old-generation"): ("InProgress", "InProgress"),
    ("ComputeProvider", "pending"): ("InProgress", "InProgress"),
    ("ComputeProvider", "healthy"): ("Current", "Current"),
    ("ComputeProvider", "collection-failed-still-fresh"): ("Current", "Current"),
    ("ComputeProvider", "static"): ("Current", "Current"),
    ("ComputeProvider", "stale"): ("Current", "Current"),
    ("ComputeProvider", "insecure-kubeconfig"): ("Failed", "Failed"),
    ("ComputeProvider", "unschedulable"): ("Current", "Current"),
    ("ComputeProvider", "deleting"): ("Terminating", "InProgress"),
    ("ComputeProvider", "secret-not-found"): ("Failed", "Failed"),
    ("ComputeProvider", "write-rejected"): ("Failed", "Failed"),
    ("ComputeProvider", "edited"): ("InProgress", "InProgress"),
    ("RegionPool", "no-status"): ("Current", "InProgress"),
    ("RegionPool", "old-generation"): ("InProgress", "InProgress"),
    ("RegionPool", "healthy"): ("Current", "Current"),
    ("RegionPool", "degraded-but-ready"): ("Current", "Current"),
    ("RegionPool", "not-enough-ready"): ("Current", "Current"),
    ("RegionPool", "no-providers"): ("Current", "Current"),
    ("RegionPool", "paused"): ("Current", "Current"),
    ("RegionPool", "paused-not-ready"): ("Current", "Current"),
    ("RegionPool", "reconciling"): ("InProgress", "InProgress"),
    ("RegionPool", "stalled"): ("Failed", "Failed"),
    ("RegionPool", "deleting"): ("Terminating", "InProgress"),
}


@dataclass(frozen=True)
class Sample:
    """One sample object and Argo CD's expected verdict on it."""

    kind: str
    name: str
    obj: dict[str, Any]
    argocd: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


def script(kind: str) -> Path:
    return CUSTOMIZATIONS / kind / "health.lua"


def samples() -> list[Sample]:
    """Every sample of every kind, in the order of its health_test.yaml."""
    found = []
    for kind in KINDS:
        folder = CUSTOMIZATIONS / kind
        for test in yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]:
            path = folder / test["inputPath"]
            found.append(
                Sample(kind, path.stem, yaml.safe_load(path.read_text()), test["healthStatus"])
            )
    return found


def flux_expressions(kind: str) -> dict[str, str]:
    spec = yaml.safe_load(FLUX.read_text())["spec"]
    (exprs,) = (e for e in spec["healthCheckExprs"] if e["kind"] == kind)
    assert exprs["apiVersion"] == "fedcompute.io/v1alpha1"
    return {k: v for k, v in exprs.items() if k in ("inProgress", "failed", "current")}


def flux_status(kind: str, obj: dict[str, Any]) -> str:
    """Flux's verdict as kustomize-controller computes it (fluxcd/pkg runtime/cel).

    The object's own top-level fields are the CEL variables (a field it lacks is unbound);
    a differing status.observedGeneration is InProgress before any expression; then
    inProgress, failed and current in that order, InProgress when none holds; an
    evaluation error is reported as Unknown and Flux keeps waiting.
    """
    import celpy

    observed = (obj.get("status") or {}).get("observedGeneration")
    generation = (obj.get("metadata") or {}).get("generation")
    if observed is not None and generation is not None and observed != generation:
        return "InProgress"
    env = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}
    exprs = flux_expressions(kind)
    for field, verdict in (
        ("inProgress", "InProgress"),
        ("failed", "Failed"),
        ("current", "Current"),
    ):
        if field not in exprs:
            continue
        try:
            result = env.program(env.compile(exprs[field])).evaluate(activation)
        except Exception:  # celpy raises its own error types for unbound names
            return "Unknown"
        if isinstance(result, Exception):
            return "Unknown"
        if bool(result):
            return verdict
    return "InProgress"
