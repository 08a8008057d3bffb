"""``fedcompute capacity`` against a real kube-apiserver, with status written by the test.

The objects' status is written through the status subresource with realistic figures
(no operator runs), then the command is run as a separate process, as a user would.
The host cluster is shared with other tests: every object here has a unique name and
lives in regions of its own, comparisons look only at these objects, and everything is
deleted afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fedcompute.api import API_VERSION, GROUP, VERSION, crds
from fedcompute.local.cluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIELD_MANAGER = "fedcompute-tests"
SUFFIX = uuid.uuid4().hex[:6]
EAST = f"east-{SUFFIX}"
NORTH = f"north-{SUFFIX}"
AI_POOL = f"cap-ai-{SUFFIX}"
EMPTY_POOL = f"cap-empty-{SUFFIX}"
FRESH = f"cap-shanghai-{SUFFIX}"
STALE = f"cap-beijing-{SUFFIX}"
LOOSE = f"cap-chengdu-{SUFFIX}"
READERS = f"capacity-readers-{SUFFIX}"
ROLE = f"fedcompute-capacity-reader-{SUFFIX}"
T_OLD = "2025-06-01T08:00:00Z"
T_RECENT = "2025-06-01T11:59:30Z"
H100 = "NVIDIA-H100-80GB-HBM3"


# --- realistic status ----------------------------------------------------------------------


def _condition(type_: str, status: str, reason: str, message: str, at: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
        "observedGeneration": 1,
    }


def _provider(name: str, region: str, zone: str, cpu: str, memory: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ComputeProvider",
        "metadata": {"name": name},
        "spec": {
            "displayName": f"{zone.title()} site",
            "region": region,
            "zone": zone,
            "sector": "research",
            "source": {"static": {"nodeCount": 64, "resources": {"cpu": cpu, "memory": memory}}},
        },
    }


def _fresh_status() -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "conditions": [
            _condition("Ready", "True", "Fresh", "collected within staleAfter (3m)", T_OLD),
            _condition("Collected", "True", "Collected", "member cluster collected", T_OLD),
            _condition("Claimed", "True", "Claimed", f"claimed by RegionPool {AI_POOL}", T_OLD),
        ],
        "capacity": {"cpu": "7168", "memory": "128Ti", "nvidia.com/gpu": "512", "pods": "7040"},
        "allocatable": {"cpu": "6912", "memory": "126Ti", "nvidia.com/gpu": "496", "pods": "7040"},
        "allocated": {"cpu": "1500500m", "memory": "26Ti", "nvidia.com/gpu": "16", "pods": "212"},
        "available": {
            "cpu": "5411500m",
            "memory": "100Ti",
            "nvidia.com/gpu": "480",
            "pods": "6828",
        },
        "accelerators": [
            {
                "model": H100,
                "resourceName": "nvidia.com/gpu",
                "count": 496,
                "allocated": 16,
                "available": 480,
            }
        ],
        "acceleratorCount": 496,
        "nodes": {"total": 64, "ready": 63},
        "computePower": {"fp64": "16864", "fp32": "33232", "bf16": "490742.4"},
        "pool": AI_POOL,
        "lastCollectionTime": T_RECENT,
    }


def _stale_status() -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "conditions": [
            _condition(
                "Ready",
                "False",
                "Stale",
                f"no good collection for more than 3m (last at {T_OLD})",
                T_RECENT,
            ),
            _condition(
                "Collected", "False", "Unreachable", "dial tcp 10.20.0.5:6443: i/o timeout", T_OLD
            ),
            _condition("Claimed", "True", "Claimed", f"claimed by RegionPool {AI_POOL}", T_OLD),
        ],
        "capacity": {"cpu": "4096", "memory": "64Ti", "nvidia.com/gpu": "256"},
        "allocatable": {"cpu": "4096", "memory": "64Ti", "nvidia.com/gpu": "256"},
        "allocated": {"cpu": "1024", "memory": "8Ti", "nvidia.com/gpu": "56"},
        "available": {"cpu": "3072", "memory": "56Ti", "nvidia.com/gpu": "200"},
        "accelerators": [
            {
                "model": "Ascend-910B",
                "resourceName": "huawei.com/Ascend910",
                "count": 256,
                "allocated": 56,
                "available": 200,
            }
        ],
        "acceleratorCount": 256,
        "nodes": {"total": 32, "ready": 0},
        "pool": AI_POOL,
        "lastCollectionTime": T_OLD,
    }


def _loose_status() -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "conditions": [
            _condition("Ready", "True", "StaticInventory", "static inventory", T_OLD),
            _condition("Collected", "True", "StaticInventory", "inventory declared in spec", T_OLD),
            _condition("Claimed", "False", "NoMatchingPool", "no RegionPool selects it", T_OLD),
        ],
        "capacity": {"cpu": "16384", "memory": "256Ti"},
        "allocatable": {"cpu": "16384", "memory": "256Ti"},
        "allocated": {"cpu": "0", "memory": "0"},
        "available": {"cpu": "16384", "memory": "256Ti"},
        "nodes": {"total": 128, "ready": 128},
        "lastCollectionTime": T_OLD,
    }


def _pool_status() -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "conditions": [
            _condition("Ready", "True", "EnoughProvidersReady", "1 of 2 providers Ready", T_OLD),
            _condition("Degraded", "True", "ProvidersNotReady", f"not Ready: {STALE}", T_RECENT),
        ],
        "providers": {"total": 2, "ready": 1},
        "capacity": {"cpu": "11264", "memory": "192Ti", "nvidia.com/gpu": "768", "pods": "7040"},
        "allocatable": {"cpu": "6912", "memory": "126Ti", "nvidia.com/gpu": "496", "pods": "7040"},
        "allocated": {"cpu": "1500500m", "memory": "26Ti", "nvidia.com/gpu": "16", "pods": "212"},
        "available": {
            "cpu": "5411500m",
            "memory": "100Ti",
            "nvidia.com/gpu": "480",
            "pods": "6828",
        },
        "regions": [
            {
                "name": EAST,
                "providers": 1,
                "readyProviders": 1,
                "allocatable": {"cpu": "6912", "memory": "126Ti", "nvidia.com/gpu": "496"},
                "available": {"cpu": "5411500m", "memory": "100Ti", "nvidia.com/gpu": "480"},
            },
            {"name": NORTH, "providers": 1, "readyProviders": 0},
        ],
        "accelerators": [{"model": H100, "count": 496, "available": 480}],
        "acceleratorCount": 496,
        "computePower": {"fp64": "16864", "fp32": "33232", "bf16": "490742.4"},
        "nodes": 1,
    }


# --- fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    host: Cluster
    api: client.CustomObjectsApi
    providers: tuple[str, ...]
    pools: tuple[str, ...]

    def live(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """This test's objects as the API serves them now, by name."""
        providers = {
            n: self.api.get_cluster_custom_object(GROUP, VERSION, "computeproviders", n)
            for n in self.providers
        }
        pools = {
            n: self.api.get_cluster_custom_object(GROUP, VERSION, "regionpools", n)
            for n in self.pools
        }
        return providers, pools


def _wait_served(host: Cluster) -> None:
    names = [f"crd/{r.crd_name}" for r in crds.RESOURCES]
    host.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    deadline = time.monotonic() + 60
    while True:
        out = host.kubectl("api-resources", f"--api-group={GROUP}", "-o", "name", check=False)
        if all(f"{r.plural}.{GROUP}" in out.stdout for r in crds.RESOURCES):
            return
        assert time.monotonic() < deadline, out.stdout + out.stderr
        time.sleep(1)


def _write_status(
    api: client.CustomObjectsApi, plural: str, status: dict[str, Any], name: str
) -> None:
    current = api.get_cluster_custom_object(GROUP, VERSION, plural, name)
    current["status"] = status
    api.replace_cluster_custom_object_status(
        GROUP, VERSION, plural, name, current, field_validation="Strict"
    )


@pytest.fixture(scope="module")
def platform(host: Cluster) -> Iterator[Platform]:
    host.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        str(ROOT / "crds"),
    )
    _wait_served(host)
    api = client.CustomObjectsApi(host.api_client())
    providers = {
        FRESH: (_provider(FRESH, EAST, "shanghai-lingang", "7168", "128Ti"), _fresh_status()),
        STALE: (_provider(STALE, NORTH, "beijing-yizhuang", "4096", "64Ti"), _stale_status()),
        LOOSE: (_provider(LOOSE, EAST, "chengdu-tianfu", "16384", "256Ti"), _loose_status()),
    }
    pools = {
        AI_POOL: (
            {
                "apiVersion": API_VERSION,
                "kind": "RegionPool",
                "metadata": {"name": AI_POOL},
                "spec": {"regions": [EAST, NORTH], "priority": 100, "minReadyProviders": 1},
            },
            _pool_status(),
        ),
        # A pool the operator has not reported on: no status at all.
        EMPTY_POOL: (
            {
                "apiVersion": API_VERSION,
                "kind": "RegionPool",
                "metadata": {"name": EMPTY_POOL},
                "spec": {"regions": [f"west-{SUFFIX}"]},
            },
            None,
        ),
    }
    created: list[tuple[str, str]] = []
    try:
        for plural, objects in (("computeproviders", providers), ("regionpools", pools)):
            for name, (body, status) in objects.items():
                api.create_cluster_custom_object(
                    GROUP, VERSION, plural, body, field_validation="Strict"
                )
                created.append((plural, name))
                if status is not None:
                    _write_status(api, plural, status, name)
        yield Platform(host, api, tuple(providers), tuple(pools))
    finally:
        for plural, name in created:
            try:
                api.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            except ApiException as exc:  # pragma: no cover - best effort cleanup
                if exc.status != 404:
                    raise
        api.api_client.close()


@pytest.fixture(scope="module")
def reader_kubeconfig(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A user whose only rights are get, list and watch on the two kinds."""
    rbac = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ROLE}}}
rules:
- apiGroups: [{GROUP}]
  resources: [computeproviders, regionpools]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ROLE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ROLE}}}
subjects:
- {{kind: Group, name: {READERS}, apiGroup: rbac.authorization.k8s.io}}
"""
    platform.host.kubectl("apply", "-f", "-", input=rbac)
    path = tmp_path_factory.mktemp("capacity") / "reader.kubeconfig"
    path.write_text(platform.host.issue_kubeconfig(f"reader-{SUFFIX}", groups=(READERS,)))
    try:
        # RBAC changes reach the authorizer asynchronously: wait until the grant is live.
        deadline = time.monotonic() + 30
        while True:
            can_i = platform.host.kubectl(
                "auth",
                "can-i",
                "list",
                f"regionpools.{GROUP}",
                f"--as=reader-{SUFFIX}",
                f"--as-group={READERS}",
                check=False,
            )
            if can_i.stdout.strip() == "yes":
                break
            assert time.monotonic() < deadline, can_i.stdout + can_i.stderr
            time.sleep(0.5)
        yield path
    finally:
        platform.host.kubectl(
            "delete", "clusterrolebinding,clusterrole", ROLE, "--ignore-not-found", check=False
        )


# --- running the command -------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NO_COLOR")}
    env["COLUMNS"] = "80"
    return env


def capacity(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedcompute", "capacity", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )


def _entries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    everyone = [p for pool in report["pools"] for p in pool["providers"]] + report["unclaimed"]
    return {e["name"]: e for e in everyone}


def _versions(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {n: o["metadata"]["resourceVersion"] for n, o in objects.items()}


# --- tests ---------------------------------------------------------------------------------


def test_json_equals_the_objects_status(platform: Platform) -> None:
    before_providers, before_pools = platform.live()
    result = capacity(platform.host.kubeconfig, "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    after_providers, after_pools = platform.live()
    # Nothing changed the objects while the command ran (and the command wrote nothing).
    assert _versions(after_providers) == _versions(before_providers)
    assert _versions(after_pools) == _versions(before_pools)

    assert report["apiVersion"] == API_VERSION
    assert report["kind"] == "CapacityReport"
    entries = _entries(report)
    for name, obj in after_providers.items():
        entry = entries[name]
        assert entry["status"] == obj["status"], name
        for field, value in obj["status"].items():
            assert entry["status"][field] == value, (name, field)
        assert entry["region"] == obj["spec"]["region"]
        assert entry["zone"] == obj["spec"]["zone"]
    pools = {p["name"]: p for p in report["pools"]}
    for name, obj in after_pools.items():
        assert pools[name]["status"] == obj.get("status", {}), name

    # What the status says, summarised.
    assert entries[FRESH]["state"] == "Ready"
    assert entries[STALE]["state"] == "Stale"
    assert entries[STALE]["reason"] == "Stale"
    assert entries[LOOSE]["state"] == "Ready"
    assert [p["name"] for p in pools[AI_POOL]["providers"]] == [FRESH, STALE]
    assert (pools[AI_POOL]["state"], pools[AI_POOL]["degraded"]) == ("Ready", True)
    assert (pools[EMPTY_POOL]["state"], pools[EMPTY_POOL]["providers"]) == ("Pending", [])
    assert LOOSE in {e["name"] for e in report["unclaimed"]}
    # Quantities are the strings the API returned, not re-formatted.
    assert entries[FRESH]["status"]["available"]["cpu"] == "5411500m"


def test_yaml_is_the_same_report(platform: Platform) -> None:
    as_json = capacity(platform.host.kubeconfig, "-o", "json", "--region", EAST)
    as_yaml = capacity(platform.host.kubeconfig, "-o", "yaml", "--region", EAST)
    assert as_json.returncode == as_yaml.returncode == 0, as_json.stderr + as_yaml.stderr
    a, b = json.loads(as_json.stdout), yaml.safe_load(as_yaml.stdout)
    a.pop("generatedAt"), b.pop("generatedAt")
    assert a == b


def test_filters_by_pool_and_region(platform: Platform) -> None:
    by_pool = json.loads(capacity(platform.host.kubeconfig, "-o", "json", "--pool", AI_POOL).stdout)
    assert [p["name"] for p in by_pool["pools"]] == [AI_POOL]
    assert by_pool["unclaimed"] == []
    assert set(_entries(by_pool)) == {FRESH, STALE}

    by_region = json.loads(
        capacity(platform.host.kubeconfig, "-o", "json", "--region", NORTH).stdout
    )
    assert [p["name"] for p in by_region["pools"]] == [AI_POOL]
    assert set(_entries(by_region)) == {STALE}
    assert by_region["totals"]["providers"]["stale"] == 1


def test_table_shows_stale_providers(platform: Platform) -> None:
    result = capacity(platform.host.kubeconfig, "--region", EAST, "--region", NORTH)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert "\x1b" not in table  # not a terminal: no colour
    lines = table.splitlines()
    stale = next(line for line in lines if line.strip().startswith(STALE))
    assert "STALE" in stale.split()
    assert "Stale: no good collection" in lines[lines.index(stale) + 1]
    fresh = next(line for line in lines if line.strip().startswith(FRESH))
    assert fresh.split()[1:] == [EAST, "Ready", "6.9k", "126Ti", "480/496"]
    assert f"POOL {AI_POOL}  Ready  1/2 providers ready  DEGRADED" in table
    assert "1 STALE" in table
    assert all(len(line) <= 80 for line in lines)


def test_a_reader_with_only_get_and_list_is_enough(
    platform: Platform, reader_kubeconfig: Path
) -> None:
    # The user really cannot write: the command could not have, either.
    from kubernetes import config

    with config.new_client_from_config(str(reader_kubeconfig)) as api:
        reader = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as denied:
            reader.patch_cluster_custom_object_status(
                GROUP, VERSION, "computeproviders", FRESH, {"status": {"pool": None}}
            )
        assert denied.value.status == 403

    for output in ("json", "table", "yaml"):
        result = capacity(reader_kubeconfig, "-o", output)
        assert result.returncode == 0, result.stderr
    report = json.loads(capacity(reader_kubeconfig, "-o", "json").stdout)
    providers, _ = platform.live()
    assert _entries(report)[STALE]["status"] == providers[STALE]["status"]


def test_api_errors_exit_1_with_one_line(platform: Platform, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.kubeconfig"
    stranger.write_text(platform.host.issue_kubeconfig(f"stranger-{SUFFIX}", groups=("nobody",)))
    result = capacity(stranger)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "HTTP 403" in lines[0] and "get and list" in lines[0]

    usage = capacity(platform.host.kubeconfig, "-o", "xml")
    assert usage.returncode == 2


def test_watch_refreshes_and_exits_0_on_ctrl_c(platform: Platform, tmp_path: Path) -> None:
    out = tmp_path / "watch.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedcompute",
                "capacity",
                "--kubeconfig",
                str(platform.host.kubeconfig),
                "--region",
                NORTH,
                "--watch",
                "--interval",
                "0.3",
            ],
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            deadline = time.monotonic() + 60
            while out.read_text().count("TOTAL") < 2:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    text = out.read_text()
    assert "\x1b" not in text  # not a terminal: successive reports, no screen clearing
    assert "\n\nCAPACITY " in text
    assert text.count(STALE) >= 2
