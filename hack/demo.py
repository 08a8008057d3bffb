"""`make demo`: a local federated platform, pooled and reported, left running.

1. a host cluster and two member clusters (real etcd + kube-apiserver; kwok GPU nodes);
2. the CRDs and the national-platform example (examples/national-platform);
3. the two member clusters wired into the example's member providers through kubeconfig
   Secrets for a read-only identity (list nodes and pods, nothing else);
4. `fedcompute run` started locally in the background against the host cluster;
5. a few workloads on the members, then `fedcompute capacity` showing the pooled GPUs.

Everything keeps running; `make demo-down` stops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from fedcompute.local import binaries, cluster, paths, processes

REPO = Path(__file__).resolve().parents[1]
HOST = "fc-demo-host"
MEMBERS = {
    # cluster name: (example Secret, Secret key, nodes, gpus per node, GPU model)
    "fc-demo-hangzhou": ("hangzhou-industry-kubeconfig", "kubeconfig", 4, 8, "NVIDIA-L40S"),
    "fc-demo-beijing": ("beijing-ai-lab-kubeconfig", "kubeconfig", 3, 8, "NVIDIA-H100-80GB-HBM3"),
}
STATE = paths.cache_root() / "demo"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def stop() -> None:
    """Stop the demo's operator and clusters (make demo-down)."""
    pid_file = STATE / "operator.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if "fedcompute" in processes.cmdline(pid):
            os.kill(pid, signal.SIGTERM)
            say(f"stopped the operator (pid {pid})")
        pid_file.unlink()
    for name in [HOST, *MEMBERS]:
        if cluster.down(name):
            say(f"stopped cluster {name}")


def member_workloads(member: cluster.Cluster) -> None:
    """A few running jobs, so the report shows allocated GPUs."""
    nodes = member.node_names()
    for i, node in enumerate(nodes[:2]):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"train-{i}", "namespace": "default"},
            "spec": {
                "nodeName": node,
                "containers": [
                    {
                        "name": "trainer",
                        "image": "registry.example.cn/llm-trainer:1.0",
                        "resources": {
                            "requests": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": "4"},
                            "limits": {"nvidia.com/gpu": "4"},
                        },
                    }
                ],
            },
        }
        member.kubectl("apply", "-f", "-", input=json.dumps(pod))


def main() -> int:
    if sys.argv[1:] == ["down"]:
        stop()
        return 0
    STATE.mkdir(parents=True, exist_ok=True)
    stop()  # a fresh demo each time

    say("starting the host cluster and two member clusters (kwok GPU nodes)")
    host = cluster.up(HOST)
    members: dict[str, cluster.Cluster] = {}
    for name, (_, _, count, gpus, model) in MEMBERS.items():
        members[name] = cluster.up(name, with_kwok=True)
        members[name].add_nodes(
            count,
            cluster.NodeShape(cpu="64", memory="512Gi", gpus=gpus, gpu_model=model),
            labels={"nvidia.com/gpu.present": "true"},
        )
        members[name].add_nodes(1, cluster.NodeShape(cpu="32", memory="128Gi"))  # CPU only
        member_workloads(members[name])

    say("installing the CRDs and the national-platform example")
    host.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    host.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    host.kubectl("apply", "-f", str(REPO / "examples" / "national-platform"))

    say("wiring the members in: read-only kubeconfig Secrets")
    for name, (secret, key, *_rest) in MEMBERS.items():
        kubeconfig = members[name].reader_kubeconfig()
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": "fedcompute-system"},
            "stringData": {key: kubeconfig},
        }
        host.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

    metrics_port, health_port = cluster.free_port(), cluster.free_port()
    log_path = STATE / "operator.log"
    say(f"starting the operator (log: {log_path})")
    with log_path.open("ab") as log:
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedcompute",
                "run",
                "--kubeconfig",
                str(host.kubeconfig),
                "--namespace",
                "fedcompute-system",
                "--metrics-port",
                str(metrics_port),
                "--health-port",
                str(health_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (STATE / "operator.pid").write_text(str(operator.pid))

    say("waiting for the members' capacity to be collected")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        out = host.kubectl(
            "get", "computeproviders", "-o", "jsonpath={.items[*].status.conditions[0].status}"
        ).stdout.split()
        if out.count("True") >= 8:
            break
        if operator.poll() is not None:
            print(log_path.read_text()[-3000:])
            return 1
        time.sleep(1)
    time.sleep(1)

    fedcompute = [sys.executable, "-m", "fedcompute"]
    subprocess.run([*fedcompute, "capacity", "--kubeconfig", str(host.kubeconfig)], check=False)
    kubectl = binaries.kubectl()
    print(
        f"""
fedcompute is running: a host cluster pooling static providers and two live member clusters.
The provider guian-hub-cluster keeps its placeholder kubeconfig on purpose: it shows how a
provider that cannot be collected is reported (Ready=False, reason InvalidKubeconfig).

Look around:
  export KUBECONFIG={host.kubeconfig}
  {kubectl} get computeproviders,regionpools
  {kubectl} get nodes -L fedcompute.io/pool,fedcompute.io/accelerator
  .venv/bin/fedcompute capacity --watch
  curl -s localhost:{metrics_port}/metrics | grep ^fedcompute_pool_available
  tail -f {log_path}

Grow a member and watch its pool follow within one collection interval (the beijing
provider counts only nodes labelled nvidia.com/gpu.present=true):
  .venv/bin/fedcompute local nodes add fc-demo-beijing --count 2 --node-gpus 8 \\
      --gpu-model NVIDIA-H100-80GB-HBM3 --label nvidia.com/gpu.present=true

Stop everything:
  make demo-down
"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
