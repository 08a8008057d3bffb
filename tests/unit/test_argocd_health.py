"""The Argo CD health checks under deploy/argocd, run fast by an embedded Lua 5.1 (lupa).

These unit tests are a quick first look; what decides is tests/integration/test_health.py,
which runs the same samples in the Argo CD runtime (gopher-lua, set up as Argo CD's
util/lua sets it up) and through kstatus's own code. Here the scripts run in Lua 5.1 with
only what Argo CD opens for a health script (base, table and package; no string or math
library) on:

* every sample of the Argo CD-format ``health_test.yaml`` next to each script;
* statuses computed by the operator's own planning code, so the scripts and the
  conditions the operator writes cannot drift apart;
* the generated ``argocd-cm.yaml``, which must carry the scripts unchanged.

The Flux expressions are evaluated on the same samples with celpy, the way
kustomize-controller evaluates them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedcompute import deploy
from fedcompute.api.pool import RegionPool
from fedcompute.api.provider import ComputeProvider
from fedcompute.capacity.providers import Collection, ProviderView, plan_provider
from fedcompute.capacity.rollup import plan_pool
from tests.conftest import require_module
from tests.health_samples import EXPECTED, KINDS, Sample, flux_status, samples

lupa = require_module("lupa.lua51")

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = ROOT / deploy.CUSTOMIZATIONS
# What Argo CD opens for a health script (base, table, package, its safe os); the string
# and math libraries are not among them, so a script must not need them.
ALLOWED_GLOBALS = frozenset(
    {
        "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
        "tostring", "type", "unpack", "_G", "_VERSION", "table", "package", "require",
        "os", "print", "rawequal", "rawget", "rawset", "setmetatable", "getmetatable",
    }
)  # fmt: skip


def script(kind: str) -> str:
    return (CUSTOMIZATIONS / "fedcompute.io" / kind / "health.lua").read_text()


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run ``kind``'s health.lua on ``obj`` as Argo CD would; return ``{status, message}``."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    g = lua.globals()
    for name in list(g):
        if name not in ALLOWED_GLOBALS:
            g[name] = None
    g.obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script(kind))
    assert result is not None, "the script must return its health table"
    health = dict(result)
    assert set(health) <= {"status", "message"}, health
    assert health["status"] in {
        "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"
    }  # fmt: skip
    return health


SAMPLES = samples()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda x: x.id)
def test_samples(sample: Sample) -> None:
    assert sample.obj["kind"] == sample.kind
    assert run_health(sample.kind, sample.obj) == sample.argocd


def test_every_sample_has_a_kstatus_and_flux_verdict() -> None:
    assert {(x.kind, x.name) for x in SAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("sample", [x for x in SAMPLES if "status" in x.obj], ids=lambda x: x.id)
def test_flux_health_expressions(sample: Sample) -> None:
    """On objects with a status (celpy, unlike Flux's cel-go, reads an unbound top-level
    variable as absent instead of failing; Flux's own code judges the rest in
    tests/integration/test_health.py)."""
    assert flux_status(sample.kind, sample.obj) == EXPECTED[(sample.kind, sample.name)][1]


def test_the_scripts_call_no_string_or_math_function() -> None:
    for kind in KINDS:
        code = [line for line in script(kind).splitlines() if not line.lstrip().startswith("--")]
        assert not [line for line in code if "string." in line or "math." in line]


@pytest.mark.parametrize("kind", KINDS)
def test_every_status_is_exercised(kind: str) -> None:
    spec = yaml.safe_load(
        (CUSTOMIZATIONS / "fedcompute.io" / kind / "health_test.yaml").read_text()
    )
    seen = {t["healthStatus"]["status"] for t in spec["tests"]}
    assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= seen


@pytest.mark.parametrize("kind", KINDS)
def test_unexpected_shapes_do_not_crash(kind: str) -> None:
    """Partial or odd objects still give an answer (a script error shows as Unknown)."""
    for obj in (
        {"metadata": {}},
        {"metadata": {"generation": 1}, "status": {}},
        {"metadata": {"generation": 1}, "status": {"conditions": []}},
        {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": []}},
        {
            "metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Ready"}]},
        },
    ):
        assert run_health(kind, obj)["status"] == "Progressing", obj


def test_argocd_cm_carries_the_scripts_unchanged() -> None:
    text = (ROOT / deploy.ARGOCD / "argocd-cm.yaml").read_text()
    assert text == deploy.argocd_cm(deploy.argocd_health_scripts(ROOT)), (
        "deploy/argocd/argocd-cm.yaml is out of date: run `fedcompute generate`"
    )
    data = yaml.safe_load(text)["data"]
    assert data == {
        f"resource.customizations.health.fedcompute.io_{kind}": script(kind) for kind in KINDS
    }


# --- agreement with the operator's own status ------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def provider(name: str, source: dict[str, Any], **spec: Any) -> ComputeProvider:
    body = {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": name, "generation": 1},
        "spec": {"region": "east-china", "source": source, **spec},
    }
    return ComputeProvider.model_validate(body)


STATIC = {"static": {"nodeCount": 2, "resources": {"cpu": "128", "memory": "1Ti"}}}
MEMBER = {"kubernetes": {"kubeconfigSecretRef": {"name": "member-kubeconfig"}}}


def as_object(model: ComputeProvider | RegionPool, status: Any) -> dict[str, Any]:
    obj = model.to_wire()
    obj["status"] = status.to_wire()
    return obj


def view(model: ComputeProvider, collection: Collection | None = None) -> ProviderView:
    return plan_provider(model, collection=collection, claim=None, now=NOW)


def test_operator_status_of_providers() -> None:
    static = provider("static", STATIC)
    assert run_health("ComputeProvider", as_object(static, view(static).status))["status"] == (
        "Healthy"
    )

    waiting = provider("waiting", MEMBER)
    health = run_health("ComputeProvider", as_object(waiting, view(waiting).status))
    assert health["status"] == "Progressing", health

    stale = provider("stale", MEMBER)
    old = Collection(succeeded_at=NOW - timedelta(hours=1), attempted_at=NOW, generation=1)
    old = old.failed(NOW, "Unreachable", "connection refused")
    health = run_health("ComputeProvider", as_object(stale, view(stale, old).status))
    assert health["status"] == "Degraded", health
    assert "Stale" in health["message"]

    cordoned = provider("cordoned", STATIC, unschedulable=True)
    health = run_health("ComputeProvider", as_object(cordoned, view(cordoned).status))
    assert health["status"] == "Suspended", health


def pool(min_ready: int, **spec: Any) -> RegionPool:
    body = {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "RegionPool",
        "metadata": {"name": "east", "generation": 1},
        "spec": {"regions": ["east-china"], "minReadyProviders": min_ready, **spec},
    }
    return RegionPool.model_validate(body)


def test_operator_status_of_pools() -> None:
    ready = view(provider("a", STATIC))
    stale_collection = Collection(
        succeeded_at=NOW - timedelta(hours=1), attempted_at=NOW, generation=1
    )
    down = view(provider("b", MEMBER), stale_collection)
    assert ready.ready and not down.ready

    def health(model: RegionPool, views: list[ProviderView]) -> dict[str, str]:
        status = plan_pool(model, views, nodes=len(views), now=NOW)
        return run_health("RegionPool", as_object(model, status))

    assert health(pool(1), [ready])["status"] == "Healthy"
    serving = health(pool(1), [ready, down])
    assert serving["status"] == "Healthy", serving
    assert "degraded" in serving["message"]
    assert health(pool(2), [ready, down])["status"] == "Degraded"
    assert health(pool(1), [])["status"] == "Degraded"
    assert health(pool(1, paused=True), [ready])["status"] == "Suspended"
