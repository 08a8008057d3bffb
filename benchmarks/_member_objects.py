"""The objects of one big member cluster, for benchmarks/collection.py, and a raw client
that creates them fast.

Layout (``N`` nodes, ``P`` pods, ``S`` ResourceSlices, ``D`` DRA nodes, ``C`` claims):

* nodes ``node-00000`` .. : the first ``D`` publish their GPUs through DRA (no extended
  resource; one ``gpu.nvidia.com`` pool each); of the others every tenth is a Huawei
  Ascend node (``huawei.com/Ascend910: 8``, ``huawei.com/npu.chip.name: 910B3``), the
  rest NVIDIA device-plugin nodes (``nvidia.com/gpu: 8``,
  ``nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3``). Every node has 8 accelerators and
  is Ready (the status is sent at create time: the apiserver keeps a Node's status on
  create, which :func:`create_all` checks);
* pods ``job-000000`` .. in namespaces ``bench-0`` .. ``bench-9``: pod ``k`` is bound to
  node ``k % N`` (``spec.nodeName`` at creation; no kubelet, so they stay Pending), two
  containers requesting cpu and memory; the first six pods of a device-plugin NVIDIA
  node, and the first four of an Ascend node, also request one device;
* ResourceSlices: one ``gpu.nvidia.com`` slice per DRA node (8 devices with the NVIDIA
  driver's attributes: ``productName``, ``type``, ``uuid``, ...), and the remaining
  ``S - D`` are NIC slices of driver ``dra.net`` (8 devices each, not accelerators: read
  and skipped, as on a real cluster with DraNet), spread over the DRA nodes;
* DeviceClasses ``gpu.nvidia.com`` and ``dra.net``; ResourceClaims ``claim-00000`` .. in
  ``bench-0``, claim ``c`` allocated (``status.allocation``, through the status
  subresource) 1, 2, 4 or 8 GPUs of DRA node ``c % D``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

Json = dict[str, Any]

NAMESPACES = 10
H100_LABEL = "NVIDIA-H100-80GB-HBM3"
H100_NVML = "NVIDIA H100 80GB HBM3"
ASCEND_CHIP = "910B3"
GPU_DRIVER = "gpu.nvidia.com"
NIC_DRIVER = "dra.net"
DEVICES_PER_NODE = 8
RESOURCE_API = "/apis/resource.k8s.io/v1"
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Layout:
    """Sizes of the member cluster (see the module docstring)."""

    nodes: int
    pods: int
    slices: int
    dra_nodes: int
    claims: int

    @classmethod
    def of(
        cls, nodes: int, pods: int, slices: int, dra_nodes: int | None, claims: int | None
    ) -> Layout:
        d = min(slices, nodes) // 2 if dra_nodes is None else dra_nodes
        d = max(0, min(d, nodes, slices))
        if slices > d and d == 0:
            d = min(1, nodes)
        c = d // 2 if claims is None else claims
        return cls(nodes, pods, slices, d, c if d else 0)

    def node_name(self, i: int) -> str:
        return f"node-{i:05d}"

    def kind(self, i: int) -> str:
        """``dra``, ``ascend`` or ``nvidia`` (device plugin)."""
        if i < self.dra_nodes:
            return "dra"
        return "ascend" if i % 10 == 9 else "nvidia"

    def pod_node(self, k: int) -> tuple[int, int]:
        """Node index and slot (how many pods came before it on that node) of pod ``k``."""
        return k % self.nodes, k // self.nodes

    def claim_devices(self, c: int) -> tuple[int, int]:
        """DRA node index and GPU count of claim ``c``."""
        return c % self.dra_nodes, 1 << (c % 4)


def pod_device(layout: Layout, k: int) -> str | None:
    """The extended resource pod ``k`` requests one of, if any."""
    node, slot = layout.pod_node(k)
    kind = layout.kind(node)
    if kind == "nvidia" and slot < 6:
        return "nvidia.com/gpu"
    if kind == "ascend" and slot < 4:
        return "huawei.com/Ascend910"
    return None


# --- bodies -----------------------------------------------------------------------------------


def namespace(name: str) -> Json:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def node(layout: Layout, i: int) -> Json:
    name = layout.node_name(i)
    kind = layout.kind(i)
    resources = {
        "cpu": "192",
        "memory": "2113536Mi",
        "pods": "110",
        "ephemeral-storage": "3750Gi",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    allocatable = dict(resources, cpu="190", memory="2080000Mi", **{"ephemeral-storage": "3500Gi"})
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "gpu-8x",
        "topology.kubernetes.io/region": "region-1",
        "topology.kubernetes.io/zone": f"zone-{i % 3}",
        "rack": f"rack-{i // 32:04d}",
    }
    taints: list[Json] = []
    if kind == "ascend":
        resources["huawei.com/Ascend910"] = str(DEVICES_PER_NODE)
        allocatable["huawei.com/Ascend910"] = str(DEVICES_PER_NODE)
        labels.update(
            {
                "huawei.com/npu.chip.name": ASCEND_CHIP,
                "node.kubernetes.io/npu.chip.name": ASCEND_CHIP,
                "accelerator": "huawei-Ascend910",
            }
        )
        taints.append({"key": "huawei.com/Ascend910", "effect": "NoSchedule"})
    else:
        labels.update(
            {
                "nvidia.com/gpu.product": H100_LABEL,
                "nvidia.com/gpu.count": str(DEVICES_PER_NODE),
                "nvidia.com/gpu.memory": "81559",
                "nvidia.com/gpu.family": "hopper",
                "nvidia.com/cuda.driver.major": "550",
                "nvidia.com/gpu.present": "true",
            }
        )
        taints.append({"key": "nvidia.com/gpu", "effect": "NoSchedule"})
        if kind == "nvidia":
            resources["nvidia.com/gpu"] = str(DEVICES_PER_NODE)
            allocatable["nvidia.com/gpu"] = str(DEVICES_PER_NODE)
    stamp = "2025-01-01T00:00:00Z"
    conditions = [
        {
            "type": t,
            "status": "False",
            "reason": f"KubeletHasNo{t}" if t != "PIDPressure" else "KubeletHasSufficientPID",
            "message": "ok",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    images = [
        {"names": [f"registry.example.com/team/image-{j}@sha256:{j:064x}"], "sizeBytes": 10**9 + j}
        for j in range(8)
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": f"10.{i // 256 % 256}.{i % 256}.0/24",
            "providerID": f"bench://{name}",
            "taints": taints,
        },
        "status": {
            "capacity": resources,
            "allocatable": allocatable,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": f"172.16.{i // 256 % 256}.{i % 256}"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"{i:032x}",
                "systemUUID": f"{i:08x}-0000-0000-0000-000000000000",
                "bootID": f"{i:08x}-1111-1111-1111-111111111111",
                "kernelVersion": "6.8.0-45-generic",
                "osImage": "Ubuntu 22.04.4 LTS",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": "v1.34.0",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": images,
        },
    }


def pod(layout: Layout, k: int) -> Json:
    index, slot = layout.pod_node(k)
    ns = f"bench-{k % NAMESPACES}"
    device = pod_device(layout, k)
    requests = {"cpu": "8", "memory": "64Gi"}
    limits = {"memory": "64Gi"}
    if device:
        requests[device] = "1"
        limits[device] = "1"
    app = f"train-{k // 40:05d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"job-{k:06d}",
            "namespace": ns,
            "labels": {
                "app": app,
                "team": f"team-{k % 17}",
                "batch.kubernetes.io/job-name": app,
                "batch.kubernetes.io/controller-uid": f"{k // 40:08x}-aaaa-bbbb-cccc-dddddddddddd",
            },
            "annotations": {"example.com/owner": f"user-{k % 97}@example.com"},
        },
        "spec": {
            "nodeName": layout.node_name(index),
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                    "command": ["torchrun"],
                    "args": ["--nproc-per-node=1", "/workspace/train.py", f"--shard={slot}"],
                    "env": [
                        {"name": "NCCL_DEBUG", "value": "WARN"},
                        {"name": "RANK", "value": str(slot)},
                        {"name": "MASTER_ADDR", "value": f"{app}-0.{app}"},
                        {"name": "MASTER_PORT", "value": "29500"},
                    ],
                    "ports": [{"containerPort": 29500, "name": "dist"}],
                    "resources": {"requests": requests, "limits": limits},
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "shm", "mountPath": "/dev/shm"},
                    ],
                },
                {
                    "name": "metrics",
                    "image": "registry.example.com/metrics-agent:1.4.2",
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "200m", "memory": "128Mi"},
                    },
                },
            ],
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"},
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
            ],
        },
    }


def device_classes() -> list[Json]:
    return [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": driver},
            "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{driver}'"}}]},
        }
        for driver in (GPU_DRIVER, NIC_DRIVER)
    ]


def _nic_slices_of(layout: Layout, node_index: int) -> int:
    """How many NIC slices DRA node ``node_index`` publishes (round robin)."""
    extra = layout.slices - layout.dra_nodes
    return extra // layout.dra_nodes + (1 if node_index < extra % layout.dra_nodes else 0)


def resource_slice(layout: Layout, j: int) -> Json:
    """Slice ``j``: GPU slices first (one per DRA node), then NIC slices."""
    if j < layout.dra_nodes:
        name = layout.node_name(j)
        devices = [
            {
                "name": f"gpu-{d}",
                "attributes": {
                    "type": {"string": "gpu"},
                    "productName": {"string": H100_NVML},
                    "brand": {"string": "Nvidia"},
                    "architecture": {"string": "Hopper"},
                    "uuid": {"string": f"GPU-{j:08x}-{d:04x}-0000-0000-000000000000"},
                    "index": {"int": d},
                    "minor": {"int": d},
                    "driverVersion": {"version": "550.54.15"},
                    "cudaDriverVersion": {"version": "12.4.0"},
                    "cudaComputeCapability": {"version": "9.0.0"},
                    "pcieBusID": {"string": f"0000:{0x18 + d:02x}:00.0"},
                },
                "capacity": {"memory": {"value": "81559Mi"}},
            }
            for d in range(DEVICES_PER_NODE)
        ]
        driver, pool, count, slice_name = GPU_DRIVER, name, 1, f"{name}-gpu"
    else:
        m = j - layout.dra_nodes
        index = m % layout.dra_nodes
        nth = m // layout.dra_nodes
        name = layout.node_name(index)
        devices = [
            {
                "name": f"nic-{nth}-{d}",
                "attributes": {
                    "dra.net/ifName": {"string": f"ens{nth}f{d}"},
                    "dra.net/rdma": {"bool": True},
                    "dra.net/pciAddress": {"string": f"0000:{0x40 + d:02x}:00.{nth % 8}"},
                    "dra.net/numaNode": {"int": d // 4},
                    "dra.net/mtu": {"int": 9000},
                },
            }
            for d in range(DEVICES_PER_NODE)
        ]
        driver, pool = NIC_DRIVER, name
        count, slice_name = _nic_slices_of(layout, index), f"{name}-nic-{nth}"
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": slice_name},
        "spec": {
            "driver": driver,
            "pool": {"name": pool, "generation": 1, "resourceSliceCount": count},
            "nodeName": name,
            "devices": devices,
        },
    }


def claim(layout: Layout, c: int) -> Json:
    _, count = layout.claim_devices(c)
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": f"claim-{c:05d}", "namespace": "bench-0"},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "gpus",
                        "exactly": {
                            "deviceClassName": GPU_DRIVER,
                            "allocationMode": "ExactCount",
                            "count": count,
                        },
                    }
                ]
            }
        },
    }


def claim_status(layout: Layout, c: int) -> Json:
    index, count = layout.claim_devices(c)
    name = layout.node_name(index)
    # Claims on one node take disjoint devices while they fit (c // D-th claim of a node
    # starts after the devices the earlier ones took), else overlap: counted once.
    start = sum(layout.claim_devices(e)[1] for e in range(index, c, layout.dra_nodes))
    first = start if start + count <= DEVICES_PER_NODE else 0
    return {
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": "gpus",
                            "driver": GPU_DRIVER,
                            "pool": name,
                            "device": f"gpu-{d}",
                        }
                        for d in range(first, first + count)
                    ]
                },
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [name]}
                            ]
                        }
                    ]
                },
            }
        }
    }


def expected(layout: Layout) -> Json:
    """Figures the operator should report: accelerators per vendor and in total, pods."""
    kinds = [layout.kind(i) for i in range(layout.nodes)]
    allocated = {"nvidia": 0, "ascend": 0}
    for k in range(layout.pods):
        device = pod_device(layout, k)
        if device == "nvidia.com/gpu":
            allocated["nvidia"] += 1
        elif device:
            allocated["ascend"] += 1
    busy: set[tuple[int, int]] = set()
    for c in range(layout.claims):
        results = claim_status(layout, c)["status"]["allocation"]["devices"]["results"]
        index = layout.claim_devices(c)[0]
        busy |= {(index, int(r["device"].split("-")[1])) for r in results}
    nvidia_nodes = sum(1 for k in kinds if k != "ascend")
    return {
        "nodes": layout.nodes,
        "pods": layout.pods,
        "NVIDIA": {"capacity": nvidia_nodes * 8, "allocated": allocated["nvidia"] + len(busy)},
        "Huawei": {"capacity": kinds.count("ascend") * 8, "allocated": allocated["ascend"]},
    }


# --- a raw client -----------------------------------------------------------------------------


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RawClient:
    """POST/PATCH/GET with JSON bodies over one urllib3 pool, client certificate auth."""

    def __init__(self, server: str, pki: Path, *, maxsize: int = 16) -> None:
        self.server = server.rstrip("/")
        self.pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=maxsize,
            block=True,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(pki / "ca.crt"),
            cert_file=str(pki / "admin.crt"),
            key_file=str(pki / "admin.key"),
            retries=False,
            timeout=urllib3.Timeout(connect=10, read=120),
        )

    def request(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        content_type: str = "application/json",
        query: str = "",
    ) -> bytes:
        url = self.server + path + (f"?{query}" if query else "")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        response = self.pool.request(method, url, body=data, headers=headers)
        if not 200 <= response.status < 300:
            raise ApiError(
                response.status, f"{method} {path}: {response.status} {response.data[:300]!r}"
            )
        return bytes(response.data)

    def get(self, path: str, query: str = "") -> Json:
        loaded: Json = json.loads(self.request("GET", path, query=query))
        return loaded

    def count(self, path: str) -> int:
        """Objects in a collection (one item plus the apiserver's remainingItemCount)."""
        page = self.get(path, "limit=1")
        meta = page.get("metadata") or {}
        return len(page.get("items") or []) + int(meta.get("remainingItemCount") or 0)

    def close(self) -> None:
        self.pool.clear()


def run_parallel(job: Callable[[int], object], count: int, threads: int) -> None:
    """Run ``job(0)`` .. ``job(count - 1)`` on ``threads`` threads (each builds its own
    body, so no list of bodies is held); the first failure is raised."""
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(job, range(count)):
            pass


def create_all(client: RawClient, layout: Layout, *, threads: int = 16) -> dict[str, float]:
    """Create every object of ``layout``; seconds per kind."""
    seconds: dict[str, float] = {}

    def timed(kind: str, job: Callable[[int], object], count: int) -> None:
        started = time.monotonic()
        run_parallel(job, count, threads)
        seconds[kind] = time.monotonic() - started

    timed(
        "namespaces",
        lambda n: client.request("POST", "/api/v1/namespaces", namespace(f"bench-{n}")),
        NAMESPACES,
    )
    timed("nodes", lambda i: client.request("POST", "/api/v1/nodes", node(layout, i)), layout.nodes)
    kept = client.get(f"/api/v1/nodes/{layout.node_name(0)}")["status"]
    if not any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in kept.get("conditions", [])
    ) or not kept.get("allocatable"):
        raise RuntimeError("the apiserver dropped the Node status sent at create time")

    def one_pod(k: int) -> None:
        body = pod(layout, k)
        client.request("POST", f"/api/v1/namespaces/{body['metadata']['namespace']}/pods", body)

    timed("pods", one_pod, layout.pods)
    classes = device_classes()
    timed(
        "deviceclasses",
        lambda n: client.request("POST", f"{RESOURCE_API}/deviceclasses", classes[n]),
        len(classes),
    )
    timed(
        "resourceslices",
        lambda j: client.request(
            "POST", f"{RESOURCE_API}/resourceslices", resource_slice(layout, j)
        ),
        layout.slices,
    )
    claims_path = f"{RESOURCE_API}/namespaces/bench-0/resourceclaims"

    def one_claim(c: int) -> None:
        client.request("POST", claims_path, claim(layout, c))
        client.request(
            "PATCH",
            f"{claims_path}/claim-{c:05d}/status",
            claim_status(layout, c),
            content_type=MERGE,
        )

    timed("resourceclaims", one_claim, layout.claims)
    return seconds
