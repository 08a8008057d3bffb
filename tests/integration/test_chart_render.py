"""The Helm chart rendered offline (``helm template``, ``helm lint``, ``kubectl kustomize``).

No cluster is needed; the pinned helm and kubectl are (``fedcompute local binaries``).
What the apiserver makes of the output is tested in tests/integration/test_chart.py; the
values schema and the dashboard as files, in tests/unit/test_chart_render.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedcompute import deploy
from fedcompute.api import crds
from fedcompute.local import binaries
from fedcompute.metrics import Metrics
from tests.conftest import require_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / deploy.CHART
FULL = CHART / "ci" / "full-values.yaml"
HA = CHART / "ci" / "ha-values.yaml"
NS = "fedcompute-system"


@pytest.fixture(scope="module")
def helm() -> str:
    return require_tool("helm", binaries.helm)


@pytest.fixture(scope="module")
def kubectl() -> str:
    return require_tool("kubectl", binaries.kubectl)


def render(
    helm: str, *values: Path, sets: tuple[str, ...] = (), crds_dir: bool = False
) -> list[dict[str, Any]]:
    return deploy.helm_template(
        CHART,
        release="fedcompute",
        namespace=NS,
        values=values,
        set_values=sets,
        include_crds=crds_dir,
        helm=helm,
    )


def refused(helm: str, *args: str) -> str:
    """Render with ``args`` and return helm's error output (the render must fail)."""
    cmd = [helm, "template", "fedcompute", str(CHART), "--namespace", NS, *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode != 0, f"{args} was accepted"
    return result.stderr


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


# --- lint and schema ----------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, FULL, HA], ids=["default", "full", "ha"])
def test_lint_strict(helm: str, values: Path | None) -> None:
    cmd = [helm, "lint", "--strict", str(CHART)]
    if values is not None:
        cmd += ["--values", str(values)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicas=2"], "additional properties 'replicas' not allowed"),
        (["--set", "image.tags=v1"], "at '/image': additional properties 'tags' not allowed"),
        (["--set", "replicaCount=0"], "at '/replicaCount': minimum"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "operator.verbose=yes"], "at '/operator/verbose': got string, want boolean"),
        (["--set", "operator.metricsPort=70000"], "at '/operator/metricsPort': maximum"),
        (["--set", "operator.denyCidrs[0]=not-a-cidr"], "at '/operator/denyCidrs/0'"),
        (["--set", "image.digest=latest"], "at '/image/digest'"),
        (["--set", "serviceMonitor.interval=often"], "at '/serviceMonitor/interval'"),
        (
            ["--set", "prometheusRule.alerts.poolDegraded.sevrity=page"],
            "additional properties 'sevrity' not allowed",
        ),
        (["--set", "podAntiAffinity.mode=always"], "at '/podAntiAffinity/mode'"),
        (["--set", "podAntiAffinity.mode=Soft"], "at '/podAntiAffinity/mode'"),
        (["--set", "podAntiAffinity.topologyKey=not a key"], "at '/podAntiAffinity/topologyKey'"),
        (["--set", "podAntiAffinity.weight=50"], "additional properties 'weight' not allowed"),
        (
            ["--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=Never"],
            "at '/podDisruptionBudget/unhealthyPodEvictionPolicy'",
        ),
        (["--set", "kueue.enabled=yes"], "at '/kueue/enabled': got string, want boolean"),
        (["--set", "kueue.cohort=all"], "at '/kueue': additional properties 'cohort' not allowed"),
        (["--set", "clusterProfiles.namespace=Fleet_System"], "at '/clusterProfiles/namespace'"),
        (
            ["--set", "clusterProfiles.name=fleet"],
            "at '/clusterProfiles': additional properties 'name' not allowed",
        ),
    ],
)
def test_schema_refuses_bad_values(helm: str, args: list[str], message: str) -> None:
    error = refused(helm, *args)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "operator.healthPort=9090"], "healthPort and operator.metricsPort must differ"),
        (
            ["--set", "serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
            "serviceMonitor.enabled needs metrics.service.enabled",
        ),
        (
            ["--set", "replicaCount=2", "--set", "podDisruptionBudget.minAvailable=2"],
            "minAvailable must be less than replicaCount",
        ),
        (
            ["--set", "serviceAccount.create=false"],
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
    ],
)
def test_inconsistent_values_are_refused(helm: str, args: list[str], message: str) -> None:
    assert message in refused(helm, *args)


# --- what the chart renders -----------------------------------------------------------------

EXPECTED_DEFAULT = {
    ("CustomResourceDefinition", "acceleratormodels.fedcompute.io"),
    ("CustomResourceDefinition", "computeproviders.fedcompute.io"),
    ("CustomResourceDefinition", "regionpools.fedcompute.io"),
    ("ServiceAccount", "fedcompute"),
    ("ClusterRole", "fedcompute"),
    ("ClusterRoleBinding", "fedcompute"),
    ("Role", "fedcompute"),
    ("RoleBinding", "fedcompute"),
    ("Role", "fedcompute-node-leases"),
    ("RoleBinding", "fedcompute-node-leases"),
    ("Role", "fedcompute-events"),
    ("RoleBinding", "fedcompute-events"),
    ("Service", "fedcompute-metrics"),
    ("Deployment", "fedcompute"),
}


def test_default_objects(helm: str) -> None:
    docs = render(helm)
    assert set(by_kind(docs)) == EXPECTED_DEFAULT
    namespaces = {(d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") for d in docs}
    assert namespaces[("Role", "fedcompute")] == NS
    assert namespaces[("Role", "fedcompute-node-leases")] == "kube-node-lease"
    assert namespaces[("Role", "fedcompute-events")] == "default"
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "fedcompute", doc["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]


def test_deployment_defaults(helm: str) -> None:
    deployment = one(render(helm), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/fedcompute/fedcompute:0.1.0"
    assert container["args"] == [
        "--health-port=8080",
        "--metrics-port=9090",
        "--standalone",
        "--node-monitor-grace-period=50s",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["cpu"]
    # Pod Security "restricted", field by field (the apiserver checks it in integration).
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert all("hostPath" not in v for v in pod["volumes"])
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    # Never scheduled onto the virtual nodes the operator itself creates.
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"key": "fedcompute.io/provider", "operator": "DoesNotExist"} in terms[
        "nodeSelectorTerms"
    ][0]["matchExpressions"]
    # The metrics Service selects exactly the operator's pods.
    service = one(render(helm), "Service")
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def _rules(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                yield doc["metadata"].get("namespace", ""), rule


def test_rbac_has_no_wildcards_and_never_writes_spec(helm: str) -> None:
    for values in ((), (FULL,), (HA,)):
        for _, rule in _rules(render(helm, *values)):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), rule
            # No update, except of the one election Lease: spec and labels of users'
            # objects are never replaced.
            if "update" in rule["verbs"]:
                assert rule["resources"] == ["leases"] and rule.get("resourceNames"), rule
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"], rule


def test_secrets_only_through_a_role_in_the_release_namespace(helm: str) -> None:
    docs = render(helm)
    holders = [(ns, r) for ns, r in _rules(docs) if "secrets" in r["resources"]]
    assert [ns for ns, _ in holders] == [NS]
    cluster_role = by_kind(docs)[("ClusterRole", "fedcompute")]
    assert not any("secrets" in r["resources"] for r in cluster_role["rules"])


def test_high_availability(helm: str) -> None:
    docs = render(helm, HA)
    objects = by_kind(docs)
    deployment = objects[("Deployment", "fedcompute")]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--peering=fedcompute-ha" in container["args"]
    assert "--standalone" not in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pdb = objects[("PodDisruptionBudget", "fedcompute")]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    # The election Lease: created, then read and renewed by name, in the release namespace.
    lease_rules = [(ns, r) for ns, r in _rules(docs) if "leases" in r["resources"]]
    election = [r for ns, r in lease_rules if ns == NS]
    assert {"verbs": ["create"]}.items() <= election[0].items()
    assert election[1]["resourceNames"] == ["fedcompute-fedcompute-ha"]
    assert election[1]["verbs"] == ["get", "update"]
    assert len(election) == 2
    # One replica: standalone, no election rights, no budget that would only block drains.
    single = render(helm)
    assert not any(kind == "PodDisruptionBudget" for kind, _ in by_kind(single))
    assert not [r for ns, r in _rules(single) if ns == NS and "leases" in r["resources"]]


# --- Kueue export and ClusterProfile inventory: args and RBAC only when switched on -------

KUEUE_RULE = {
    "apiGroups": ["kueue.x-k8s.io"],
    "resources": ["resourceflavors", "clusterqueues"],
    "verbs": ["get", "list", "watch", "create", "patch", "delete"],
}
PROFILE_RULES = [
    {
        "apiGroups": ["multicluster.x-k8s.io"],
        "resources": ["clusterprofiles"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["multicluster.x-k8s.io"],
        "resources": ["clusterprofiles/status"],
        "verbs": ["patch"],
    },
]
PROFILES_NS = "fleet-inventory"


def _args(objects: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    args: list[str] = _pod_spec(objects)["containers"][0]["args"]
    return args


def _mentions(docs: list[dict[str, Any]], *words: str) -> list[str]:
    """Every RBAC object naming one of ``words`` in a rule (as ``kind/namespace/name``)."""
    return [
        f"{d['kind']}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}"
        for d in docs
        if d["kind"] in ("ClusterRole", "Role") and any(w in json.dumps(d["rules"]) for w in words)
    ]


def test_kueue_and_cluster_profiles_are_off_by_default(helm: str) -> None:
    for values in ((), (FULL,), (HA,)):
        docs = render(helm, *values)
        objects = by_kind(docs)
        args = _args(objects)
        assert "--kueue" not in args
        assert not [a for a in args if a.startswith("--cluster-profiles-namespace")]
        assert not _mentions(docs, "kueue.x-k8s.io", "multicluster.x-k8s.io", "clusterprofiles")
        assert not [k for k in objects if k[1].endswith("-cluster-profiles")]
    # An explicit empty namespace is off too; a disabled Kueue is off.
    docs = render(helm, sets=("clusterProfiles.namespace=", "kueue.enabled=false"))
    assert {_key(d) for d in docs} == {_key(d) for d in render(helm)}
    assert _args(by_kind(docs)) == _args(by_kind(render(helm)))


def test_kueue_enabled_adds_the_flag_and_exactly_its_rule(helm: str) -> None:
    default = by_kind(render(helm))
    docs = render(helm, sets=("kueue.enabled=true",))
    objects = by_kind(docs)
    assert set(objects) == set(default)  # no new object: one more rule in the ClusterRole
    assert _args(objects) == [*_args(default), "--kueue"]
    before = default[("ClusterRole", "fedcompute")]["rules"]
    after = objects[("ClusterRole", "fedcompute")]["rules"]
    assert after == [*before, KUEUE_RULE]
    assert _mentions(docs, "kueue.x-k8s.io") == ["ClusterRole//fedcompute"]
    for key, doc in objects.items():
        if key not in (("ClusterRole", "fedcompute"), ("Deployment", "fedcompute")):
            assert doc == default[key], key
    # Nothing of the ClusterProfile inventory comes with it.
    assert not _mentions(docs, "multicluster.x-k8s.io")


def test_cluster_profiles_namespace_adds_the_flag_and_a_role_there(helm: str) -> None:
    default = by_kind(render(helm))
    docs = render(helm, sets=(f"clusterProfiles.namespace={PROFILES_NS}",))
    objects = by_kind(docs)
    added = set(objects) - set(default)
    assert added == {
        ("Role", "fedcompute-cluster-profiles"),
        ("RoleBinding", "fedcompute-cluster-profiles"),
    }
    assert _args(objects) == [*_args(default), f"--cluster-profiles-namespace={PROFILES_NS}"]
    role = objects[("Role", "fedcompute-cluster-profiles")]
    assert role["metadata"]["namespace"] == PROFILES_NS
    assert role["rules"] == PROFILE_RULES
    binding = objects[("RoleBinding", "fedcompute-cluster-profiles")]
    assert binding["metadata"]["namespace"] == PROFILES_NS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "fedcompute-cluster-profiles",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "fedcompute", "namespace": NS}
    ]
    assert role["metadata"]["labels"]["app.kubernetes.io/instance"] == "fedcompute"
    # The rights live in that namespace only: no ClusterRole and no other Role grows.
    assert _mentions(docs, "multicluster.x-k8s.io", "clusterprofiles") == [
        f"Role/{PROFILES_NS}/fedcompute-cluster-profiles"
    ]
    for key, doc in default.items():
        if key != ("Deployment", "fedcompute"):
            assert objects[key] == doc, key
    assert not _mentions(docs, "kueue.x-k8s.io")


def test_both_switched_on_with_rbac_off_keep_the_flags_only(helm: str) -> None:
    sets = ("kueue.enabled=true", f"clusterProfiles.namespace={PROFILES_NS}")
    both = by_kind(render(helm, sets=sets))
    assert _args(both)[-2:] == ["--kueue", f"--cluster-profiles-namespace={PROFILES_NS}"]
    assert both[("ClusterRole", "fedcompute")]["rules"][-1] == KUEUE_RULE
    assert ("Role", "fedcompute-cluster-profiles") in both
    # rbac.create=false: the user binds the rules; the chart renders no RBAC at all.
    bare = by_kind(render(helm, sets=(*sets, "rbac.create=false")))
    assert not [k for k in bare if k[0] in ("ClusterRole", "Role", "RoleBinding")]
    assert _args(bare) == _args(both)


# --- several replicas: disruption budget and anti-affinity ----------------------------------

NOT_ON_VIRTUAL_NODES = {
    "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "fedcompute.io/provider", "operator": "DoesNotExist"}]}
        ]
    }
}
ROLL_WITH_SURGE = {"maxSurge": 1, "maxUnavailable": 0}


def _replicas(helm: str, count: int, *sets: str) -> dict[tuple[str, str], dict[str, Any]]:
    return by_kind(render(helm, sets=(f"replicaCount={count}", *sets)))


def _pod_spec(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects[("Deployment", "fedcompute")]["spec"]["template"]["spec"]
    return spec


def _own_pods(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The label selector that picks exactly the release's operator pods."""
    deployment = objects[("Deployment", "fedcompute")]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    return {"matchLabels": labels}


def test_one_replica_has_no_budget_and_no_anti_affinity(helm: str) -> None:
    for sets in ((), ("podAntiAffinity.mode=hard",)):
        objects = _replicas(helm, 1, *sets)
        assert not [k for k in objects if k[0] == "PodDisruptionBudget"]
        assert _pod_spec(objects)["affinity"] == {"nodeAffinity": NOT_ON_VIRTUAL_NODES}
        assert objects[("Deployment", "fedcompute")]["spec"]["strategy"] == {"type": "Recreate"}


def test_several_replicas_defaults(helm: str) -> None:
    objects = _replicas(helm, 3)
    pdb = objects[("PodDisruptionBudget", "fedcompute")]["spec"]
    assert pdb == {
        "minAvailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": _own_pods(objects),
    }
    # The default node affinity stays; a preferred anti-affinity per host joins it.
    assert _pod_spec(objects)["affinity"] == {
        "nodeAffinity": NOT_ON_VIRTUAL_NODES,
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": _own_pods(objects),
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        },
    }
    strategy = objects[("Deployment", "fedcompute")]["spec"]["strategy"]
    assert strategy["rollingUpdate"] == ROLL_WITH_SURGE
    # The CI values for two replicas spell out the same defaults.
    ha = by_kind(render(helm, HA))
    assert _pod_spec(ha)["affinity"] == _pod_spec(objects)["affinity"]


@pytest.mark.parametrize("policy", ["IfHealthyBudget", "AlwaysAllow"])
def test_unhealthy_pod_eviction_policy(helm: str, policy: str) -> None:
    objects = _replicas(helm, 2, f"podDisruptionBudget.unhealthyPodEvictionPolicy={policy}")
    assert (
        objects[("PodDisruptionBudget", "fedcompute")]["spec"]["unhealthyPodEvictionPolicy"]
        == policy
    )


@pytest.mark.parametrize("mode", ["soft", "hard", "none"])
def test_pod_anti_affinity_modes(helm: str, mode: str) -> None:
    objects = _replicas(
        helm, 3, f"podAntiAffinity.mode={mode}", "podAntiAffinity.topologyKey=example.com/rack"
    )
    affinity = _pod_spec(objects)["affinity"]
    assert affinity["nodeAffinity"] == NOT_ON_VIRTUAL_NODES
    term = {"labelSelector": _own_pods(objects), "topologyKey": "example.com/rack"}
    strategy = objects[("Deployment", "fedcompute")]["spec"]["strategy"]
    if mode == "soft":
        assert affinity["podAntiAffinity"] == {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    elif mode == "hard":
        assert affinity["podAntiAffinity"] == {
            "requiredDuringSchedulingIgnoredDuringExecution": [term]
        }
    else:
        assert "podAntiAffinity" not in affinity
    # A surge pod could find no free domain under a required anti-affinity: replace instead.
    surge = {"maxSurge": 0, "maxUnavailable": 1} if mode == "hard" else ROLL_WITH_SURGE
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": surge}
    # The budget does not depend on the anti-affinity.
    assert ("PodDisruptionBudget", "fedcompute") in objects


def test_user_affinity_merges_and_its_pod_anti_affinity_wins(helm: str, tmp_path: Path) -> None:
    own = {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"}
        ]
    }
    zone_only = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
            ]
        }
    }
    # A podAntiAffinity in `affinity` is used as it is; the chart adds none (and keeps
    # the surge rollout even in hard mode, since the required term is not its own).
    values = tmp_path / "own.yaml"
    affinity = {"nodeAffinity": zone_only, "podAntiAffinity": own}
    hard = {"mode": "hard"}
    values.write_text(
        yaml.safe_dump({"replicaCount": 2, "podAntiAffinity": hard, "affinity": affinity})
    )
    objects = by_kind(render(helm, values))
    assert _pod_spec(objects)["affinity"] == affinity
    strategy = objects[("Deployment", "fedcompute")]["spec"]["strategy"]
    assert strategy["rollingUpdate"] == ROLL_WITH_SURGE
    # Any other affinity is kept, and the chart's anti-affinity added to it.
    values.write_text(yaml.safe_dump({"replicaCount": 2, "affinity": {"nodeAffinity": zone_only}}))
    affinity = _pod_spec(by_kind(render(helm, values)))["affinity"]
    assert affinity["nodeAffinity"] == zone_only
    assert affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    # No affinity at all: only the chart's anti-affinity.
    affinity = _pod_spec(_replicas(helm, 2, "affinity=null"))["affinity"]
    assert set(affinity) == {"podAntiAffinity"}
    assert "affinity" not in _pod_spec(_replicas(helm, 1, "affinity=null"))


def test_fully_enabled(helm: str) -> None:
    docs = render(helm, FULL)
    objects = by_kind(docs)
    deployment = objects[("Deployment", "fedcompute")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert "--deny-cidr=10.0.0.0/8" in container["args"]
    assert "--deny-cidr=fd00::/8" in container["args"]
    assert "--verbose" in container["args"]
    monitor = objects[("ServiceMonitor", "fedcompute")]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = objects[("Service", "fedcompute-metrics")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    rule = objects[("PrometheusRule", "fedcompute")]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "FedcomputeProviderStale",
        "FedcomputePoolDegraded",
        "FedcomputeCollectionErrors",
        "FedcomputeOperatorDown",
    }
    assert all(a["labels"]["team"] == "platform" for a in alerts.values())
    assert 'job="fedcompute-metrics"' in alerts["FedcomputeOperatorDown"]["expr"]
    dashboard = objects[("ConfigMap", "fedcompute-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["fedcompute.json"]) == deploy.dashboard()


def test_crd_switches(helm: str) -> None:
    rendered = {
        d["metadata"]["name"]: d for d in render(helm) if d["kind"] == "CustomResourceDefinition"
    }
    for source in crds.crd_documents():
        crd = rendered[source["metadata"]["name"]]
        assert crd["spec"] == source["spec"], "the chart's CRD differs from fedcompute.api"
        assert crd["metadata"]["annotations"] == deploy.KEEP_ANNOTATIONS
    unkept = [d for d in render(helm, sets=("crds.keep=false",)) if "CustomResource" in d["kind"]]
    assert len(unkept) == len(crds.crd_documents()) and all(
        "annotations" not in d["metadata"] for d in unkept
    )
    assert not any(
        d["kind"] == "CustomResourceDefinition" for d in render(helm, sets=("crds.enabled=false",))
    )


def test_names_fit_in_63_characters(helm: str) -> None:
    long_release = "a-release-name-of-the-longest-length-helm-allows-abcd"
    assert len(long_release) == 53
    cmd = [helm, "template", long_release, str(CHART), "--namespace", NS, "-f", str(FULL)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for doc in (d for d in yaml.safe_load_all(out) if d):
        # Service names are DNS labels; the other names are DNS subdomains.
        limit = 63 if doc["kind"] == "Service" else 253
        assert len(doc["metadata"]["name"]) <= limit, doc["metadata"]["name"]
        for value in doc["metadata"]["labels"].values():
            assert len(value) <= 63, value


def test_notes_say_what_to_do_next(helm: str) -> None:
    cmd = [helm, "install", "fedcompute", str(CHART), "--namespace", NS, "--dry-run=client"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    notes = out.split("NOTES:", 1)[1]
    assert "kubectl -n fedcompute-system rollout status deployment/fedcompute" in notes
    assert "create secret generic" in notes
    assert "kubectl get computeproviders,regionpools" in notes


# --- the kustomize base and other generated files ---------------------------------------


def test_generated_files_are_current(helm: str) -> None:
    drift = deploy.check(ROOT, helm=helm)
    assert not drift, f"out of date (run `fedcompute generate`): {[str(p) for p in drift]}"


def _key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])


def test_kustomize_base_matches_the_chart(helm: str, kubectl: str) -> None:
    cmd = [kubectl, "kustomize", str(ROOT / deploy.DEPLOY)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    base = {_key(d): d for d in yaml.safe_load_all(result.stdout) if d}
    chart = {_key(d): deploy.without_helm_metadata(d) for d in render(helm)}
    namespace = base.pop(("Namespace", "", NS))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert base.keys() == chart.keys()
    for key, doc in chart.items():
        assert base[key] == doc, f"{key} differs between deploy/ and the chart"
    for doc in base.values():
        assert "helm.sh/chart" not in doc["metadata"].get("labels", {})
        if doc["kind"] == "CustomResourceDefinition":
            # Argo CD and Flux keep them too; Helm's own policy means nothing here.
            assert doc["metadata"]["annotations"] == {
                k: v for k, v in deploy.KEEP_ANNOTATIONS.items() if not k.startswith("helm.sh/")
            }


# --- metrics named in alerts and the dashboard ----------------------------------------------


def _exported_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(family.type, ())
        names.update(family.name + s for s in suffixes)
    return names


def _expressions(helm: str) -> Iterator[str]:
    for doc in render(helm, FULL):
        if doc["kind"] == "PrometheusRule":
            for group in doc["spec"]["groups"]:
                for rule in group["rules"]:
                    yield rule["expr"]
    for panel in deploy.dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]


def test_queries_use_only_exported_metrics(helm: str) -> None:
    exported = _exported_names()
    used = {m for expr in _expressions(helm) for m in re.findall(r"\bfedcompute_[a-z_]+", expr)}
    # The job of the operator-down alert is the Service name, not a metric.
    used.discard("fedcompute_metrics")
    assert used, "no fedcompute metric found in the queries"
    assert used <= exported, f"not exported by the operator: {sorted(used - exported)}"
