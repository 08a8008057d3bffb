"""No object can stop the others: each hostile input next to an innocent provider.

Every test puts one hostile object (or member reply) on a real host control plane next to
an innocent member provider, and proves that the innocent one is still collected, written
and reported on time: its status follows its member within one interval, its virtual
node and Lease exist, and its metrics say Ready.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from fedcompute import quantities
from fedcompute.local import cluster
from tests.conftest import MemberFactory
from tests.integration.hostile import (
    Handler,
    HostileServer,
    SilentListener,
    gzip_stream,
    head,
    read_request,
    serve_lists,
)
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

INTERVAL = 5  # seconds, the innocent member's collection interval (member_provider default)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    log = tmp_path_factory.mktemp("isolation") / "operator.log"
    yield from start_platform("iso", log)


@pytest.fixture(autouse=True)
def _show_operator_log_on_failure(
    request: pytest.FixtureRequest, platform: Platform
) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- operator log:\n{platform.log_tail(120)}")


def _series(platform: Platform, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(platform.metrics()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


class Innocent:
    """A member provider that must keep flowing whatever its neighbours do."""

    def __init__(self, platform: Platform, member: cluster.Cluster, name: str) -> None:
        self.platform, self.member, self.name = platform, member, name
        platform.kubeconfig_secret(f"{name}-kubeconfig", member.reader_kubeconfig())
        platform.apply(
            region_pool(f"{name}-pool", regions=[name]),
            member_provider(name, name, f"{name}-kubeconfig"),
        )

    def cpu(self) -> str | None:
        status = (self.platform.provider(self.name) or {}).get("status") or {}
        return (status.get("capacity") or {}).get("cpu")

    def check(self) -> None:
        """Ready, node and Lease present, metrics Ready, and a member change seen in time."""
        p = self.platform
        wait_for(
            f"{self.name} Ready",
            lambda: condition(p.provider(self.name), "Ready").get("status") == "True",
            timeout=30,
        )
        wait_for(
            f"{self.name} node and lease",
            lambda: p.node(f"fc-{self.name}") and p.lease(f"fc-{self.name}"),
            timeout=15,
        )
        before = quantities.parse(self.cpu() or "0")
        started = time.monotonic()
        self.member.add_nodes(1, cpu="8", memory="16Gi")
        wait_for(
            f"{self.name} grown by one node",
            lambda: quantities.parse(self.cpu() or "0") == before + 8,
            timeout=INTERVAL + 10,
        )
        assert time.monotonic() - started <= INTERVAL + 10

        def node_cpu() -> Any:
            node = p.node(f"fc-{self.name}") or {}
            return quantities.parse(node.get("status", {}).get("capacity", {}).get("cpu") or "0")

        wait_for(
            f"{self.name} node grown",
            lambda: node_cpu() == before + 8,
            timeout=10,
        )
        ready = _series(p, "fedcompute_provider_ready")
        key = (("pool", f"{self.name}-pool"), ("provider", self.name), ("region", self.name))
        assert ready.get(key) == 1.0, ready

    def delete(self) -> None:
        self.platform.delete("computeprovider", self.name)
        self.platform.delete("regionpool", f"{self.name}-pool")


@pytest.fixture
def innocent(platform: Platform, member_cluster: MemberFactory) -> Iterator[Innocent]:
    member = member_cluster("innocent", nodes=2, node_cpu="16", node_gpus=2)
    neighbour = Innocent(platform, member, "innocent")
    yield neighbour
    neighbour.delete()


# --- figures that exceed a status's bounds ---------------------------------------------------


def _node(name: str, capacity: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, **labels},
            "annotations": {cluster.KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def test_a_heterogeneous_member_is_folded_into_its_status(
    platform: Platform, member_cluster: MemberFactory, innocent: Innocent
) -> None:
    """40 extended resources and 20 models on one member: more than a status lists."""
    hetero = member_cluster("hetero")
    bodies = []
    for i in range(20):
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": str(i + 1)}
        capacity.update({f"example.com/dev-{i:02d}-{j}": "1" for j in range(2)})
        bodies.append(
            _node(f"hetero-{i:02d}", capacity, {"nvidia.com/gpu.product": f"model-{i:02d}"})
        )
    hetero.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(b) for b in bodies))
    platform.kubeconfig_secret("hetero-kubeconfig", hetero.reader_kubeconfig())
    platform.apply(
        region_pool("hetero-pool", regions=["hetero"]),
        member_provider("hetero", "hetero", "hetero-kubeconfig"),
    )
    try:
        status = wait_for(
            "hetero collected and folded",
            lambda: (
                condition(platform.provider("hetero"), "Ready").get("status") == "True"
                and platform.provider("hetero")["status"]
            ),
            timeout=40,
        )
        assert len(status["capacity"]) == 32
        assert status["capacity"]["fedcompute.io/other"]
        assert status["folded"]["resources"] == 44 - 31
        assert len(status["accelerators"]) == 16
        assert status["accelerators"][-1]["model"] == "other-models"
        assert status["folded"]["accelerators"] == 5
        assert status["acceleratorCount"] == sum(range(1, 21))
        node = platform.node("fc-hetero")
        assert node is not None and len(node["status"]["capacity"]) == 44
        innocent.check()
    finally:
        platform.delete("computeprovider", "hetero")
        platform.delete("regionpool", "hetero-pool")


def test_a_pool_over_more_regions_than_its_status_holds(
    platform: Platform, innocent: Innocent
) -> None:
    names = [f"wide-{i:02d}" for i in range(70)]
    platform.apply(
        *(static_provider(n, n, labels={"wide": "yes"}, gpus=0) for n in names),
        region_pool("wide-pool", selector={"matchLabels": {"wide": "yes"}}),
    )
    try:
        status = wait_for(
            "wide pool rolled up",
            lambda: (
                ((platform.pool("wide-pool") or {}).get("status") or {}).get("providers")
                == {"total": 70, "ready": 70}
                and platform.pool("wide-pool")["status"]
            ),
            timeout=60,
        )
        assert len(status["regions"]) == 64
        assert status["regions"][-1] == {
            **status["regions"][-1],
            "name": "other-regions",
            "providers": 7,
        }
        assert status["folded"] == {"regions": 7}
        assert condition({"status": status}, "Ready")["status"] == "True"
        innocent.check()
    finally:
        platform.delete("computeprovider", "-l", "wide=yes")
        platform.delete("regionpool", "wide-pool")


# --- status written by someone else -------------------------------------------------------------


def test_conditions_someone_else_wrote_are_dropped(platform: Platform, innocent: Innocent) -> None:
    platform.apply(
        static_provider("tampered", "tamper"), region_pool("tamper-pool", regions=["tamper"])
    )
    try:
        wait_for(
            "tampered Ready",
            lambda: condition(platform.provider("tampered"), "Ready").get("status") == "True",
        )
        foreign = [
            {"type": f"example.com/Foreign{i}", "status": "True", "reason": "Mine", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for i in range(8)
        ]  # fmt: skip
        platform.host.kubectl(
            "patch", "computeprovider", "tampered", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"conditions": foreign, "capacity": {"cpu": "1"}}}),
        )  # fmt: skip
        repaired = wait_for(
            "operator's own status back",
            lambda: (
                (p := platform.provider("tampered"))
                and {c["type"] for c in p["status"].get("conditions") or []}
                == {"Ready", "Collected", "Claimed", "Reconciling", "Stalled"}
                and p["status"]["capacity"]["cpu"] == "64"
                and p
            ),
            timeout=20,
        )
        assert condition(repaired, "Ready")["status"] == "True"
        innocent.check()
    finally:
        platform.delete("computeprovider", "tampered")
        platform.delete("regionpool", "tamper-pool")


# --- writes the API server refuses ---------------------------------------------------------------

_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["{group}"]
      apiVersions: ["*"]
      operations: ["CREATE", "UPDATE"]
      resources: ["{resource}"]
  validations:
  - expression: "{expression}"
    message: "{message}"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
"""


def _await_policy(platform: Platform, *args: str, input: str | None = None) -> None:
    """Wait until a dry run of a write the policy forbids is refused (policies load late)."""

    def refused() -> bool:
        return platform.host.kubectl(*args, input=input, check=False).returncode != 0

    wait_for("the admission policy in force", refused, timeout=30)


def _drop_policy(platform: Platform, name: str) -> None:
    platform.host.kubectl(
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        name,
        "--ignore-not-found",
    )


def _events(platform: Platform, name: str, reason: str) -> list[Any]:
    text = platform.host.kubectl(
        "get", "events", "-n", "default", "--field-selector",
        f"involvedObject.name={name},reason={reason}", "-o", "json",
    ).stdout  # fmt: skip
    items: list[Any] = json.loads(text)["items"]
    return items


def _writes(platform: Platform, resource: str, verb: str) -> float:
    text = platform.host.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (
                s.name == "apiserver_request_total"
                and s.labels.get("resource") == resource
                and s.labels.get("verb") == verb
                and not s.labels.get("subresource")
            ):
                total += s.value
    return total


def test_a_refused_node_write_is_reported_and_not_retried_hot(
    platform: Platform, innocent: Innocent
) -> None:
    policy = _POLICY.format(
        name="no-refused-nodes",
        group="",
        resource="nodes",
        expression="!has(object.metadata.labels) || "
        "object.metadata.labels[?'fedcompute.io/provider'].orValue('') != 'refused'",
        message="nodes of provider refused are not welcome here",
    )
    platform.host.kubectl("apply", "-f", "-", input=policy)
    probe = _node("refused-probe", {"cpu": "1"}, {"fedcompute.io/provider": "refused"})
    _await_policy(platform, "create", "--dry-run=server", "-f", "-", input=json.dumps(probe))
    platform.apply(
        static_provider("refused", "refuse"), region_pool("refuse-pool", regions=["refuse"])
    )
    try:
        refused = wait_for(
            "refused reported",
            lambda: (
                condition(platform.provider("refused"), "Ready").get("reason") == "WriteRejected"
                and platform.provider("refused")
            ),
            timeout=30,
        )
        message = condition(refused, "Ready")["message"]
        assert "create Node fc-refused" in message and "not welcome here" in message
        pool = wait_for(
            "pool degraded",
            lambda: (
                condition(platform.pool("refuse-pool"), "Degraded").get("status") == "True"
                and platform.pool("refuse-pool")
            ),
        )
        assert "refused" in condition(pool, "Degraded")["message"]
        assert _events(platform, "refused", "WriteRejected"), "no WriteRejected event"
        errors = _series(platform, "fedcompute_write_errors_total")
        assert errors.get((("code", "422"), ("resource", "nodes")), 0) >= 1, errors
        # Backoff, not a hot loop: at most a handful of attempts in 20 s.
        before = _writes(platform, "nodes", "POST")
        time.sleep(20)
        assert _writes(platform, "nodes", "POST") - before <= 6
        innocent.check()
    finally:
        _drop_policy(platform, "no-refused-nodes")
    # Once the API accepts the node, the provider recovers on its own.
    wait_for(
        "refused recovers",
        lambda: condition(platform.provider("refused"), "Ready").get("status") == "True",
        timeout=90,
    )
    assert platform.node("fc-refused") is not None
    platform.delete("computeprovider", "refused")
    platform.delete("regionpool", "refuse-pool")


def test_a_refused_status_write_is_an_event_and_a_metric(
    platform: Platform, innocent: Innocent
) -> None:
    policy = _POLICY.format(
        name="mute-status",
        group="fedcompute.io",
        resource="computeproviders/status",
        expression="!object.metadata.name.startsWith('mute')",
        message="mute may not report",
    )
    platform.host.kubectl("apply", "-f", "-", input=policy)
    platform.host.kubectl("create", "-f", "-", input=json.dumps(static_provider("mute-probe", "x")))
    _await_policy(
        platform, "patch", "computeprovider", "mute-probe", "--subresource=status",
        "--type=merge", "-p", '{"status": {"pool": "x"}}', "--dry-run=server",
    )  # fmt: skip
    platform.delete("computeprovider", "mute-probe")
    platform.apply(static_provider("mute", "mute"), region_pool("mute-pool", regions=["mute"]))
    try:
        wait_for(
            "a WriteRejected event for mute",
            lambda: _events(platform, "mute", "WriteRejected"),
            timeout=30,
        )
        errors = _series(platform, "fedcompute_write_errors_total")
        assert errors.get((("code", "422"), ("resource", "computeproviders")), 0) >= 1, errors
        assert "status" not in (platform.provider("mute") or {})
        innocent.check()
    finally:
        _drop_policy(platform, "mute-status")
        platform.delete("computeprovider", "mute")
        platform.delete("regionpool", "mute-pool")


# --- collection that cannot be starved ------------------------------------------------------------


def test_slow_members_cannot_hold_every_collection_worker(
    platform: Platform, member_cluster: MemberFactory, tmp_path: Path
) -> None:
    """Twenty silent members (more than the 16 workers) next to a healthy one."""
    silent = SilentListener()
    member = member_cluster("patient", nodes=1)
    real = member.reader_kubeconfig()
    try:
        doc = yaml.safe_load(real)
        doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{silent.port}"
        platform.kubeconfig_secret("silent-kubeconfig", json.dumps(doc))
        platform.apply(
            *(
                member_provider(f"silent-{i:02d}", "silent", "silent-kubeconfig",
                                interval="10s", timeout="8s", stale_after="30s")
                for i in range(20)
            ),
            region_pool("silent-pool", regions=["silent"]),
        )  # fmt: skip
        # Observed first, the silent ones are due first and take every worker they can.
        healthy = Innocent(platform, member, "patient")
        reasons: set[str] = set()

        def ready() -> bool:
            obj = platform.provider("patient")
            reasons.add(condition(obj, "Collected").get("reason", ""))
            return condition(obj, "Ready").get("status") == "True"

        wait_for("the healthy member collected despite the silent ones", ready, timeout=8 + 10)
        assert "Timeout" not in reasons
        wait_for(
            "the silent ones time out",
            lambda: (
                condition(platform.provider("silent-00"), "Collected").get("reason") == "Timeout"
            ),
            timeout=30,
        )
        healthy.check()
        assert "Timeout" not in reasons
        healthy.delete()
    finally:
        platform.delete("computeprovider", *(f"silent-{i:02d}" for i in range(20)))
        platform.delete("regionpool", "silent-pool")
        silent.close()


# --- restarts do not trust what they did not see ----------------------------------------------


def test_a_future_collection_time_is_not_trusted_after_a_restart(
    platform: Platform, member_cluster: MemberFactory, innocent: Innocent
) -> None:
    doomed = member_cluster("doomed", nodes=1)
    platform.kubeconfig_secret("doomed-kubeconfig", doomed.reader_kubeconfig())
    platform.apply(
        region_pool("doomed-pool", regions=["doomed"]),
        member_provider("doomed", "doomed", "doomed-kubeconfig", stale_after="12s"),
    )
    apiserver = doomed.state()["children"]["kube-apiserver"]
    try:
        wait_for(
            "doomed Ready",
            lambda: condition(platform.provider("doomed"), "Ready").get("status") == "True",
            timeout=30,
        )
        platform.stop()
        os.kill(apiserver, signal.SIGSTOP)
        platform.host.kubectl(
            "patch", "computeprovider", "doomed", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"lastCollectionTime": "2099-01-01T00:00:00Z"}}),
        )  # fmt: skip
        restarted = time.monotonic()
        platform.start()
        wait_for(
            "doomed Stale",
            lambda: condition(platform.provider("doomed"), "Ready").get("reason") == "Stale",
            timeout=12 + 10,
        )
        assert time.monotonic() - restarted <= 12 + 10
        lct = platform.provider("doomed")["status"]["lastCollectionTime"]
        assert not lct.startswith("2099")
        innocent.check()
    finally:
        os.kill(apiserver, signal.SIGCONT)
        platform.delete("computeprovider", "doomed")
        platform.delete("regionpool", "doomed-pool")


def test_garbage_in_status_is_repaired_without_touching_the_node(
    platform: Platform, innocent: Innocent
) -> None:
    platform.apply(static_provider("odd", "odd"), region_pool("odd-pool", regions=["odd"]))
    try:
        wait_for("odd node", lambda: platform.node("fc-odd"), timeout=20)
        node_rv = platform.node("fc-odd")["metadata"]["resourceVersion"]
        garbage = {"accelerators": [{"model": "x", "resourceName": "y", "count": 1}]}
        platform.host.kubectl(
            "patch", "computeprovider", "odd", "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": garbage}),
        )  # fmt: skip

        def repaired() -> bool:
            status = (platform.provider("odd") or {}).get("status") or {}
            models = [a.get("model") for a in status.get("accelerators") or []]
            return models == ["NVIDIA-A100-SXM4-80GB"]

        wait_for("odd status repaired", repaired, timeout=20)
        assert platform.node("fc-odd")["metadata"]["resourceVersion"] == node_rv
        innocent.check()
    finally:
        platform.delete("computeprovider", "odd")
        platform.delete("regionpool", "odd-pool")


# --- member replies that break arithmetic, memory or expectations --------------------------------


def _hostile_node(name: str, capacity: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {}},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _gzip_bomb() -> Handler:
    first, again, count = gzip_stream(2 << 10)  # 2 GiB of blanks in about 2 MiB

    def bomb(conn: ssl.SSLSocket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(head(Content_Encoding="gzip", Connection="close") + first)
        for _ in range(count):
            if stop.is_set():
                return
            conn.sendall(again)

    return bomb


HOSTILE_REPLIES: list[tuple[str, Callable[[], Handler], str, str]] = [
    (
        "a quantity beyond what Kubernetes represents",
        lambda: serve_lists([_hostile_node("n1", {"cpu": "8", "memory": "1e999999999"})]),
        "InvalidInventory",
        "node n1 status.capacity[memory]",
    ),
    (
        "a quantity of the wrong shape",
        lambda: serve_lists([_hostile_node("n2", {"cpu": {"nested": [1, 2]}})]),
        "InvalidInventory",
        "node n2",
    ),
    ("a gzip bomb", _gzip_bomb, "CollectionFailed", "after decompression"),
]


@pytest.mark.parametrize(
    ("make_handler", "reason", "text"),
    [pytest.param(h, r, t, id=name) for name, h, r, t in HOSTILE_REPLIES],
)
def test_a_hostile_member_reply_costs_only_its_own_provider(
    *,
    platform: Platform,
    innocent: Innocent,
    hostile: HostileServer,
    make_handler: Callable[[], Handler],
    reason: str,
    text: str,
) -> None:
    hostile.handler = make_handler()
    platform.kubeconfig_secret("hostile-kubeconfig", hostile.kubeconfig())
    platform.apply(
        region_pool("hostile-pool", regions=["hostile"]),
        member_provider("hostile", "hostile", "hostile-kubeconfig"),
    )
    try:
        failed = wait_for(
            f"hostile reported {reason}",
            lambda: (
                condition(platform.provider("hostile"), "Collected").get("reason") == reason
                and platform.provider("hostile")
            ),
            timeout=30,
        )
        assert text in condition(failed, "Collected")["message"]
        assert condition(failed, "Ready")["status"] == "False"
        innocent.check()
        assert "Traceback" not in platform.log_tail(400)
    finally:
        platform.delete("computeprovider", "hostile")
        platform.delete("regionpool", "hostile-pool")
