"""ClusterProfiles published by a real operator, on a host with SIG-Multicluster's own CRD.

The CRD comes from the cluster-inventory-api module Kueue v0.17.0 requires (never
hand-written). A member provider gets its profile, with the member's real /version and
conditions and properties from its status; an idle minute writes nothing; a change is
written; deleting the provider deletes the profile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedcompute.kube.host import Host
from fedcompute.local import cluster
from tests.conftest import MemberFactory, require_tool
from tests.integration.operator_harness import (
    Platform,
    condition,
    member_provider,
    region_pool,
    start_platform,
    wait_for,
)

pytestmark = pytest.mark.integration

NS = "fleet"
PROFILES = f"/apis/multicluster.x-k8s.io/v1alpha1/namespaces/{NS}/clusterprofiles"


def _prepare(host: cluster.Cluster) -> None:
    from tests.kueue_harness import install_cluster_profile_crd

    install_cluster_profile_crd(host)
    host.kubectl("create", "namespace", NS)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    from fedcompute.local import thirdparty

    require_tool("cluster-inventory-api CRD", thirdparty.cluster_profile_crd)
    log = Path(tmp_path_factory.mktemp("profiles")) / "operator.log"
    yield from start_platform(
        "fc-profiles",
        log,
        extra_args=(f"--cluster-profiles-namespace={NS}",),
        prepare=_prepare,
    )


def profile(platform: Platform, name: str) -> dict[str, Any] | None:
    return platform.get(f"{PROFILES}/{name}")


def conditions_of(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in body["status"]["conditions"]}


def properties_of(body: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in body["status"]["properties"]}


def test_profile_lifecycle(platform: Platform, member_cluster: MemberFactory) -> None:
    member = member_cluster("profiled", nodes=2, node_gpus=8, gpu_model="NVIDIA-H100-80GB-HBM3")
    platform.kubeconfig_secret("profiled-kubeconfig", member.reader_kubeconfig())
    provider = member_provider("profiled", "east", "profiled-kubeconfig")
    provider["spec"].update({"displayName": "Profiled Lab", "zone": "east-1", "sector": "research"})
    platform.apply(provider)

    body = wait_for(
        "the member's ClusterProfile, collected and unclaimed",
        lambda: (
            (p := profile(platform, "profiled"))
            and p.get("status", {}).get("version")
            and conditions_of(p).get("ControlPlaneHealthy") == ("True", "Collected")
            and p
        ),
        timeout=60,
    )
    assert body["metadata"]["labels"]["x-k8s.io/cluster-manager"] == "fedcompute"
    assert body["spec"] == {"clusterManager": {"name": "fedcompute"}, "displayName": "Profiled Lab"}
    member_api = Host.from_kubeconfig(str(member.kubeconfig))
    try:
        version = member_api.request("GET", "/version")
    finally:
        member_api.close()
    assert body["status"]["version"]["kubernetes"] == version["gitVersion"]
    assert conditions_of(body)["Joined"] == ("False", "NoMatchingPool")
    props = properties_of(body)
    assert props == {
        "fedcompute.io/region": "east",
        "fedcompute.io/zone": "east-1",
        "fedcompute.io/sector": "research",
        "fedcompute.io/accelerator-models": "NVIDIA-H100-80GB-HBM3",
    }
    owner = body["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ComputeProvider", "profiled")

    # Idle: collections every 5 s change nothing in the profile, so nothing is written.
    before = body["metadata"]["resourceVersion"]
    time.sleep(60)
    idle = profile(platform, "profiled")
    assert idle is not None and idle["metadata"]["resourceVersion"] == before

    # A change (a pool claims it) is written, with Joined and the pool property.
    platform.apply(region_pool("profiled-pool", regions=["east"]))
    joined = wait_for(
        "Joined after the pool claims the provider",
        lambda: (
            (p := profile(platform, "profiled"))
            and conditions_of(p).get("Joined") == ("True", "Claimed")
            and p
        ),
        timeout=45,  # at most one write per 30 s
    )
    assert properties_of(joined)["fedcompute.io/pool"] == "profiled-pool"
    assert condition(platform.provider("profiled"), "Claimed")["status"] == "True"

    # A ClusterProfile of another manager is never touched (its provider has none of ours).
    platform.apply(
        {
            "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "kind": "ClusterProfile",
            "metadata": {"name": "foreign", "namespace": NS},
            "spec": {"clusterManager": {"name": "someone-else"}},
        }
    )

    platform.delete("computeprovider", "profiled", wait=True)
    wait_for("the profile deleted with its provider", lambda: profile(platform, "profiled") is None)
    assert profile(platform, "foreign") is not None
