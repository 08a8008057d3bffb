"""The operator end to end: a real host control plane, real member clusters, a real process."""

from __future__ import annotations

import base64
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedcompute import quantities
from tests.conftest import MemberFactory
from tests.integration.operator_harness import (
    Platform,
    condition,
    member_provider,
    region_pool,
    start_platform,
    static_provider,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    yield from start_platform("op", log)


@pytest.fixture(autouse=True)
def _show_operator_log_on_failure(
    request: pytest.FixtureRequest, platform: Platform
) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log:\n{platform.log_tail()}")


def _pod(name: str, node: str, requests: dict[str, str], init: dict[str, str] | None = None) -> str:
    init_part = ""
    if init:
        init_part = (
            "  initContainers:\n  - name: init\n    image: init:1\n"
            f"    resources: {{requests: {dict(init)}}}\n"
        ).replace("'", '"')
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\n"
        f"spec:\n  nodeName: {node}\n{init_part}"
        f"  containers:\n  - name: main\n    image: work:1\n"
        f"    resources: {{requests: {dict(requests)}, limits: {dict(requests)}}}\n"
    ).replace("'", '"')


def _metric(platform: Platform, name: str, **labels: str) -> float:
    """The sum of a metric's samples carrying these labels (0 when there are none)."""
    total = 0.0
    for family in text_string_to_metric_families(platform.metrics()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def wait_collected_after(platform: Platform, provider: str, since: float) -> None:
    """Wait for a successful collection of ``provider`` that started after ``since``."""
    stamp = "fedcompute_provider_last_collection_timestamp_seconds"
    wait_for(
        f"{provider} collected again",
        lambda: _metric(platform, stamp, provider=provider) > since,
        timeout=30,
    )


def _figures(status: dict[str, Any], key: str) -> dict[str, Decimal]:
    return {k: quantities.parse(v) for k, v in (status.get(key) or {}).items()}


def _q(values: dict[str, str | int]) -> dict[str, Decimal]:
    return {k: quantities.parse(v) for k, v in values.items()}


def test_member_status_matches_ground_truth(
    platform: Platform, member_cluster: MemberFactory
) -> None:
    member = member_cluster(
        "truth",
        nodes=3,
        node_cpu="32",
        node_memory="128Gi",
        node_gpus=8,
        gpu_model="NVIDIA-H100-80GB-HBM3",
    )
    platform.kubeconfig_secret("truth-kubeconfig", member.reader_kubeconfig())
    nodes = member.node_names()
    member.kubectl(
        "apply",
        "-f",
        "-",
        input=_pod("train", nodes[0], {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}),
    )
    member.kubectl(
        "apply",
        "-f",
        "-",
        input=_pod("etl", nodes[1], {"cpu": "1", "memory": "1Gi"}, init={"cpu": "10"}),
    )
    platform.apply(
        region_pool("truth-pool", regions=["truth"]),
        member_provider("truth", "truth", "truth-kubeconfig", reserved={"cpu": "2"}),
    )

    # Ground truth, computed here from what the test itself created.
    capacity = _q({"cpu": 96, "memory": "384Gi", "nvidia.com/gpu": 24, "pods": 330})
    # init 10 > 1; "pods" counts the running pods, as the scheduler does.
    allocated = _q({"cpu": 14, "memory": "17Gi", "nvidia.com/gpu": 2, "pods": 2})
    available = {k: v - allocated.get(k, Decimal(0)) for k, v in capacity.items()}
    available["cpu"] -= 2  # reserved

    def matches(
        cap: dict[str, Decimal], alloc: dict[str, Decimal], avail: dict[str, Decimal], gpus: int
    ) -> Any:
        def probe() -> Any:
            status = (platform.provider("truth") or {}).get("status") or {}
            return (
                _figures(status, "capacity") == cap
                and _figures(status, "allocatable") == cap
                and _figures(status, "allocated") == alloc
                and _figures(status, "available") == avail
                and status.get("nodes")
                == {"total": len(member.node_names()), "ready": len(member.node_names())}
                and status.get("accelerators")
                and status["accelerators"][0]["model"] == "NVIDIA-H100-80GB-HBM3"
                and status["accelerators"][0]["count"] == gpus
                and condition(platform.provider("truth"), "Ready").get("status") == "True"
                and status
            )

        return probe

    status = wait_for(
        "provider figures equal ground truth",
        matches(capacity, allocated, available, 24),
        timeout=30,
    )
    assert condition({"status": status}, "Collected")["reason"] == "Collected"
    node = platform.node("fc-truth")
    assert node is not None
    assert _q(node["status"]["capacity"]) == capacity
    assert _q(node["status"]["allocatable"]) == available
    pool = wait_for(
        "pool rolls up",
        lambda: (
            (platform.pool("truth-pool") or {}).get("status", {}).get("providers")
            == {"total": 1, "ready": 1}
            and platform.pool("truth-pool")
        ),
    )
    assert _figures(pool["status"], "available") == available

    # The member grows: two nodes and a pod; visible within one interval (5s) plus slack.
    started = time.monotonic()
    added = member.add_nodes(2, cpu="16", memory="64Gi", gpus=4, gpu_model="NVIDIA-H100-80GB-HBM3")
    member.kubectl(
        "apply", "-f", "-", input=_pod("infer", added[0], {"cpu": "2", "nvidia.com/gpu": "1"})
    )
    capacity2 = {
        k: v + _q({"cpu": 32, "memory": "128Gi", "nvidia.com/gpu": 8, "pods": 220})[k]
        for k, v in capacity.items()
    }
    allocated2 = {
        **allocated,
        "cpu": allocated["cpu"] + 2,
        "nvidia.com/gpu": allocated["nvidia.com/gpu"] + 1,
        "pods": allocated["pods"] + 1,
    }
    available2 = {k: v - allocated2.get(k, Decimal(0)) for k, v in capacity2.items()}
    available2["cpu"] -= 2
    wait_for("grown member", matches(capacity2, allocated2, available2, 32), timeout=20)
    assert time.monotonic() - started < 20

    # A restart rewrites nothing: the new process carries the status over until its first
    # collection, which finds nothing new.
    wait_for(
        "the node follows the grown member",
        lambda: _q(platform.node("fc-truth")["status"]["allocatable"]) == available2,
    )
    wait_collected_after(platform, "truth", time.time())  # a quiet collection after it
    before = platform.provider("truth")["metadata"]["resourceVersion"]
    node_before = platform.node("fc-truth")["metadata"]["resourceVersion"]
    platform.stop()
    restarted = time.time()
    platform.start()
    wait_collected_after(platform, "truth", restarted)
    wait_collected_after(platform, "truth", time.time())  # and the pass after it ran
    assert platform.provider("truth")["metadata"]["resourceVersion"] == before
    assert platform.node("fc-truth")["metadata"]["resourceVersion"] == node_before


class _Listener:
    """A TCP listener on loopback that counts every connection it is offered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _kubeconfig(
    server: str, ca: str, cluster_extra: str = "", user: str = "token: abc123secret"
) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: m
  cluster:
    server: {server}
    certificate-authority-data: {ca}
{cluster_extra}
users:
- name: u
  user:
    {user}
contexts:
- name: m
  context: {{cluster: m, user: u}}
current-context: m
"""


def test_insecure_kubeconfigs_are_refused_without_any_connection_or_process(
    platform: Platform, tmp_path: Path
) -> None:
    ca = base64.b64encode((platform.host.directory / "pki" / "ca.crt").read_bytes()).decode()
    listener = _Listener()
    marker = tmp_path / "exec-ran"
    https = f"https://127.0.0.1:{listener.port}"
    forms = {
        "exec": _kubeconfig(
            https,
            ca,
            user="exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, "
            f"args: [-c, 'touch {marker}']}}",
        ),
        "auth-provider": _kubeconfig(https, ca, user="auth-provider: {name: gcp, config: {}}"),
        "token-file": _kubeconfig(https, ca, user="tokenFile: /var/run/secrets/token"),
        "cert-file": _kubeconfig(
            https, ca, user="client-certificate: /etc/passwd\n    client-key: /etc/shadow"
        ),
        "ca-file": _kubeconfig(
            https, ca, cluster_extra="    certificate-authority: /etc/ssl/ca.pem"
        ),
        "skip-tls": _kubeconfig(https, ca, cluster_extra="    insecure-skip-tls-verify: true"),
        "proxy": _kubeconfig(
            https, ca, cluster_extra=f"    proxy-url: http://127.0.0.1:{listener.port}"
        ),
        "plain-http": _kubeconfig(f"http://127.0.0.1:{listener.port}", ca),
        "metadata": _kubeconfig("https://169.254.169.254:443", ca),
        # The metadata address embedded in IPv6 forms that reach it through translation.
        "nat64": _kubeconfig("https://[64:ff9b::a9fe:a9fe]:443", ca),
        "ipv4-compatible": _kubeconfig("https://[::a9fe:a9fe]:443", ca),
        "6to4": _kubeconfig("https://[2002:a9fe:a9fe::1]:443", ca),
    }
    try:
        platform.apply(region_pool("sec-pool", regions=["sec"]))
        for form, text in forms.items():
            platform.kubeconfig_secret(f"sec-{form}", text)
            platform.apply(member_provider(f"sec-{form}", "sec", f"sec-{form}"))
        for form in forms:
            got = wait_for(
                f"{form} refused",
                lambda f=form: (
                    condition(platform.provider(f"sec-{f}"), "Collected").get("reason")
                    not in (None, "Pending")
                    and platform.provider(f"sec-{f}")
                ),
                timeout=30,
            )
            collected = condition(got, "Collected")
            assert (collected["status"], collected["reason"]) == ("False", "InsecureKubeconfig"), (
                form,
                collected,
            )
            assert "abc123secret" not in str(got)
            assert condition(got, "Ready")["status"] == "False"
        attempts = _metric(
            platform, "fedcompute_collection_errors_total", reason="InsecureKubeconfig"
        )
        wait_for(
            "a further round of collection attempts",
            lambda: (
                _metric(platform, "fedcompute_collection_errors_total", reason="InsecureKubeconfig")
                >= attempts + len(forms)
            ),
            timeout=20,
        )
        assert listener.connections == 0
        assert not marker.exists()
        events = platform.host.kubectl("get", "events", "-n", "default", "-o", "yaml").stdout
        assert "abc123secret" not in events
        assert "abc123secret" not in platform.log_path.read_text(errors="replace")
    finally:
        listener.close()
        platform.delete("computeprovider", *(f"sec-{f}" for f in forms))
        platform.delete("regionpool", "sec-pool")


def test_claims_follow_priority_and_nodes_move_in_place(platform: Platform) -> None:
    platform.apply(
        static_provider("claim-a", "claims-1", labels={"team": "ml"}),
        static_provider("claim-b", "claims-2", labels={"team": "ml"}),
        region_pool("claims-region", regions=["claims-1"], priority=10),
        region_pool("claims-team", selector={"matchLabels": {"team": "ml"}}, priority=0),
    )
    node = wait_for(
        "node of claim-a in claims-region",
        lambda: (
            (n := platform.node("fc-claim-a"))
            and n["metadata"]["labels"].get("fedcompute.io/pool") == "claims-region"
            and n
        ),
    )
    uid = node["metadata"]["uid"]
    assert condition(platform.provider("claim-a"), "Claimed")["status"] == "True"
    assert platform.provider("claim-a")["status"]["pool"] == "claims-region"
    wait_for(
        "claim-b in claims-team",
        lambda: (
            (n := platform.node("fc-claim-b"))
            and n["metadata"]["labels"]["fedcompute.io/pool"] == "claims-team"
        ),
    )

    # A priority change moves the node in place: same object, new labels and owner.
    platform.host.kubectl(
        "patch", "regionpool", "claims-region", "--type=merge", "-p", '{"spec":{"priority":-5}}'
    )
    moved = wait_for(
        "claim-a moved to claims-team",
        lambda: (
            (n := platform.node("fc-claim-a"))
            and n["metadata"]["labels"]["fedcompute.io/pool"] == "claims-team"
            and n
        ),
    )
    assert moved["metadata"]["uid"] == uid
    assert moved["metadata"]["ownerReferences"][0]["name"] == "claims-team"
    assert "fedcompute.io/virtual" in [t["key"] for t in moved["spec"]["taints"]]

    # Deleting the claiming pool: claim-a falls to claims-region (in place), claim-b has
    # no other pool and its node is deleted; the pool's finalizer is released.
    platform.delete("regionpool", "claims-team")
    wait_for("claims-team gone", lambda: platform.pool("claims-team") is None)
    back = wait_for(
        "claim-a back in claims-region",
        lambda: (
            (n := platform.node("fc-claim-a"))
            and n["metadata"]["labels"]["fedcompute.io/pool"] == "claims-region"
            and n
        ),
    )
    assert back["metadata"]["uid"] == uid
    wait_for("claim-b node deleted", lambda: platform.node("fc-claim-b") is None)
    wait_for("claim-b lease deleted", lambda: platform.lease("fc-claim-b") is None)
    unclaimed = wait_for(
        "claim-b unclaimed",
        lambda: (
            condition(platform.provider("claim-b"), "Claimed").get("status") == "False"
            and platform.provider("claim-b")
        ),
    )
    assert "pool" not in unclaimed["status"]

    # Deleting a provider deletes its node and lease, then the provider itself.
    platform.delete("computeprovider", "claim-a", "claim-b")
    wait_for("claim-a finalized", lambda: platform.provider("claim-a") is None)
    assert platform.node("fc-claim-a") is None
    assert platform.lease("fc-claim-a") is None
    platform.delete("regionpool", "claims-region")


def test_member_down_goes_stale_and_recovers(
    platform: Platform, member_cluster: MemberFactory
) -> None:
    member = member_cluster("flaky", nodes=2, node_gpus=4)
    platform.kubeconfig_secret("flaky-kubeconfig", member.reader_kubeconfig())
    platform.apply(
        region_pool("flaky-pool", regions=["flaky"]),
        member_provider(
            "flaky", "flaky", "flaky-kubeconfig", interval="5s", timeout="2s", stale_after="12s"
        ),
    )
    ready = wait_for(
        "flaky Ready",
        lambda: (
            condition(platform.provider("flaky"), "Ready").get("status") == "True"
            and platform.provider("flaky")
        ),
    )
    figures = {k: ready["status"][k] for k in ("capacity", "allocatable", "available")}
    wait_for("flaky lease", lambda: platform.lease("fc-flaky"))
    apiserver = member.state()["children"]["kube-apiserver"]
    os.kill(apiserver, signal.SIGSTOP)
    try:
        down_at = time.monotonic()
        failed = wait_for(
            "Collected=False",
            lambda: (
                condition(platform.provider("flaky"), "Collected").get("status") == "False"
                and platform.provider("flaky")
            ),
            timeout=15,
        )
        assert condition(failed, "Collected")["reason"] in ("Timeout", "Unreachable")
        assert {k: failed["status"][k] for k in figures} == figures  # figures kept
        assert condition(failed, "Ready")["status"] == "True"  # not stale yet
        stale = wait_for(
            "Ready=False Stale",
            lambda: (
                condition(platform.provider("flaky"), "Ready").get("reason") == "Stale"
                and platform.provider("flaky")
            ),
            timeout=30,
        )
        assert time.monotonic() - down_at >= 10
        assert condition(stale, "Ready")["status"] == "False"
        assert {k: stale["status"][k] for k in figures} == figures
        wait_for(
            "node NotReady",
            lambda: condition(platform.node("fc-flaky"), "Ready").get("status") == "False",
        )
        pool = wait_for(
            "pool Degraded",
            lambda: (
                condition(platform.pool("flaky-pool"), "Degraded").get("status") == "True"
                and platform.pool("flaky-pool")
            ),
        )
        assert "flaky" in condition(pool, "Degraded")["message"]
        renewed = platform.lease("fc-flaky")["spec"]["renewTime"]
        time.sleep(12)
        assert platform.lease("fc-flaky")["spec"]["renewTime"] == renewed  # left to expire
    finally:
        os.kill(apiserver, signal.SIGCONT)
    back_at = time.monotonic()
    wait_for(
        "Ready again",
        lambda: condition(platform.provider("flaky"), "Ready").get("status") == "True",
        timeout=15,
    )
    assert time.monotonic() - back_at <= 5 + 2 + 3  # one interval, one timeout, slack
    wait_for(
        "node Ready again",
        lambda: condition(platform.node("fc-flaky"), "Ready").get("status") == "True",
    )
    wait_for(
        "pool not Degraded",
        lambda: condition(platform.pool("flaky-pool"), "Degraded").get("status") == "False",
    )
    wait_for(
        "lease renewed",
        lambda: platform.lease("fc-flaky")["spec"]["renewTime"] != renewed,
        timeout=15,
    )
    platform.delete("computeprovider", "flaky")
    platform.delete("regionpool", "flaky-pool")
    wait_for("flaky finalized", lambda: platform.provider("flaky") is None)


def _series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_equal_status_and_vanish_with_their_object(platform: Platform) -> None:
    platform.apply(
        static_provider("metered", "metrics", cpu="128", memory="1Ti", gpus=16),
        region_pool("metered-pool", regions=["metrics"]),
    )
    provider = wait_for(
        "metered Ready",
        lambda: (
            condition(platform.provider("metered"), "Ready").get("status") == "True"
            and platform.provider("metered")
        ),
    )
    wait_for(
        "pool status",
        lambda: (platform.pool("metered-pool") or {}).get("status", {}).get("allocatable"),
    )
    pool = platform.pool("metered-pool")
    text = platform.metrics()
    allocatable = _series(text, "fedcompute_provider_allocatable")
    for resource, value in provider["status"]["allocatable"].items():
        key = tuple(
            sorted(
                {
                    "provider": "metered",
                    "region": "metrics",
                    "pool": "metered-pool",
                    "resource": resource,
                }.items()
            )
        )
        assert allocatable[key] == float(quantities.parse(value))
    pool_available = _series(text, "fedcompute_pool_available")
    for resource, value in pool["status"]["available"].items():
        assert pool_available[(("pool", "metered-pool"), ("resource", resource))] == float(
            quantities.parse(value)
        )
    ready = _series(text, "fedcompute_provider_ready")
    assert ready[(("pool", "metered-pool"), ("provider", "metered"), ("region", "metrics"))] == 1
    accel = _series(text, "fedcompute_provider_accelerators")
    assert (
        accel[(("model", "NVIDIA-A100-SXM4-80GB"), ("provider", "metered"), ("state", "total"))]
        == 16
    )
    assert (
        _series(text, "fedcompute_pool_providers")[(("pool", "metered-pool"), ("state", "ready"))]
        == 1
    )
    assert _series(text, "fedcompute_reconcile_total")[()] >= 1

    platform.delete("computeprovider", "metered")
    platform.delete("regionpool", "metered-pool")
    wait_for(
        "metered finalized",
        lambda: platform.provider("metered") is None and platform.pool("metered-pool") is None,
    )
    wait_for(
        "series gone",
        lambda: (
            'provider="metered"' not in platform.metrics()
            and 'pool="metered-pool"' not in platform.metrics()
        ),
    )


def _writes(platform: Platform) -> dict[tuple[str, str, str], float]:
    text = platform.host.kubectl("get", "--raw", "/metrics").stdout
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "apiserver_request_total" and s.labels.get("verb") in (
                "POST",
                "PUT",
                "PATCH",
                "DELETE",
                "APPLY",
            ):
                key = (s.labels["resource"], s.labels.get("subresource", ""), s.labels["verb"])
                counts[key] = counts.get(key, 0) + s.value
    return counts


def test_an_idle_minute_costs_only_lease_writes(platform: Platform) -> None:
    platform.apply(
        *(static_provider(f"idle-{i}", "idle") for i in range(5)),
        region_pool("idle-pool", regions=["idle"]),
    )
    wait_for("idle nodes and leases", lambda: all(platform.lease(f"fc-idle-{i}") for i in range(5)))
    wait_for(
        "idle pool settled",
        lambda: (platform.pool("idle-pool") or {}).get("status", {}).get("nodes") == 5,
    )
    time.sleep(3)
    before = _writes(platform)
    time.sleep(60)
    after = _writes(platform)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta = {k: v for k, v in delta.items() if v}
    ours = {
        k: v
        for k, v in delta.items()
        if k[0] in ("computeproviders", "regionpools", "nodes", "events")
    }
    assert ours == {}, delta
    lease_patches = delta.get(("leases", "", "PATCH"), 0)
    assert 5 * 2 <= lease_patches <= 5 * 3 + 1, delta  # every 22 s per node (grace 50 s)
    platform.delete("computeprovider", *(f"idle-{i}" for i in range(5)))
    platform.delete("regionpool", "idle-pool")


def test_sigkill_during_a_burst_of_200_then_restart_converges(platform: Platform) -> None:
    platform.apply(region_pool("bulk-pool", regions=["bulk"]))
    names = [f"bulk-{i:03d}" for i in range(200)]
    creator = threading.Thread(
        target=lambda: platform.apply(*(static_provider(n, "bulk", gpus=0) for n in names))
    )
    creator.start()
    wait_for("some bulk nodes", lambda: len(platform.virtual_nodes()) >= 20, every=0.05)
    platform.kill()
    creator.join()
    # While it is down, one provider is deleted: it must be finalized after the restart.
    platform.delete("computeprovider", "bulk-007")
    assert platform.provider("bulk-007") is not None  # held by the finalizer
    platform.start()
    expected = sorted(f"fc-{n}" for n in names if n != "bulk-007")

    def converged() -> bool:
        node_list, lease_list = platform.virtual()
        nodes, leases = (
            sorted(n for o in objs if (n := o["metadata"]["name"]).startswith("fc-bulk-"))
            for objs in (node_list, lease_list)
        )
        return nodes == expected and leases == expected

    wait_for("exactly 199 nodes and leases", converged, timeout=120, every=1)
    wait_for("bulk-007 finalized", lambda: platform.provider("bulk-007") is None)
    pool = wait_for(
        "bulk pool counts",
        lambda: (
            (platform.pool("bulk-pool") or {}).get("status", {}).get("providers")
            == {"total": 199, "ready": 199}
            and platform.pool("bulk-pool")
        ),
    )
    assert pool["status"]["nodes"] == 199
    platform.delete("computeprovider", "--all")
    platform.delete("regionpool", "bulk-pool")
    wait_for(
        "bulk cleaned up",
        lambda: (
            not [
                n for n in platform.virtual_nodes() if n["metadata"]["name"].startswith("fc-bulk-")
            ]
        ),
        timeout=120,
        every=1,
    )
