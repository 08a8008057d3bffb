"""The health samples under deploy/argocd, and what each GitOps tool must say of them.

Each sample is an object as the operator (or an older operator) writes it. Argo CD's
verdict is in the ``health_test.yaml`` next to the script, in Argo CD's own format; the
kstatus and Flux verdicts are below. The three agree in this sense (docs/install.md):

* Flux gives kstatus's verdict on every object that has a status; on an object with no
  status yet kstatus says Current and Flux cannot evaluate (it keeps waiting, "error"
  here); on a deletion kstatus says Terminating and Flux InProgress;
* Argo CD Healthy or Suspended  <->  Current;
* Argo CD Degraded  <->  Failed when Stalled=True (needs a change from the user), else
  InProgress (Ready=False: a member down, a pool short of providers);
* Argo CD Progressing  <->  InProgress or Terminating (or kstatus's Current on an object
  with no status at all, its one gap).
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
    ("ComputeProvider", "no-status"): ("Current", "error"),
    ("ComputeProvider", "old-generation"): ("InProgress", "InProgress"),
    ("ComputeProvider", "pending"): ("InProgress", "InProgress"),
    ("ComputeProvider", "healthy"): ("Current", "Current"),
    ("ComputeProvider", "collection-failed-still-fresh"): ("Current", "Current"),
    ("ComputeProvider", "static"): ("Current", "Current"),
    ("ComputeProvider", "stale"): ("InProgress", "InProgress"),
    ("ComputeProvider", "insecure-kubeconfig"): ("Failed", "Failed"),
    ("ComputeProvider", "unschedulable"): ("Current", "Current"),
    ("ComputeProvider", "deleting"): ("Terminating", "InProgress"),
    ("ComputeProvider", "secret-not-found"): ("Failed", "Failed"),
    ("ComputeProvider", "write-rejected"): ("Failed", "Failed"),
    ("ComputeProvider", "edited"): ("InProgress", "InProgress"),
    ("RegionPool", "no-status"): ("Current", "error"),
    ("RegionPool", "old-generation"): ("InProgress", "InProgress"),
    ("RegionPool", "healthy"): ("Current", "Current"),
    ("RegionPool", "degraded-but-ready"): ("Current", "Current"),
    ("RegionPool", "not-enough-ready"): ("InProgress", "InProgress"),
    ("RegionPool", "no-providers"): ("InProgress", "InProgress"),
    ("RegionPool", "paused"): ("Current", "Current"),
    ("RegionPool", "paused-not-ready"): ("InProgress", "InProgress"),
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
    evaluation error is reported as "error" (Flux keeps waiting). celpy is more lenient
    than cel-go about unbound variables, so this is a quick first look; the verdicts
    that count come from Flux's own evaluator (tests/integration/test_health.py).
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
            return "error"
        if isinstance(result, Exception):
            return "error"
        if bool(result):
            return verdict
    return "InProgress"
