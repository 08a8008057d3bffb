"""Run the pinned upstream judges of fedcompute's objects: Argo CD's health-script
runtime, kstatus, Flux's health-check evaluator and Prometheus's PromQL parser (built and cached by
``fedcompute.local.binaries`` from ``hack/``).

Each wrapper finds its binary through :func:`tests.conftest.require_tool`, so a machine
that cannot build it skips the test, and CI fails it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from fedcompute.local import binaries
from tests.conftest import require_tool

# Generous: a cold call is a process start; the scripts themselves run under a 1 s limit.
TIMEOUT = 60.0


def _run_json(cmd: list[str], payload: object) -> list[dict[str, Any]]:
    done = subprocess.run(
        cmd,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def argocd_health(
    script: Path, objects: list[dict[str, Any]], *, open_libs: bool = False
) -> list[dict[str, Any]]:
    """Argo CD's verdict on each object: ``{status, message}`` or ``{error}``.

    Without ``open_libs`` the script sees what a custom health check in argocd-cm sees;
    with it, every library (``resource.customizations.useOpenLibs``)."""
    cmd = [require_tool("argocd-lua", binaries.argocd_lua)]
    if open_libs:
        cmd.append("--open-libs")
    return _run_json([*cmd, str(script)], objects)


def argocd_test_dir(
    directory: Path, *, open_libs: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``directory``'s health_test.yaml cases as Argo CD's own test does; exit 1 on
    any mismatch, one output line per case."""
    cmd = [require_tool("argocd-lua", binaries.argocd_lua)]
    if open_libs:
        cmd.append("--open-libs")
    return subprocess.run(
        [*cmd, "--test", str(directory)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def kstatus(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kstatus's ``{status, message}`` (or ``{error}``) for each object."""
    return _run_json([require_tool("kstatus", binaries.kstatus)], objects)


def flux_health(expressions: dict[str, str], objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flux's verdict on each object from one healthCheckExprs entry: ``{status}``, or
    ``{error}`` when the expressions cannot be evaluated (Flux then keeps waiting)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as spec:
        json.dump(expressions, spec)
        spec.flush()
        return _run_json([require_tool("flux-health", binaries.flux_health), spec.name], objects)


def promql(expressions: list[str]) -> list[dict[str, Any]]:
    """Per expression, ``{error}`` or its ``{selectors, labels}`` as Prometheus parses it."""
    return _run_json([require_tool("promql", binaries.promql)], expressions)
