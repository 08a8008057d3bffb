"""The Helm chart against a real kube-apiserver.

The module starts a control plane of its own: a release owns the fedcompute CRDs, which
must not meet CRDs that other tests apply to the shared host. On it:

* the rendered manifests (default, fully enabled, two replicas) pass a server-side dry
  run with strict field validation, with the pinned Prometheus Operator CRDs installed;
* ``helm install``, ``upgrade`` (through every variant and back) and ``uninstall`` work,
  and kept CRDs survive an uninstall and are adopted again by a re-install;
* the operator's Pod passes Pod Security ``restricted`` admission;
* the ServiceAccount may do exactly what the operator needs (``kubectl auth can-i``), and
  the operator, run with that ServiceAccount's token, does its whole job without a single
  refusal and writes nothing but status and finalizers of the objects users own.

There is no controller manager: no Pod is ever created from the Deployment, so nothing
waits for pods.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedcompute import deploy
from fedcompute.api import crds
from fedcompute.local import binaries, cluster
from tests.integration.operator_harness import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / deploy.CHART
VALUES = {
    "default": (),
    "full": (CHART / "ci" / "full-values.yaml",),
    "ha": (CHART / "ci" / "ha-values.yaml",),
}
MANAGER = "fedcompute-chart-tests"


@pytest.fixture(scope="module")
def kube() -> Iterator[cluster.Cluster]:
    """A control plane for this module, with the CRDs the chart's optional parts need."""
    c = cluster.up(f"t{os.getpid()}-chart", owner_pid=os.getpid(), with_kwok=False)
    try:
        monitoring = deploy.prometheus_operator_crds(ROOT)
        args = [a for f in monitoring.values() for a in ("-f", str(f))]
        c.kubectl("apply", "--server-side", f"--field-manager={MANAGER}", *args)
        c.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        )
        # full-values.yaml names this PriorityClass; Pods are admitted only if it exists.
        priority_class = {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "fedcompute-critical"},
            "value": 1000000,
        }
        c.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(priority_class))
        yield c
    finally:
        cluster.down(c.name)


def helm(c: cluster.Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(binaries.helm()), f"--kubeconfig={c.kubeconfig}", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
    return result


def template(release: str, namespace: str, *values: Path, sets: tuple[str, ...] = ()) -> str:
    cmd = [str(binaries.helm()), "template", release, str(CHART), "--namespace", namespace]
    for path in values:
        cmd += ["--values", str(path)]
    for item in sets:
        cmd += ["--set", item]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def namespace(c: cluster.Cluster, name: str, labels: dict[str, str] | None = None) -> str:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        body["metadata"]["labels"] = labels  # type: ignore[index]
    c.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(body))
    return name


def get(c: cluster.Cluster, *args: str) -> dict[str, Any] | None:
    result = c.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


# --- server-side dry run ------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VALUES))
def test_server_dry_run_accepts_the_manifests(kube: cluster.Cluster, variant: str) -> None:
    ns = namespace(kube, f"dry-{variant}")
    manifests = template(f"dry-{variant}", ns, *VALUES[variant])
    result = kube.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        f"--field-manager={MANAGER}",
        "-f",
        "-",
        input=manifests,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    applied = {line.split()[0] for line in result.stdout.splitlines()}
    kinds = {"deployment.apps", "service", "serviceaccount"}
    if variant == "full":
        kinds |= {
            "servicemonitor.monitoring.coreos.com",
            "prometheusrule.monitoring.coreos.com",
            "configmap",
        }
    if variant == "ha":
        kinds |= {"poddisruptionbudget.policy"}
    assert kinds <= {entry.split("/")[0] for entry in applied}, result.stdout


@pytest.mark.parametrize(
    "sets",
    [
        ("replicaCount=3",),
        (
            "replicaCount=3",
            "podAntiAffinity.mode=hard",
            "podAntiAffinity.topologyKey=topology.kubernetes.io/zone",
            "podDisruptionBudget.unhealthyPodEvictionPolicy=IfHealthyBudget",
        ),
    ],
    ids=["soft-always-allow", "hard-if-healthy-budget"],
)
def test_server_dry_run_keeps_the_budget_policy_and_anti_affinity(
    kube: cluster.Cluster, sets: tuple[str, ...]
) -> None:
    """The apiserver accepts the HA rendering and keeps what it asks for (a field of a
    disabled feature would be dropped silently, not refused)."""
    ns = namespace(kube, f"dry-ha-{len(sets)}")
    manifests = template("dry-ha", ns, sets=sets)
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(manifests) if d}
    result = kube.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict",
        f"--field-manager={MANAGER}", "-f", "-", "-o", "json", input=manifests, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    applied = json.loads(result.stdout)
    stored = {(d["kind"], d["metadata"]["name"]): d for d in applied.get("items", [applied])}
    pdb = ("PodDisruptionBudget", "dry-ha-fedcompute")
    policy = rendered[pdb]["spec"]["unhealthyPodEvictionPolicy"]
    assert stored[pdb]["spec"]["unhealthyPodEvictionPolicy"] == policy
    deployment = ("Deployment", "dry-ha-fedcompute")
    affinity = stored[deployment]["spec"]["template"]["spec"]["affinity"]
    assert affinity == rendered[deployment]["spec"]["template"]["spec"]["affinity"]
    assert set(affinity) == {"nodeAffinity", "podAntiAffinity"}
    assert stored[deployment]["spec"]["strategy"] == rendered[deployment]["spec"]["strategy"]


def test_server_dry_run_accepts_the_kustomize_base(kube: cluster.Cluster) -> None:
    base = kube.kubectl("kustomize", str(ROOT / deploy.DEPLOY)).stdout
    (ns,) = (d for d in yaml.safe_load_all(base) if d and d["kind"] == "Namespace")
    kube.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(ns))  # objects need it
    result = kube.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict",
        f"--field-manager={MANAGER}", "-f", "-", input=base, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_the_apiserver_validates_what_the_schema_would_miss(kube: cluster.Cluster) -> None:
    """Free-form pass-through values still meet the apiserver's strict validation."""
    ns = namespace(kube, "dry-strict")
    manifests = template("dry-strict", ns, sets=("resources.limits.memroy=1Gi",))
    result = kube.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=manifests, check=False
    )
    assert result.returncode != 0
    assert "memroy" in result.stderr


# --- install, upgrade, uninstall ------------------------------------------------------------


def test_install_upgrade_uninstall(kube: cluster.Cluster) -> None:
    release = ns = "fc-life"
    fullname = f"{release}-fedcompute"
    helm(kube, "install", release, str(CHART), "-n", ns, "--create-namespace")
    assert get(kube, "deployment", fullname, "-n", ns)
    crd = get(kube, "crd", "computeproviders.fedcompute.io")
    assert crd is not None
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # Everything optional on.
    helm(kube, "upgrade", release, str(CHART), "-n", ns, "-f", str(VALUES["full"][0]))
    assert get(kube, "servicemonitor", fullname, "-n", ns)
    assert get(kube, "prometheusrule", fullname, "-n", ns)
    assert get(kube, "configmap", f"{fullname}-dashboard", "-n", ns)

    # Two peered replicas: the strategy switches to a rolling update.
    helm(kube, "upgrade", release, str(CHART), "-n", ns, "-f", str(VALUES["ha"][0]))
    deployment = get(kube, "deployment", fullname, "-n", ns)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert get(kube, "poddisruptionbudget", fullname, "-n", ns)
    assert get(kube, "servicemonitor", fullname, "-n", ns) is None

    # And back to one replica, recreated, without peering.
    helm(kube, "upgrade", release, str(CHART), "-n", ns, "--reset-values")
    deployment = get(kube, "deployment", fullname, "-n", ns)
    assert deployment is not None
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert get(kube, "poddisruptionbudget", fullname, "-n", ns) is None
    history = helm(kube, "history", release, "-n", ns, "-o", "json").stdout
    assert [r["status"] for r in json.loads(history)][-1] == "deployed"

    # Uninstall keeps the CRDs (and so every ComputeProvider and RegionPool) ...
    helm(kube, "uninstall", release, "-n", ns)
    assert get(kube, "deployment", fullname, "-n", ns) is None
    assert get(kube, "clusterrole", fullname) is None
    assert get(kube, "crd", "computeproviders.fedcompute.io")
    assert get(kube, "crd", "regionpools.fedcompute.io")

    # ... which a re-install of the release adopts again; with keep off they go.
    helm(kube, "install", release, str(CHART), "-n", ns, "--set", "crds.keep=false")
    crd = get(kube, "crd", "regionpools.fedcompute.io")
    assert crd is not None
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})
    helm(kube, "uninstall", release, "-n", ns)
    # Every one of them: a later test applying the CRDs to one still terminating would see
    # its apply succeed and the CRD vanish after it.
    names = [r.crd_name for r in crds.RESOURCES]
    wait_for("the CRDs to go", lambda: all(get(kube, "crd", name) is None for name in names))


# --- Pod Security ---------------------------------------------------------------------------


def pod_of(deployment: dict[str, Any], ns: str) -> dict[str, Any]:
    """The Pod the Deployment's ReplicaSet would create."""
    template_ = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{deployment['metadata']['name']}-pod",
            "namespace": ns,
            "labels": template_["metadata"]["labels"],
        },
        "spec": template_["spec"],
    }


@pytest.mark.parametrize("variant", sorted(VALUES))
def test_pod_passes_pod_security_restricted(kube: cluster.Cluster, variant: str) -> None:
    enforce = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    ns = namespace(kube, f"psa-{variant}", enforce)
    docs = [d for d in yaml.safe_load_all(template("psa", ns, *VALUES[variant])) if d]
    (deployment,) = (d for d in docs if d["kind"] == "Deployment")
    # The Deployment draws no Pod Security warning ...
    result = kube.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(deployment), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr
    # ... and its Pod is admitted where "restricted" is enforced.
    pod = pod_of(deployment, ns)
    result = kube.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode == 0, result.stderr
    # The check is real: the same Pod without its container securityContext is refused.
    del pod["spec"]["containers"][0]["securityContext"]
    result = kube.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted' in result.stderr, result.stderr


# --- RBAC -------------------------------------------------------------------------------------

RELEASE = "fc-rbac"
RBAC_NS = "fc-rbac"
SA = f"system:serviceaccount:{RBAC_NS}:{RELEASE}-fedcompute"

# (verb, resource, namespace or "" for cluster scope)
ALLOWED = [
    *[
        (verb, f"{plural}.fedcompute.io", "")
        for plural in ("computeproviders", "regionpools")
        for verb in ("get", "list", "watch", "patch")
    ],
    ("patch", "computeproviders.fedcompute.io/status", ""),
    ("patch", "regionpools.fedcompute.io/status", ""),
    *[(verb, "nodes", "") for verb in ("get", "list", "watch", "create", "patch", "delete")],
    ("patch", "nodes/status", ""),
    *[
        (verb, "leases.coordination.k8s.io", "kube-node-lease")
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    ],
    ("create", "events", "default"),
    ("create", "events", RBAC_NS),
    ("get", "secrets", RBAC_NS),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("list", "namespaces", ""),
    ("watch", "namespaces", ""),
]
DENIED = [
    # Secrets: only one by one, only in its own namespace.
    ("get", "secrets", "default"),
    ("get", "secrets", "kube-system"),
    ("list", "secrets", RBAC_NS),
    ("watch", "secrets", RBAC_NS),
    ("create", "secrets", RBAC_NS),
    # The users' objects: never created, replaced or deleted.
    ("create", "computeproviders.fedcompute.io", ""),
    ("update", "computeproviders.fedcompute.io", ""),
    ("delete", "computeproviders.fedcompute.io", ""),
    ("delete", "regionpools.fedcompute.io", ""),
    ("update", "regionpools.fedcompute.io/status", ""),
    # Leases elsewhere, node updates, and all the rest.
    ("create", "leases.coordination.k8s.io", "default"),
    ("create", "leases.coordination.k8s.io", "kube-system"),
    ("update", "nodes", ""),
    ("create", "events", "kube-system"),
    ("create", "events.events.k8s.io", "default"),
    ("get", "pods", RBAC_NS),
    ("create", "pods", RBAC_NS),
    ("get", "configmaps", RBAC_NS),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("get", "namespaces", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "serviceaccounts", RBAC_NS),
    ("create", "serviceaccounts/token", RBAC_NS),
    ("create", "leases.coordination.k8s.io", RBAC_NS),
    ("*", "*", ""),
]


def can_i(kube: cluster.Cluster, verb: str, resource: str, ns: str) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={SA}"]
    # Cluster scope: no namespace at all, so only ClusterRoleBindings can answer yes.
    args += [f"--namespace={ns}"] if ns else ["--all-namespaces"]
    result = kube.kubectl(*args, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


@pytest.fixture(scope="module")
def rbac_release(kube: cluster.Cluster) -> Iterator[str]:
    # The CRDs are another release's business here (crds.enabled=false).
    c = kube
    c.kubectl("apply", "--server-side", "-f", "-", input=_crd_stream())
    names = [f"crd/{r.crd_name}" for r in crds.RESOURCES]
    c.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    helm(c, "install", RELEASE, str(CHART), "-n", RBAC_NS, "--create-namespace",
         "--set", "crds.enabled=false")  # fmt: skip
    yield RELEASE
    helm(c, "uninstall", RELEASE, "-n", RBAC_NS, check=False)


def _crd_stream() -> str:
    return crds.render_stream()


@pytest.mark.parametrize(("verb", "resource", "ns"), ALLOWED)
def test_service_account_may(
    kube: cluster.Cluster, rbac_release: str, verb: str, resource: str, ns: str
) -> None:
    assert can_i(kube, verb, resource, ns), f"{SA} may not {verb} {resource} in {ns or '*'}"


@pytest.mark.parametrize(("verb", "resource", "ns"), DENIED)
def test_service_account_may_not(
    kube: cluster.Cluster, rbac_release: str, verb: str, resource: str, ns: str
) -> None:
    assert not can_i(kube, verb, resource, ns), f"{SA} may {verb} {resource} in {ns or '*'}"


# Rules every authenticated user has (discovery, self reviews); not the chart's doing.
BUILTIN = re.compile(r"^(selfsubject\w+|\[/.*\]|\[\])")


def rules_in(kube: cluster.Cluster, ns: str) -> dict[str, set[str]]:
    """``kubectl auth can-i --list``: resource -> verbs, without the built-in rules."""
    out = kube.kubectl("auth", "can-i", "--list", f"--as={SA}", f"--namespace={ns}").stdout
    rules: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        resource, verbs = line.split()[0], line.split("[")[-1].rstrip("] ")
        if resource.startswith(("selfsubject", "[")) or BUILTIN.match(resource):
            continue
        names = line.split()[2] if line.split()[2].startswith("[") else ""
        key = resource + (f" {names}" if names not in ("", "[]") else "")
        rules.setdefault(key, set()).update(verbs.split())
    return rules


CLUSTER_RULES = {
    "computeproviders.fedcompute.io": {"get", "list", "watch", "patch"},
    "regionpools.fedcompute.io": {"get", "list", "watch", "patch"},
    "acceleratormodels.fedcompute.io": {"get", "list", "watch"},
    "computeproviders.fedcompute.io/status": {"patch"},
    "regionpools.fedcompute.io/status": {"patch"},
    "nodes": {"get", "list", "watch", "create", "patch", "delete"},
    "nodes/status": {"patch"},
    "customresourcedefinitions.apiextensions.k8s.io": {"list", "watch"},
    "namespaces": {"list", "watch"},
}


def test_service_account_has_exactly_these_rules(kube: cluster.Cluster, rbac_release: str) -> None:
    assert rules_in(kube, "kube-system") == CLUSTER_RULES
    assert rules_in(kube, RBAC_NS) == {
        **CLUSTER_RULES,
        "secrets": {"get"},
        "events": {"create"},
    }
    assert rules_in(kube, "default") == {**CLUSTER_RULES, "events": {"create"}}
    assert rules_in(kube, "kube-node-lease") == {
        **CLUSTER_RULES,
        "leases.coordination.k8s.io": {"get", "list", "watch", "create", "patch", "delete"},
    }


def test_election_rights_only_with_replicas(kube: cluster.Cluster, rbac_release: str) -> None:
    lease = "leases.coordination.k8s.io/fedcompute-fedcompute-ha"
    assert not can_i(kube, "get", lease, RBAC_NS)
    helm(kube, "upgrade", RELEASE, str(CHART), "-n", RBAC_NS, "--set", "crds.enabled=false",
         "-f", str(VALUES["ha"][0]))  # fmt: skip
    try:
        assert can_i(kube, "create", "leases.coordination.k8s.io", RBAC_NS)
        for verb in ("get", "update"):
            assert can_i(kube, verb, lease, RBAC_NS)
            assert not can_i(kube, verb, "leases.coordination.k8s.io/someone-else", RBAC_NS)
        for verb in ("delete", "patch", "list"):
            assert not can_i(kube, verb, lease, RBAC_NS)
        assert not can_i(kube, "create", "leases.coordination.k8s.io", "default")
    finally:
        helm(kube, "upgrade", RELEASE, str(CHART), "-n", RBAC_NS, "--reset-values",
             "--set", "crds.enabled=false")  # fmt: skip


# --- the operator at work under the chart's RBAC ---------------------------------------------


def service_account_kubeconfig(kube: cluster.Cluster, sa: str, ns: str) -> str:
    token = kube.kubectl("create", "token", sa, "-n", ns, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(kube.kubeconfig).read_text())
    ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "host",
                 "cluster": {"server": kube.server, "certificate-authority-data": ca}}
            ],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "host", "user": sa}}],
            "current-context": "sa",
        }
    )  # fmt: skip


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return {}


@pytest.mark.parametrize("mode", ["standalone", "peering"])
def test_operator_works_with_exactly_the_chart_rbac(
    kube: cluster.Cluster, rbac_release: str, tmp_path: Path, mode: str
) -> None:
    """Run ``fedcompute run`` with the chart ServiceAccount's token: no refusal anywhere.

    ``peering`` runs it as one of several replicas would, with the chart's values for two
    replicas: it must win the election Lease with the rights the chart grants.
    """
    suffix = uuid.uuid4().hex[:6]
    if mode == "peering":
        helm(kube, "upgrade", RELEASE, str(CHART), "-n", RBAC_NS, "--set", "crds.enabled=false",
             "-f", str(VALUES["ha"][0]))  # fmt: skip
        run_mode = ["--peering", "fedcompute-ha"]
    else:
        run_mode = ["--standalone"]
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text(service_account_kubeconfig(kube, f"{RELEASE}-fedcompute", RBAC_NS))
    member = kube.issue_kubeconfig(f"member-reader-{suffix}")  # a user with no rights at all
    provider_labels = {"example.com/team": "research"}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"member-{suffix}", "namespace": RBAC_NS},
            "data": {"kubeconfig": base64.b64encode(member.encode()).decode()},
        },
        {
            "apiVersion": "fedcompute.io/v1alpha1",
            "kind": "ComputeProvider",
            "metadata": {"name": f"static-{suffix}", "labels": provider_labels},
            "spec": {
                "region": f"region-{suffix}",
                "source": {"static": {"nodeCount": 1, "resources": {"cpu": "64"}}},
            },
        },
        {
            "apiVersion": "fedcompute.io/v1alpha1",
            "kind": "ComputeProvider",
            "metadata": {"name": f"member-{suffix}"},
            "spec": {
                "region": f"region-{suffix}",
                "source": {"kubernetes": {"kubeconfigSecretRef": {"name": f"member-{suffix}"}}},
            },
        },
        {
            "apiVersion": "fedcompute.io/v1alpha1",
            "kind": "RegionPool",
            "metadata": {"name": f"pool-{suffix}", "labels": {"example.com/env": "test"}},
            "spec": {"regions": [f"region-{suffix}"], "minReadyProviders": 1},
        },
    ]
    owned = [f"{o['kind'].lower()}/{o['metadata']['name']}" for o in objects[1:]]
    stream = "\n---\n".join(json.dumps(o) for o in objects)
    kube.kubectl("apply", "--server-side", f"--field-manager={MANAGER}", "-f", "-", input=stream)
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "fedcompute", "run",
                "--kubeconfig", str(kubeconfig),
                "--namespace", RBAC_NS,
                *run_mode,
                "--metrics-port", str(cluster.free_port()),
            ],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "POD_NAME": f"replica-{suffix}"},
        )  # fmt: skip
    try:
        provider = f"static-{suffix}"

        def ready_pool() -> dict[str, Any] | None:
            assert process.poll() is None, log_path.read_text()
            pool = get(kube, "regionpool", f"pool-{suffix}")
            return pool if condition(pool, "Ready").get("status") == "True" else None

        wait_for("the pool to be Ready", ready_pool, timeout=90)
        if mode == "peering":
            lease = get(kube, "lease", "fedcompute-fedcompute-ha", "-n", RBAC_NS)
            assert lease is not None
            assert lease["spec"]["holderIdentity"] == f"replica-{suffix}"
        selector = f"fedcompute.io/provider={provider}"
        nodes = wait_for(
            "the static provider's virtual node",
            lambda: (get(kube, "nodes", "-l", selector) or {}).get("items"),
        )
        node_name = nodes[0]["metadata"]["name"]
        wait_for("its lease", lambda: get(kube, "lease", node_name, "-n", "kube-node-lease"))

        # The member provider: its Secret was read (the member then refuses the user).
        def refused() -> dict[str, Any] | None:
            c = condition(get(kube, "computeprovider", f"member-{suffix}"), "Collected")
            return c if c.get("status") == "False" else None

        collected = wait_for("the member collection to fail", refused, timeout=60)
        assert collected["reason"] == "Unauthorized", collected

        # GitOps: users' spec and labels untouched; the operator owns status and finalizers.
        for kind, name, labels in (
            ("computeprovider", provider, provider_labels),
            ("regionpool", f"pool-{suffix}", {"example.com/env": "test"}),
        ):
            obj = get(kube, kind, name, "--show-managed-fields")
            assert obj is not None
            assert obj["metadata"]["labels"] == labels
            assert obj["metadata"]["generation"] == 1
            for entry in obj["metadata"]["managedFields"]:
                if entry["manager"] == MANAGER:
                    continue
                fields = entry.get("fieldsV1", {})
                if entry.get("subresource") == "status":
                    assert set(fields) <= {"f:status"}, entry
                else:
                    assert set(fields) <= {"f:metadata"}, entry
                    assert set(fields.get("f:metadata", {})) <= {"f:finalizers"}, entry

        # Deleting the objects: finalizers, node and lease removal also work.
        kube.kubectl("delete", *owned, "--wait=false")
        for ref in owned:
            wait_for(f"{ref} to go", lambda ref=ref: get(kube, ref) is None)
        wait_for("the node to go", lambda: get(kube, "node", node_name) is None)
        wait_for("the lease to go", lambda: get(kube, "lease", node_name, "-n", "kube-node-lease")
                 is None)  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for ref in owned:  # after a failure: nothing may stay behind with a finalizer
            kube.kubectl("patch", ref, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                         check=False)  # fmt: skip
            kube.kubectl("delete", ref, "--ignore-not-found", "--wait=false", check=False)
        kube.kubectl("delete", "secret", f"member-{suffix}", "-n", RBAC_NS, check=False)
        if mode == "peering":
            helm(kube, "upgrade", RELEASE, str(CHART), "-n", RBAC_NS, "--reset-values",
                 "--set", "crds.enabled=false")  # fmt: skip
    log = log_path.read_text(errors="replace")
    # The member's own 403 (the test's user may not read it) is logged as its collection
    # failure; every other refusal would be the host refusing the chart's RBAC.
    refusals = [
        line
        for line in log.splitlines()
        if re.search(r"\b(403|Forbidden|forbidden)\b", line) and "the member API server" not in line
    ]
    assert not refusals, "the operator was refused:\n" + "\n".join(refusals[:20])
