"""The local control plane harness against itself: real etcd, kube-apiserver and kwok."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fedcompute.local import binaries, cluster, processes
from tests.conftest import PREFIX, MemberFactory, start_cluster

pytestmark = pytest.mark.integration


def _get(c: cluster.Cluster, path: str) -> tuple[int, str]:
    pki = c.directory / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    with urllib.request.urlopen(c.server + path, context=ctx, timeout=10) as r:  # noqa: S310
        return r.status, r.read().decode()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_version_readyz_and_custom_resources(host: cluster.Cluster) -> None:
    status, body = _get(host, "/version")
    assert status == 200
    version = json.loads(body)
    assert version["gitVersion"].startswith("v1.34."), version
    assert (version["major"], version["minor"]) == ("1", "34")
    assert _get(host, "/readyz") == (200, "ok")

    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.throwaway.example.com"},
        "spec": {
            "group": "throwaway.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    host.kubectl("apply", "-f", "-", input=json.dumps(crd))
    host.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.throwaway.example.com"
    )
    widget = {
        "apiVersion": "throwaway.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": {"size": 3},
    }
    host.kubectl("apply", "-f", "-", input=json.dumps(widget))
    got = json.loads(host.kubectl("get", "widget", "w1", "-n", "default", "-o", "json").stdout)
    assert got["spec"] == {"size": 3}
    bad = host.kubectl(
        "apply", "-f", "-", input=json.dumps({**widget, "spec": {"size": 0}}), check=False
    )
    assert bad.returncode != 0 and "spec.size" in bad.stderr


def test_two_clusters_are_isolated(host: cluster.Cluster, member_cluster: MemberFactory) -> None:
    other = member_cluster("iso")
    assert other.server != host.server
    name = f"only-in-member-{int(time.time())}"
    other.kubectl("create", "configmap", name, "-n", "default", "--from-literal=k=v")
    assert other.kubectl("get", "configmap", name, "-n", "default", check=False).returncode == 0
    absent = host.kubectl("get", "configmap", name, "-n", "default", check=False)
    assert absent.returncode != 0 and "NotFound" in absent.stderr


def test_kwok_nodes_carry_capacity_and_run_pods(member_cluster: MemberFactory) -> None:
    member = member_cluster("gpu", nodes=5, node_gpus=8, gpu_model="NVIDIA-H100-80GB-HBM3")
    with member.api_client() as api:
        core = client.CoreV1Api(api)
        nodes = core.list_node().items
        assert len(nodes) == 5
        for node in nodes:
            ready = [c for c in node.status.conditions if c.type == "Ready"]
            assert ready and ready[0].status == "True"
            assert node.status.capacity["nvidia.com/gpu"] == "8"
            assert node.status.allocatable["nvidia.com/gpu"] == "8"
            assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "trainer", "namespace": "default"},
            "spec": {
                "nodeName": nodes[2].metadata.name,
                "containers": [
                    {
                        "name": "main",
                        "image": "trainer:latest",
                        "resources": {
                            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"},
                            "limits": {"nvidia.com/gpu": "2"},
                        },
                    }
                ],
            },
        }
        core.create_namespaced_pod("default", pod)
        deadline = time.monotonic() + 30
        phase = None
        while time.monotonic() < deadline:
            phase = core.read_namespaced_pod("trainer", "default").status.phase
            if phase == "Running":
                break
            time.sleep(0.2)
        assert phase == "Running"


def test_nodes_can_be_added_and_removed_later(member_cluster: MemberFactory) -> None:
    member = member_cluster("grow", nodes=1)
    added = member.add_nodes(2, cpu="8", memory="32Gi", gpus=4)
    assert len(member.node_names()) == 3
    member.remove_nodes(added[:1])
    assert len(member.node_names()) == 2
    assert added[0] not in member.node_names()


def _component_pids(c: cluster.Cluster) -> list[int]:
    st = c.state()
    return [st["supervisor_pid"], *st["children"].values()]


def test_down_leaves_no_process_and_no_port() -> None:
    c = start_cluster("down", nodes=1)
    pids = _component_pids(c)
    ports = list(c.spec["ports"].values())
    assert len(pids) == 4  # supervisor, etcd, kube-apiserver, kwok
    assert all(processes.is_ours(p, str(c.directory)) for p in pids)
    assert _port_open(c.port)
    assert cluster.down(c.name)
    assert not any(processes.cmdline(p) for p in pids)
    assert not any(_port_open(p) for p in ports)
    assert not c.directory.exists()
    assert processes.pids_with_marker(str(c.directory)) == []


def test_cluster_whose_owner_was_killed_is_reaped_by_next_up() -> None:
    c = start_cluster("orphan", nodes=1)
    pids = _component_pids(c)
    ports = list(c.spec["ports"].values())
    os.kill(c.state()["supervisor_pid"], signal.SIGKILL)
    other = start_cluster("after-orphan")
    try:
        assert not c.directory.exists()
        assert not any(processes.cmdline(p) for p in pids)
        assert not any(_port_open(p) for p in ports)
        assert c.name not in [x.name for x in cluster.list_clusters()]
    finally:
        cluster.down(other.name)


def test_rbac_is_enforced(host: cluster.Cluster, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.kubeconfig"
    stranger.write_text(host.issue_kubeconfig("stranger", groups=("developers",)))
    from kubernetes import config

    with config.new_client_from_config(str(stranger)) as api:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).list_namespaced_config_map("default")
        assert denied.value.status == 403
    with host.api_client() as api:
        assert client.CoreV1Api(api).list_namespaced_config_map("default") is not None
    can_i = host.kubectl("auth", "can-i", "list", "secrets", "--as=stranger", check=False)
    assert can_i.stdout.strip() == "no"


def test_cli_round_trip() -> None:
    name = f"{PREFIX}-cli"
    exe = [sys.executable, "-m", "fedcompute"]
    up = subprocess.run([*exe, "local", "up", name], capture_output=True, text=True, check=True)
    path = up.stdout.strip()
    try:
        assert path.endswith("/kubeconfig")
        again = subprocess.run(
            [*exe, "local", "kubeconfig", name], capture_output=True, text=True, check=True
        )
        assert again.stdout.strip() == path
        kubeconfig = yaml.safe_load(Path(path).read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
        readyz = subprocess.run(
            [str(binaries.kubectl()), "--kubeconfig", path, "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert readyz.stdout.strip() == "ok"
        listing = subprocess.run(
            [*exe, "local", "list", "-o", "json"], capture_output=True, text=True, check=True
        )
        assert name in [c["name"] for c in json.loads(listing.stdout)]
    finally:
        subprocess.run([*exe, "local", "down", name], capture_output=True, check=True)
    gone = subprocess.run(
        [*exe, "local", "kubeconfig", name], capture_output=True, text=True, check=False
    )
    assert gone.returncode == 1


def test_state_lives_in_the_cache_dir_not_the_repo(host: cluster.Cluster) -> None:
    repo = Path(__file__).resolve().parents[2]
    assert repo not in host.directory.parents
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(host.server + "/readyz", timeout=5)  # noqa: S310 - untrusted CA
