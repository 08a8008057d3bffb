"""Start, find, stop and reap local clusters; add and remove their simulated nodes.

The public surface is :func:`up`, :func:`get`, :func:`list_clusters`, :func:`down`,
:func:`down_all` and the :class:`Cluster` handle, used alike by ``fedcompute local``
and the test fixtures.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fedcompute.kube import members
from fedcompute.local import binaries, paths, pki, processes
from fedcompute.local import state as statefile

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"

# kube-controller-manager runs only these two controllers (nothing else they need has to
# run: the node lifecycle controller watches Nodes, Leases, Pods and DaemonSets itself,
# the garbage collector discovers every resource itself).
CONTROLLERS = ("nodelifecycle", "garbagecollector")
# Kubernetes 1.34's own defaults, from the pinned module: node-monitor-grace-period and
# node-startup-grace-period in pkg/controller/nodelifecycle/config/v1alpha1/defaults.go,
# node-monitor-period in k8s.io/cloud-provider config/v1alpha1/defaults.go.
NODE_MONITOR_GRACE_PERIOD = "50s"
NODE_MONITOR_PERIOD = "5s"
NODE_STARTUP_GRACE_PERIOD = "60s"
# The controller manager's own user; the bootstrap RBAC role of that name only lets it
# read and watch (it expects per-controller service-account credentials for writes), so
# with one shared client the certificate also carries system:masters.
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
CONTROLLER_MANAGER_GROUPS = ("system:masters",)

_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ClusterError(RuntimeError):
    """A local cluster could not be started, found or changed."""


@dataclass(frozen=True)
class NodeShape:
    """Capacity of simulated nodes."""

    cpu: str = "32"
    memory: str = "256Gi"
    gpus: int = 0
    gpu_model: str = "NVIDIA-A100-SXM4-80GB"
    pods: int = 110


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def duration_seconds(text: str) -> float:
    """Seconds in a Go duration such as ``50s`` or ``1m30s``, the form the controller
    manager's flags take; ValueError for anything else."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 50s, 1m30s, 500ms)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig_text(name: str, server: str, ca: bytes, client: pki.KeyPair, user: str) -> str:
    """A self-contained kubeconfig (inline data only) for one user of a cluster."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True)
class Cluster:
    """Handle on a local cluster's state directory."""

    name: str
    directory: Path

    @property
    def kubeconfig(self) -> Path:
        """Path of the admin kubeconfig (``system:masters``)."""
        return self.directory / "kubeconfig"

    @property
    def spec(self) -> dict[str, Any]:
        """What the cluster was started with (ports, server, binaries)."""
        return statefile.read(self.directory, name="cluster.json")

    @property
    def server(self) -> str:
        """The API server's URL."""
        return str(self.spec["server"])

    @property
    def port(self) -> int:
        """The API server's port on 127.0.0.1."""
        return int(self.spec["ports"]["apiserver"])

    @property
    def has_kwok(self) -> bool:
        """Whether simulated nodes are available on this cluster."""
        return bool(self.spec.get("binaries", {}).get("kwok"))

    @property
    def controller_manager(self) -> dict[str, Any] | None:
        """How the controller manager runs (``nodeMonitorGracePeriod`` and the other
        timings, controllers, user), or None when the cluster has none."""
        found = self.spec.get("controllerManager")
        return found if isinstance(found, dict) else None

    def state(self) -> dict[str, Any]:
        """The supervisor's latest report."""
        return statefile.read(self.directory)

    def alive(self) -> bool:
        """Whether the cluster's supervisor is still running."""
        pid = self.state().get("supervisor_pid")
        return processes.is_ours(pid, str(self.directory))

    def api_client(self) -> ApiClient:
        """A new Kubernetes API client for the admin user."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(str(self.kubeconfig))
        return client

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster."""
        cmd = [str(binaries.kubectl()), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def issue_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> str:
        """A kubeconfig for another user, signed by this cluster's CA (for RBAC tests)."""
        pki_dir = self.directory / "pki"
        ca = pki.KeyPair((pki_dir / "ca.crt").read_bytes(), (pki_dir / "ca.key").read_bytes())
        client = pki.make_client(ca, user, tuple(groups))
        return kubeconfig_text(self.name, self.server, ca.cert, client, user)

    def reader_kubeconfig(self, user: str = "fedcompute-reader") -> str:
        """A kubeconfig for ``user``, allowed only what collection needs
        (:data:`fedcompute.kube.members.READER_RULES`).

        The ClusterRole and binding are applied (idempotently) on this cluster first.
        """
        rbac = [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": user},
                "rules": [dict(rule) for rule in members.READER_RULES],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": user},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": user,
                },
                "subjects": [
                    {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
                ],
            },
        ]
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in rbac))
        return self.issue_kubeconfig(user)

    def logs(self, component: str, lines: int = 40) -> str:
        """The tail of one component's log (etcd, kube-apiserver, kube-controller-manager,
        kwok, supervisor)."""
        try:
            text = (self.directory / "logs" / f"{component}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # --- simulated nodes -------------------------------------------------------------

    def node_names(self) -> list[str]:
        """Names of the simulated (kwok) nodes, sorted."""
        from kubernetes import client

        with self.api_client() as api:
            nodes = client.CoreV1Api(api).list_node().items
        return sorted(
            n.metadata.name
            for n in nodes
            if (n.metadata.annotations or {}).get(KWOK_ANNOTATION) == "fake"
        )

    def add_nodes(
        self,
        count: int,
        shape: NodeShape | None = None,
        *,
        cpu: str | None = None,
        memory: str | None = None,
        gpus: int | None = None,
        gpu_model: str | None = None,
        labels: dict[str, str] | None = None,
        wait_ready: bool = True,
        timeout: float = 60.0,
    ) -> list[str]:
        """Create ``count`` simulated nodes; kwok makes them Ready and heartbeats them.

        The shape comes from ``shape`` with any of ``cpu``, ``memory``, ``gpus`` and
        ``gpu_model`` overriding it.
        """
        from kubernetes import client

        if not self.has_kwok:
            raise ClusterError(f"cluster {self.name} runs without kwok; cannot add nodes")
        base = shape or NodeShape()
        shape = NodeShape(
            cpu=cpu if cpu is not None else base.cpu,
            memory=memory if memory is not None else base.memory,
            gpus=gpus if gpus is not None else base.gpus,
            gpu_model=gpu_model if gpu_model is not None else base.gpu_model,
            pods=base.pods,
        )
        existing = set(self.node_names())
        names: list[str] = []
        index = 0
        while len(names) < count:
            candidate = f"{self.name}-node-{index}"
            if candidate not in existing:
                names.append(candidate)
            index += 1
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for name in names:
                core.create_node(_node_body(name, shape, labels or {}))
            if wait_ready:
                _wait_nodes_ready(core, names, timeout)
        return names

    def remove_nodes(self, names: Sequence[str]) -> None:
        """Delete simulated nodes (and their pods, as a kubelet would evict them)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for name in names:
                pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}")
                for pod in pods.items:
                    try:
                        core.delete_namespaced_pod(
                            pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                        )
                    except ApiException as exc:
                        if exc.status != 404:
                            raise
                try:
                    core.delete_node(name)
                except ApiException as exc:
                    if exc.status != 404:
                        raise


def _node_body(name: str, shape: NodeShape, extra_labels: dict[str, str]) -> dict[str, Any]:
    resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods)}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    if shape.gpus:
        resources[GPU_RESOURCE] = str(shape.gpus)
        labels[GPU_PRODUCT_LABEL] = shape.gpu_model
        labels["nvidia.com/gpu.count"] = str(shape.gpus)
    labels.update(extra_labels)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


def _wait_nodes_ready(core: Any, names: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for node in core.list_node().items:
            if node.metadata.name in pending and any(
                c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])
            ):
                pending.discard(node.metadata.name)
        if pending:
            time.sleep(0.2)
    if pending:
        raise ClusterError(f"nodes not Ready after {timeout:.0f}s: {sorted(pending)}")


# --- lifecycle ---------------------------------------------------------------------------


def _directory(name: str) -> Path:
    return paths.clusters_root() / name


def _remove(cluster: Cluster) -> None:
    """Stop whatever of the cluster still runs and delete its state."""
    marker = str(cluster.directory)
    st = cluster.state()
    pids = [st.get("supervisor_pid") or 0, *(st.get("children") or {}).values()]
    processes.terminate([int(p) for p in pids if p], marker, grace=20)
    # Orphans whose PIDs never reached state.json (a crash mid-start) still name the dir.
    leftovers = processes.pids_with_marker(marker + "/")
    leftovers += processes.pids_with_marker(marker + " ")
    processes.terminate(leftovers, marker, grace=5)
    shutil.rmtree(cluster.directory, ignore_errors=True)


def reap() -> list[str]:
    """Clean up every cluster whose supervisor died; return their names."""
    root = paths.clusters_root()
    reaped: list[str] = []
    if not root.is_dir():
        return reaped
    for directory in sorted(root.iterdir()):
        if not directory.is_dir():
            continue
        cluster = Cluster(directory.name, directory)
        st = cluster.state()
        if st.get("status") == "starting" and not st.get("supervisor_pid"):
            # Being created right now by another process: give it time.
            age = time.time() - directory.stat().st_mtime
            if age < 180:
                continue
        if not cluster.alive():
            _remove(cluster)
            reaped.append(directory.name)
    return reaped


def get(name: str) -> Cluster:
    """The running cluster called ``name``."""
    cluster = Cluster(name, _directory(name))
    if not cluster.directory.is_dir() or not cluster.alive():
        raise ClusterError(f"no running local cluster named {name!r}")
    return cluster


def list_clusters() -> list[Cluster]:
    """Running clusters, after reaping dead ones."""
    reap()
    root = paths.clusters_root()
    if not root.is_dir():
        return []
    return [
        Cluster(d.name, d)
        for d in sorted(root.iterdir())
        if d.is_dir() and Cluster(d.name, d).alive()
    ]


def up(
    name: str,
    *,
    nodes: int = 0,
    shape: NodeShape | None = None,
    owner_pid: int | None = None,
    with_kwok: bool | None = None,
    controller_manager: bool = False,
    node_monitor_grace_period: str | None = None,
    timeout: float = 180.0,
) -> Cluster:
    """Start cluster ``name`` (or return it if already running) and add ``nodes`` nodes.

    ``owner_pid`` ties the cluster's life to another process (the test runner): when it
    dies, the supervisor stops the cluster. ``with_kwok=None`` starts kwok whenever it
    can be had; ``True`` requires it. ``controller_manager`` adds kube-controller-manager
    with the node lifecycle controller and the garbage collector, so that Nodes whose
    Lease goes stale turn Ready=Unknown and get tainted, and owner references are
    honoured; ``node_monitor_grace_period`` (a Go duration, default Kubernetes' 50s) is
    how long a Node may go unrenewed before that.
    """
    if not NAME_RE.match(name):
        raise ClusterError(
            f"invalid cluster name {name!r}: use lowercase letters, digits and '-', at most 40"
        )
    manager = _controller_manager_config(controller_manager, node_monitor_grace_period)
    reap()
    directory = _directory(name)
    if directory.is_dir():
        existing = Cluster(name, directory)
        if existing.alive() and existing.state().get("status") == "ready":
            _check_same_controller_manager(existing, manager)
            if nodes > len(existing.node_names()):
                existing.add_nodes(nodes - len(existing.node_names()), shape)
            return existing
        _remove(existing)
    need_kwok = with_kwok or nodes > 0
    bins = {
        "kube-apiserver": str(binaries.kube_apiserver()),
        "etcd": str(binaries.etcd()),
    }
    kwok_path = binaries.kwok(required=bool(need_kwok)) if with_kwok is not False else None
    if kwok_path:
        bins["kwok"] = str(kwok_path)
    if manager is not None:
        bins["kube-controller-manager"] = str(binaries.kube_controller_manager())
    directory.mkdir(parents=True)
    cluster = Cluster(name, directory)
    try:
        _prepare(cluster, bins, owner_pid, manager)
        _spawn_supervisor(cluster)
        _wait_ready(cluster, timeout)
        if nodes:
            cluster.add_nodes(nodes, shape)
    except BaseException:
        _remove(cluster)
        raise
    return cluster


def _controller_manager_config(enabled: bool, grace: str | None) -> dict[str, Any] | None:
    """What the controller manager runs with (recorded in cluster.json), or None."""
    if not enabled:
        if grace is not None:
            raise ClusterError(
                "a node monitor grace period needs the controller manager (--controller-manager)"
            )
        return None
    grace = grace or NODE_MONITOR_GRACE_PERIOD
    try:
        seconds = duration_seconds(grace)
    except ValueError as exc:
        raise ClusterError(f"invalid node monitor grace period: {exc}") from None
    if seconds <= 0:
        raise ClusterError(f"node monitor grace period must be positive, not {grace!r}")
    return {
        "controllers": list(CONTROLLERS),
        "nodeMonitorGracePeriod": grace,
        "nodeMonitorPeriod": NODE_MONITOR_PERIOD,
        "nodeStartupGracePeriod": NODE_STARTUP_GRACE_PERIOD,
        "user": CONTROLLER_MANAGER_USER,
    }


def _check_same_controller_manager(existing: Cluster, wanted: dict[str, Any] | None) -> None:
    """Refuse to hand back a running cluster that lacks the controller manager asked for
    (asking for none accepts whatever runs)."""
    if wanted is None:
        return
    running = existing.controller_manager
    if running is None:
        raise ClusterError(
            f"cluster {existing.name} is running without a controller manager; stop it first"
        )
    if running["nodeMonitorGracePeriod"] != wanted["nodeMonitorGracePeriod"]:
        raise ClusterError(
            f"cluster {existing.name} is running with node monitor grace period "
            f"{running['nodeMonitorGracePeriod']}, not {wanted['nodeMonitorGracePeriod']}; "
            "stop it first"
        )


def _prepare(
    cluster: Cluster,
    bins: dict[str, str],
    owner_pid: int | None,
    manager: dict[str, Any] | None = None,
) -> None:
    d = cluster.directory
    ports = {"etcd": free_port(), "etcd_peer": free_port(), "apiserver": free_port()}
    if manager is not None:
        ports["controller_manager"] = free_port()
    server = f"https://127.0.0.1:{ports['apiserver']}"
    spec: dict[str, Any] = {
        "name": cluster.name,
        "server": server,
        "ports": ports,
        "binaries": bins,
        "created": time.time(),
        "owner_pid": owner_pid,
        "owner_marker": processes.cmdline(owner_pid) if owner_pid else "",
    }
    if manager is not None:
        spec["controllerManager"] = manager
    statefile.write(d, {"status": "starting"})
    statefile.write(d, spec, name="cluster.json")
    pki_dir = d / "pki"
    ca = pki.make_ca(f"fedcompute-local-{cluster.name}-ca")
    serving = pki.make_serving(
        ca, ("localhost", "127.0.0.1", "10.0.0.1", "kubernetes", "kubernetes.default.svc")
    )
    admin = pki.make_client(ca, "fedcompute-admin", ("system:masters",))
    sa_key, sa_pub = pki.make_signing_key()
    for fname, data in {
        "ca.crt": ca.cert,
        "ca.key": ca.key,
        "apiserver.crt": serving.cert,
        "apiserver.key": serving.key,
        "admin.crt": admin.cert,
        "admin.key": admin.key,
        "sa.key": sa_key,
        "sa.pub": sa_pub,
    }.items():
        pki.write_private(pki_dir / fname, data)
    kubeconfig = kubeconfig_text(cluster.name, server, ca.cert, admin, "fedcompute-admin")
    pki.write_private(d / "kubeconfig", kubeconfig.encode())
    if manager is not None:
        _prepare_controller_manager(d, server, cluster.name, ca)


def _prepare_controller_manager(d: Path, server: str, name: str, ca: pki.KeyPair) -> None:
    """The controller manager's client identity (its kubeconfig) and a serving
    certificate from the cluster's CA, so its /healthz can be checked with that CA."""
    user = CONTROLLER_MANAGER_USER
    client = pki.make_client(ca, user, CONTROLLER_MANAGER_GROUPS)
    serving = pki.make_serving(ca, ("localhost", "127.0.0.1"), common_name=user)
    pki.write_private(d / "pki" / "controller-manager.crt", serving.cert)
    pki.write_private(d / "pki" / "controller-manager.key", serving.key)
    text = kubeconfig_text(name, server, ca.cert, client, user)
    pki.write_private(d / "controller-manager.kubeconfig", text.encode())


def _spawn_supervisor(cluster: Cluster) -> None:
    logs = cluster.directory / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / "supervisor.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "fedcompute.local.supervisor", str(cluster.directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def _wait_ready(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = cluster.state()
        if st.get("status") == "ready":
            return
        if st.get("status") == "failed":
            break
        time.sleep(0.1)
    st = cluster.state()
    components = ["supervisor", "etcd", "kube-apiserver"]
    if cluster.controller_manager is not None:
        components.append("kube-controller-manager")
    details = "\n".join(f"--- {c} log:\n{cluster.logs(c, 15)}" for c in components)
    raise ClusterError(
        f"cluster {cluster.name} did not become ready "
        f"({st.get('status', 'unknown')}: {st.get('message', 'timed out')})\n{details}"
    )


def down(name: str) -> bool:
    """Stop cluster ``name`` and remove its state; False if there was none."""
    directory = _directory(name)
    if not directory.is_dir():
        return False
    _remove(Cluster(name, directory))
    return True


def down_all() -> list[str]:
    """Stop every local cluster; return their names."""
    root = paths.clusters_root()
    names = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    for name in names:
        down(name)
    return names


def describe(cluster: Cluster) -> dict[str, Any]:
    """A JSON-friendly summary for ``fedcompute local list -o json``."""
    return {
        "name": cluster.name,
        "server": cluster.server,
        "kubeconfig": str(cluster.kubeconfig),
        "status": cluster.state().get("status", "unknown"),
        "kwok": cluster.has_kwok,
        "controllerManager": cluster.controller_manager,
    }


def dumps(clusters: Sequence[Cluster]) -> str:
    """JSON for a list of clusters."""
    return json.dumps([describe(c) for c in clusters], indent=2)
