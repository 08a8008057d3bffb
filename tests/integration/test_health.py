"""Health as Argo CD, kstatus and Flux really compute it, by their own pinned code.

* every sample under deploy/argocd runs in Argo CD's Lua runtime (gopher-lua with only the
  libraries Argo CD opens) and through kstatus's ``status.Compute`` and Flux's
  healthCheckExprs evaluator, each giving the verdict tests/health_samples.py records;
* live objects of a running platform get the verdicts the docs promise: a healthy
  provider and pool are Current, a collecting or edited one InProgress, a refused
  kubeconfig Failed, a deletion Terminating; the first status comes within a second;
* every PromQL expression of the dashboard and the alert rules, parsed by Prometheus's own
  parser, names only metrics and labels a live scrape of the platform contains, and every
  gauge has a sample for every live object, zeros included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from fedcompute.capacity.plan import FINALIZER
from tests.conftest import MemberFactory
from tests.health_samples import (
    CUSTOMIZATIONS,
    EXPECTED,
    KINDS,
    flux_expressions,
    samples,
    script,
)
from tests.health_tools import argocd_health, argocd_test_dir, flux_health, kstatus, promql
from tests.integration.hostile import SilentListener
from tests.integration.operator_harness import (
    REPO,
    Platform,
    condition,
    member_provider,
    region_pool,
    start_platform,
    static_provider,
    wait_for,
)
from tests.integration.test_chart_render import _expressions

pytestmark = pytest.mark.integration

SAMPLES = samples()

# --- the samples, judged by each tool's own code -------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_argocd_runs_every_sample_case_in_its_own_runtime(kind: str) -> None:
    done = argocd_test_dir(CUSTOMIZATIONS / kind)
    assert done.returncode == 0, done.stdout + done.stderr
    cases = len([s for s in SAMPLES if s.kind == kind])
    assert f"{cases} of {cases} cases match (sandboxed libraries)" in done.stdout


def test_kstatus_verdicts() -> None:
    found = kstatus([s.obj for s in SAMPLES])
    got = {
        (s.kind, s.name): r.get("status", r.get("error"))
        for s, r in zip(SAMPLES, found, strict=True)
    }
    assert got == {key: verdicts[0] for key, verdicts in EXPECTED.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_flux_verdicts(kind: str) -> None:
    mine = [s for s in SAMPLES if s.kind == kind]
    found = flux_health(flux_expressions(kind), [s.obj for s in mine])
    got = {
        s.name: ("error" if "error" in r else r["status"]) for s, r in zip(mine, found, strict=True)
    }
    assert got == {name: v[1] for (k, name), v in EXPECTED.items() if k == kind}
    no_status = [r for s, r in zip(mine, found, strict=True) if s.name == "no-status"]
    assert "no such attribute(s): status.conditions" in no_status[0]["error"]


def test_the_three_tools_agree() -> None:
    """The agreement docs/install.md states, checked on the tools' own verdicts."""
    ks = kstatus([s.obj for s in SAMPLES])
    for s, k in zip(SAMPLES, ks, strict=True):
        argo, kstat = s.argocd["status"], k["status"]
        stalled = any(
            c.get("type") == "Stalled" and c.get("status") == "True"
            for c in (s.obj.get("status") or {}).get("conditions") or []
        )
        if argo in ("Healthy", "Suspended"):
            assert kstat == "Current", s.id
        elif argo == "Degraded":
            assert kstat == ("Failed" if stalled else "InProgress"), s.id
        else:
            assert argo == "Progressing", s.id
            assert kstat in ("InProgress", "Terminating") or "status" not in s.obj, s.id
        flux = EXPECTED[(s.kind, s.name)][1]
        if "status" in s.obj and not (s.obj["metadata"].get("deletionTimestamp")):
            assert flux == kstat, s.id


def test_argocd_would_have_shown_unknown_with_string_format(tmp_path: Path) -> None:
    """What the scripts used to do, in Argo CD's runtime: a script error (shown Unknown)."""
    legacy = tmp_path / "health.lua"
    legacy.write_text(
        'local hs = {}\nhs.status = "Progressing"\n'
        'hs.message = string.format("generation %d", obj.metadata.generation)\nreturn hs\n'
    )
    (result,) = argocd_health(legacy, [{"metadata": {"generation": 3}}])
    assert "attempt to index a non-table object(nil) with key 'format'" in result["error"]
    (fixed,) = argocd_health(script("ComputeProvider"), [SAMPLES[1].obj])
    assert fixed == SAMPLES[1].argocd


# --- live objects ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    log = tmp_path_factory.mktemp("health") / "operator.log"
    yield from start_platform("health", log)


@pytest.fixture(autouse=True)
def _show_operator_log_on_failure(
    request: pytest.FixtureRequest, platform: Platform
) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log:\n{platform.log_tail(120)}")


def verdicts(kind: str, obj: dict[str, Any]) -> tuple[str, str, str]:
    """(Argo CD, kstatus, Flux) on one live object, each by its own code."""
    (argo,) = argocd_health(script(kind), [obj])
    (kstat,) = kstatus([obj])
    (flux,) = flux_health(flux_expressions(kind), [obj])
    return argo.get("status", "error"), kstat["status"], flux.get("status", "error")


def test_a_first_status_within_a_second(platform: Platform) -> None:
    platform.apply(region_pool("first-pool", regions=["first"]))
    created = time.monotonic()
    platform.apply(static_provider("first", "first"))
    wait_for(
        "a first status",
        lambda: (platform.provider("first") or {}).get("status", {}).get("conditions"),
        timeout=5,
        every=0.05,
    )
    assert time.monotonic() - created < 1.5  # 1 s, plus kubectl's own start and polling
    platform.delete("computeprovider", "first")
    platform.delete("regionpool", "first-pool")


def test_live_verdicts_and_kubectl_wait(platform: Platform, member_cluster: MemberFactory) -> None:
    member = member_cluster("live", nodes=1)
    platform.kubeconfig_secret("live-kubeconfig", member.reader_kubeconfig())
    platform.apply(
        region_pool("live-pool", regions=["live"]),
        static_provider("live-static", "live"),
    )
    # Healthy: Ready, Current, Current; kubectl wait works for both kinds.
    for kind, name in (("computeprovider", "live-static"), ("regionpool", "live-pool")):
        platform.host.kubectl("wait", "--for=condition=Ready", "--timeout=30s", f"{kind}/{name}")
    assert verdicts("ComputeProvider", platform.provider("live-static")) == (
        "Healthy",
        "Current",
        "Current",
    )
    assert verdicts("RegionPool", platform.pool("live-pool")) == ("Healthy", "Current", "Current")

    # Collecting: a member that has not answered yet (a listener that never does).
    silent = SilentListener()
    try:
        doc = yaml.safe_load(member.reader_kubeconfig())
        doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{silent.port}"
        platform.kubeconfig_secret("live-silent", json.dumps(doc))
        platform.apply(
            member_provider("live-collecting", "live", "live-silent", interval="30s",
                            timeout="20s", stale_after="60s")
        )  # fmt: skip
        first = wait_for(
            "the collecting member's first status",
            lambda: (p := platform.provider("live-collecting")) and p.get("status") and p,
            timeout=5,
            every=0.05,
        )
        assert condition(first, "Reconciling")["status"] == "True"
        assert verdicts("ComputeProvider", first) == ("Progressing", "InProgress", "InProgress")
        pool = wait_for(
            "the pool waits for it",
            lambda: (
                condition(platform.pool("live-pool"), "Reconciling").get("status") == "True"
                and platform.pool("live-pool")
            ),
        )
        assert verdicts("RegionPool", pool) == ("Progressing", "InProgress", "InProgress")
        platform.delete("computeprovider", "live-collecting")
        wait_for("live-collecting gone", lambda: platform.provider("live-collecting") is None)
    finally:
        silent.close()

    platform.apply(
        member_provider(
            "live-member",
            "live",
            "live-kubeconfig",
            interval="10s",
            timeout="8s",
            stale_after="30s",
        )
    )
    platform.host.kubectl(
        "wait", "--for=condition=Ready", "--timeout=30s", "computeprovider/live-member"
    )
    member_ready = platform.provider("live-member")
    assert verdicts("ComputeProvider", member_ready) == ("Healthy", "Current", "Current")

    # Edited while the operator is away: InProgress until it observes the generation.
    platform.stop()
    try:
        platform.host.kubectl(
            "patch",
            "computeprovider",
            "live-member",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"sector": "research"}}),
        )
        edited = platform.provider("live-member")
        assert verdicts("ComputeProvider", edited) == ("Progressing", "InProgress", "InProgress")
    finally:
        platform.start()
    wait_for(
        "edit observed and collected",
        lambda: (
            verdicts("ComputeProvider", platform.provider("live-member"))
            == ("Healthy", "Current", "Current")
        ),
        timeout=30,
    )

    # A refused kubeconfig: Failed at once, for kstatus and Flux alike.
    platform.kubeconfig_secret("live-exec", _exec_kubeconfig())
    platform.apply(member_provider("live-refused", "live", "live-exec"))
    refused = wait_for(
        "refused kubeconfig stalled",
        lambda: (
            condition(platform.provider("live-refused"), "Stalled").get("status") == "True"
            and platform.provider("live-refused")
        ),
        timeout=20,
    )
    assert verdicts("ComputeProvider", refused) == ("Degraded", "Failed", "Failed")

    # A deletion held by someone else's finalizer: Terminating.
    platform.host.kubectl(
        "patch", "computeprovider", "live-static", "--type=merge",
        "-p", json.dumps({"metadata": {"finalizers": ["example.com/hold", FINALIZER]}}),
    )  # fmt: skip
    platform.delete("computeprovider", "live-static")
    deleting = wait_for(
        "deletion observed",
        lambda: (
            (p := platform.provider("live-static")) and p["metadata"].get("deletionTimestamp") and p
        ),
    )
    assert verdicts("ComputeProvider", deleting) == ("Progressing", "Terminating", "InProgress")
    platform.host.kubectl(
        "patch", "computeprovider", "live-static", "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/metadata/finalizers/0"}]),
    )  # fmt: skip
    wait_for("live-static gone", lambda: platform.provider("live-static") is None, timeout=30)
    platform.delete("computeprovider", "live-member", "live-refused")
    platform.delete("regionpool", "live-pool")


def _exec_kubeconfig() -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: m, cluster: {server: 'https://127.0.0.1:1', "
        "certificate-authority-data: Zm9v}}]\n"
        "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, "
        "command: /bin/true}}}]\n"
        "contexts: [{name: m, context: {cluster: m, user: u}}]\ncurrent-context: m\n"
    )


# --- metrics, dashboard and alerts -----------------------------------------------------------

# Labels Prometheus adds to every scraped series (its target labels, with a
# ServiceMonitor), and series it makes itself.
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
)
PROMETHEUS_SERIES = frozenset({"up"})
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$stale": "300", "$pool": ".*", "${pool}": ".*"}


def _scrape(platform: Platform) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(platform.metrics()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(dict(sample.labels))
    return found


@pytest.fixture(scope="module")
def national_platform(platform: Platform, member_cluster_module: Any) -> Platform:
    """The national-platform example, one member wired in as the demo does."""
    platform.host.kubectl("apply", "-f", str(REPO / "examples" / "national-platform"))
    platform.kubeconfig_secret(
        "hangzhou-industry-kubeconfig", member_cluster_module.reader_kubeconfig()
    )
    wait_for(
        "the wired member Ready",
        lambda: (
            condition(platform.provider("hangzhou-industry-cluster"), "Ready").get("status")
            == "True"
        ),
        timeout=60,
    )
    wait_for(
        "a collection error from the placeholder kubeconfig",
        lambda: "fedcompute_collection_errors_total" in _scrape(platform),
        timeout=60,
    )
    return platform


@pytest.fixture(scope="module")
def member_cluster_module() -> Iterator[Any]:
    from fedcompute.local import cluster
    from tests.conftest import start_cluster

    member = start_cluster(
        "hz", nodes=2, shape=cluster.NodeShape(gpus=8, gpu_model="NVIDIA-L40S"), with_kwok=True
    )
    yield member
    cluster.down(member.name)


def _substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_every_query_names_only_what_a_live_scrape_has(national_platform: Platform) -> None:
    from fedcompute.local import binaries
    from tests.conftest import require_tool

    helm = require_tool("helm", binaries.helm)
    exprs = [_substitute(e) for e in _expressions(helm)]
    parsed = promql(exprs)
    scrape = _scrape(national_platform)
    problems = []
    for expr, result in zip(exprs, parsed, strict=True):
        assert "error" not in result, (expr, result)
        labels_of_expr: set[str] = set()
        for selector in result["selectors"]:
            name = selector["name"]
            if name in PROMETHEUS_SERIES:
                continue
            if name not in scrape:
                problems.append(f"{name} (in {expr!r}) is not in a live scrape")
                continue
            labels_of_expr.update(k for series in scrape[name] for k in series)
            for matcher in selector["matchers"]:
                label = matcher["label"]
                if label not in TARGET_LABELS and not any(label in s for s in scrape[name]):
                    problems.append(f"{name} has no label {label} (in {expr!r})")
        for label in result["labels"]:
            if label not in TARGET_LABELS | labels_of_expr | {"__name__"}:
                problems.append(f"label {label} of {expr!r} is on none of its series")
    assert not problems, "\n".join(problems)


def test_every_gauge_has_a_sample_for_every_live_object(national_platform: Platform) -> None:
    scrape = _scrape(national_platform)
    providers = national_platform.api.request(
        "GET", "/apis/fedcompute.io/v1alpha1/computeproviders"
    )["items"]
    pools = national_platform.api.request("GET", "/apis/fedcompute.io/v1alpha1/regionpools")[
        "items"
    ]
    for p in providers:
        name = p["metadata"]["name"]
        assert any(s.get("provider") == name for s in scrape["fedcompute_provider_ready"]), name
        resources = set((p.get("status") or {}).get("allocatable") or {})
        for figure in ("capacity", "allocatable", "allocated", "available"):
            have = {
                s["resource"]
                for s in scrape.get(f"fedcompute_provider_{figure}", [])
                if s["provider"] == name
            }
            assert resources <= have, (name, figure, resources - have)
    for p in pools:
        name = p["metadata"]["name"]
        states = {s["state"] for s in scrape["fedcompute_pool_providers"] if s["pool"] == name}
        assert states == {"ready", "not_ready"}, name
        resources = set((p.get("status") or {}).get("allocatable") or {})
        have = {
            s["resource"] for s in scrape.get("fedcompute_pool_allocated", []) if s["pool"] == name
        }
        assert resources <= have, (name, resources - have)
