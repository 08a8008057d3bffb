"""Capacity figures from node and pod JSON, and from static declarations."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

from fedcompute import quantities
from fedcompute.capacity import inventory
from fedcompute.capacity.inventory import AcceleratorInventory, DeclaredAccelerator

GPU = "nvidia.com/gpu"
MODEL_LABEL = "nvidia.com/gpu.product"
AMD_GPU = "amd.com/gpu"
AMD_LABEL = "amd.com/gpu.product-name"


def q(values: Mapping[str, str | int]) -> dict[str, Decimal]:
    return quantities.parse_map(values)


# --- builders ------------------------------------------------------------------------------


def container(
    name: str = "c",
    requests: dict[str, str] | None = None,
    *,
    limits: dict[str, str] | None = None,
    sidecar: bool = False,
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    body: dict[str, Any] = {"name": name, "image": "busybox", "resources": resources}
    if sidecar:
        body["restartPolicy"] = "Always"
    return body


def pod(
    *containers: dict[str, Any],
    init: tuple[dict[str, Any], ...] = (),
    overhead: dict[str, str] | None = None,
    pod_requests: dict[str, str] | None = None,
    node: str | None = "n1",
    phase: str = "Running",
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    if overhead is not None:
        spec["overhead"] = overhead
    if pod_requests is not None:
        spec["resources"] = {"requests": pod_requests}
    if node is not None:
        spec["nodeName"] = node
    return {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": spec,
        "status": {"phase": phase, **(status or {})},
    }


def node(
    name: str,
    capacity: dict[str, str],
    *,
    allocatable: dict[str, str] | None = None,
    ready: bool = True,
    unschedulable: bool = False,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"unschedulable": True} if unschedulable else {}
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": allocatable if allocatable is not None else capacity,
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
        },
    }


def summarize(
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    reserved: dict[str, str | int] | None = None,
) -> inventory.MemberInventory:
    return inventory.summarize_member(
        nodes,
        pods,
        accelerator_model_label=MODEL_LABEL,
        accelerator_resources=[GPU, AMD_GPU],
        reserved=q(reserved or {}),
    )


# --- effective requests --------------------------------------------------------------------

EFFECTIVE_CASES: list[tuple[str, dict[str, Any], dict[str, str | int]]] = [
    ("no containers", pod(), {}),
    (
        "containers are summed",
        pod(
            container("a", {"cpu": "100m", "memory": "1Gi"}),
            container("b", {"cpu": "200m", "memory": "1Gi"}),
        ),
        {"cpu": "300m", "memory": "2Gi"},
    ),
    (
        "missing requests count as zero",
        pod(container("a"), container("b", {"cpu": "100m"})),
        {"cpu": "100m"},
    ),
    (
        "limits are not requests",
        pod(container("a", limits={"cpu": "4", "memory": "1Gi"})),
        {},
    ),
    (
        "a larger init container wins",
        pod(
            container("a", {"cpu": "500m"}),
            container("b", {"cpu": "500m"}),
            init=(container("i", {"cpu": "2"}),),
        ),
        {"cpu": "2"},
    ),
    (
        "a smaller init container does not count",
        pod(container("a", {"cpu": "2"}), init=(container("i", {"cpu": "1"}),)),
        {"cpu": "2"},
    ),
    (
        "the maximum is taken key by key",
        pod(
            container("a", {"cpu": "1", "memory": "4Gi"}),
            init=(container("i", {"cpu": "2", "memory": "1Gi"}),),
        ),
        {"cpu": "2", "memory": "4Gi"},
    ),
    (
        "init containers do not add up",
        pod(
            container("a", {"cpu": "1"}),
            init=(container("i1", {"cpu": "3"}), container("i2", {"cpu": "3"})),
        ),
        {"cpu": "3"},
    ),
    (
        "a sidecar adds to the containers",
        pod(container("a", {"cpu": "1"}), init=(container("s", {"cpu": "1"}, sidecar=True),)),
        {"cpu": "2"},
    ),
    (
        "a sidecar before a regular init container adds to it",
        pod(
            container("a", {"cpu": "1"}),
            init=(
                container("s", {"cpu": "1"}, sidecar=True),
                container("i", {"cpu": "3"}),
            ),
        ),
        {"cpu": "4"},
    ),
    (
        "a sidecar after a regular init container does not add to it",
        pod(
            container("a", {"cpu": "1"}),
            init=(
                container("i", {"cpu": "3"}),
                container("s", {"cpu": "1"}, sidecar=True),
            ),
        ),
        {"cpu": "3"},
    ),
    (
        "the sidecars' running total is an init peak",
        pod(
            container("a", {"memory": "1Gi"}),
            init=(
                container("s1", {"cpu": "1"}, sidecar=True),
                container("s2", {"cpu": "1"}, sidecar=True),
            ),
        ),
        {"cpu": "2", "memory": "1Gi"},
    ),
    (
        "the sidecar example of the Kubernetes documentation",
        pod(
            container("a", {"cpu": "1"}),
            init=(
                container("i1", {"cpu": "2"}),
                container("s", {"cpu": "1"}, sidecar=True),
                container("i2", {"cpu": "1"}),
            ),
        ),
        {"cpu": "2"},
    ),
    (
        "overhead is added",
        pod(container("a", {"cpu": "1"}), overhead={"cpu": "250m", "memory": "120Mi"}),
        {"cpu": "1250m", "memory": "120Mi"},
    ),
    (
        "overhead is added after the init maximum",
        pod(
            container("a", {"cpu": "1"}),
            init=(container("i", {"cpu": "2"}),),
            overhead={"cpu": "100m"},
        ),
        {"cpu": "2100m"},
    ),
    (
        "extended resources are summed like any other",
        pod(container("a", {GPU: "2"}), container("b", {GPU: "1"})),
        {GPU: 3},
    ),
    (
        "pod-level requests replace cpu and memory only",
        pod(
            container("a", {"cpu": "1", "memory": "1Gi", GPU: "1"}),
            pod_requests={"cpu": "4", "memory": "8Gi"},
            overhead={"cpu": "100m"},
        ),
        {"cpu": "4100m", "memory": "8Gi", GPU: 1},
    ),
    (
        "an in-place resize counts the larger of spec and status",
        pod(
            container("a", {"cpu": "1", "memory": "2Gi"}),
            status={
                "containerStatuses": [
                    {"name": "a", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}
                ]
            },
        ),
        {"cpu": "2", "memory": "2Gi"},
    ),
    (
        "an infeasible resize counts what is actuated",
        pod(
            container("a", {"cpu": "64"}),
            status={
                "conditions": [
                    {"type": "PodResizePending", "status": "True", "reason": "Infeasible"}
                ],
                "containerStatuses": [
                    {
                        "name": "a",
                        "allocatedResources": {"cpu": "1"},
                        "resources": {"requests": {"cpu": "1"}},
                    }
                ],
            },
        ),
        {"cpu": "1"},
    ),
    (
        "fields of the wrong type count as absent",
        {"spec": {"containers": "oops", "initContainers": [42], "overhead": ["x"]}},
        {},
    ),
]


@pytest.mark.parametrize(
    ("pod_json", "expected"),
    [pytest.param(p, e, id=name) for name, p, e in EFFECTIVE_CASES],
)
def test_effective_pod_requests(pod_json: dict[str, Any], expected: dict[str, str]) -> None:
    assert inventory.effective_pod_requests(pod_json) == q(expected)


def test_a_malformed_quantity_is_an_error() -> None:
    with pytest.raises(quantities.QuantityError):
        inventory.effective_pod_requests(pod(container("a", {"cpu": "lots"})))


# --- malformed and out-of-range member quantities -------------------------------------------


def named(name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    body["metadata"] = {"name": name, "namespace": namespace}
    return body


BAD_QUANTITY_CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], str]] = [
    (
        "capacity beyond any quantity",
        [node("gpu-3", {"cpu": "4", "memory": "1e999999999"})],
        [],
        "node gpu-3 status.capacity[memory]: '1e999999999'",
    ),
    (
        "capacity above 2^63-1",
        [node("gpu-3", {"cpu": "4", "memory": "1e30"})],
        [],
        "node gpu-3 status.capacity[memory]: '1e30'",
    ),
    (
        "malformed allocatable",
        [node("n1", {"cpu": "4"}, allocatable={"cpu": "lots"})],
        [],
        "node n1 status.allocatable[cpu]: 'lots' is not a quantity",
    ),
    (
        "a null quantity",
        [node("n1", {"cpu": None})],  # type: ignore[dict-item]
        [],
        "node n1 status.capacity[cpu]: None is not a quantity",
    ),
    (
        "container request",
        [node("n1", {"cpu": "4"})],
        [named("train", "ml", pod(container("a", {"cpu": "1"}), container("b", {"cpu": "x"})))],
        "pod ml/train spec.containers[1].resources.requests[cpu]: 'x' is not a quantity",
    ),
    (
        "init container request",
        [node("n1", {"cpu": "4"})],
        [named("p", "default", pod(container(), init=(container("i", {"memory": "9e99"}),)))],
        "pod default/p spec.initContainers[0].resources.requests[memory]: '9e99'",
    ),
    (
        "overhead",
        [node("n1", {"cpu": "4"})],
        [named("p", "default", pod(container(), overhead={"cpu": "1e999999999"}))],
        "pod default/p spec.overhead[cpu]: '1e999999999'",
    ),
    (
        "pod-level request",
        [node("n1", {"cpu": "4"})],
        [named("p", "default", pod(container(), pod_requests={"memory": "-"}))],
        "pod default/p spec.resources.requests[memory]:",
    ),
    (
        "actuated resources of a resizing container",
        [node("n1", {"cpu": "4"})],
        [
            named(
                "p",
                "default",
                pod(
                    container("c", {"cpu": "1"}),
                    status={
                        "containerStatuses": [
                            {"name": "c", "resources": {"requests": {"cpu": "1e40"}}}
                        ]
                    },
                ),
            )
        ],
        "pod default/p status.containerStatuses[0].resources.requests[cpu]: '1e40'",
    ),
]


@pytest.mark.parametrize(
    ("nodes", "pods", "expected"),
    [pytest.param(n, p, e, id=name) for name, n, p, e in BAD_QUANTITY_CASES],
)
def test_a_bad_member_quantity_names_the_object_and_field(
    nodes: list[dict[str, Any]], pods: list[dict[str, Any]], expected: str
) -> None:
    with pytest.raises(quantities.QuantityError) as caught:
        summarize(nodes, pods)
    assert str(caught.value).startswith(expected)
    assert len(str(caught.value)) < 400


def test_bad_quantities_on_objects_that_do_not_count_are_ignored() -> None:
    """Allocatable of a node that is not Ready, and requests of pods on it, are never read."""
    sick = node("sick", {"cpu": "4"}, allocatable={"cpu": "lots"}, ready=False)
    stray = named("p", "default", pod(container("c", {"cpu": "lots"}), node="sick"))
    summary = summarize([sick, node("n1", {"cpu": "2"})], [stray])
    assert summary.allocatable == q({"cpu": "2"})


def test_hostile_names_and_values_are_shortened_and_quoted() -> None:
    name = "evil\nname" + "x" * 300
    bad = node(name, {"memory": "9" * 5000})
    with pytest.raises(quantities.QuantityError) as caught:
        summarize([bad], [])
    message = str(caught.value)
    assert "\n" not in message
    assert "x" * 50 not in message
    assert "9" * 50 not in message
    assert "status.capacity[memory]" in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("phase", "terminal"),
    [
        ("Pending", False),
        ("Running", False),
        ("Unknown", False),
        ("Succeeded", True),
        ("Failed", True),
    ],
)
def test_is_pod_terminal(phase: str, terminal: bool) -> None:
    assert inventory.is_pod_terminal(pod(phase=phase)) is terminal


def test_node_predicates() -> None:
    assert inventory.is_node_ready(node("n", {}))
    assert not inventory.is_node_ready(node("n", {}, ready=False))
    assert not inventory.is_node_ready({"metadata": {"name": "n"}})
    assert inventory.is_node_schedulable(node("n", {}))
    assert not inventory.is_node_schedulable(node("n", {}, unschedulable=True))


# --- member summaries ----------------------------------------------------------------------

SMALL = {"cpu": "8", "memory": "32Gi", "pods": "110"}


def test_only_ready_schedulable_nodes_are_allocatable() -> None:
    nodes = [
        node("ok", SMALL, allocatable={"cpu": "7", "memory": "30Gi", "pods": "110"}),
        node("down", SMALL, ready=False),
        node("cordoned", SMALL, unschedulable=True),
    ]
    summary = summarize(nodes, [])
    assert summary.capacity == q({"cpu": "24", "memory": "96Gi", "pods": "330"})
    assert summary.allocatable == q({"cpu": "7", "memory": "30Gi", "pods": "110"})
    assert summary.allocated == {}
    assert summary.available == summary.allocatable
    assert (summary.nodes_total, summary.nodes_ready, summary.nodes_counted) == (3, 2, 1)


def test_allocated_counts_live_pods_on_counted_nodes_only() -> None:
    nodes = [
        node("ok", SMALL),
        node("down", SMALL, ready=False),
        node("cordoned", SMALL, unschedulable=True),
    ]
    pods = [
        pod(container("a", {"cpu": "1", "memory": "1Gi"}), node="ok"),
        pod(container("a", {"cpu": "2"}), node="ok", phase="Pending"),
        pod(container("a", {"cpu": "4"}), node="ok", phase="Succeeded"),
        pod(container("a", {"cpu": "4"}), node="ok", phase="Failed"),
        pod(container("a", {"cpu": "4"}), node="down"),
        pod(container("a", {"cpu": "4"}), node="cordoned"),
        pod(container("a", {"cpu": "4"}), node=None),
        pod(container("a", {"cpu": "4"}), node="elsewhere"),
    ]
    summary = summarize(nodes, pods)
    # The Running and the Pending pod bound to "ok" hold a pod slot each.
    assert summary.allocated == q({"cpu": "3", "memory": "1Gi", "pods": 2})
    assert summary.available == q({"cpu": "5", "memory": "31Gi", "pods": "108"})


# One running pod on n1: it takes one of the node's 110 pod slots.
RESERVED_CASES: list[tuple[str, dict[str, str | int], dict[str, str | int]]] = [
    ("nothing reserved", {}, {"cpu": "6", "memory": "30Gi", "pods": "109"}),
    (
        "reserved is subtracted",
        {"cpu": "1", "memory": "2Gi"},
        {"cpu": "5", "memory": "28Gi", "pods": "109"},
    ),
    ("clamped at zero", {"cpu": "100"}, {"cpu": "0", "memory": "30Gi", "pods": "109"}),
    (
        "unknown resources are ignored",
        {"example.com/foo": "1"},
        {"cpu": "6", "memory": "30Gi", "pods": "109"},
    ),
    ("reserved pods are subtracted", {"pods": "9"}, {"cpu": "6", "memory": "30Gi", "pods": "100"}),
]


@pytest.mark.parametrize(
    ("reserved", "available"),
    [pytest.param(r, a, id=name) for name, r, a in RESERVED_CASES],
)
def test_reserved_is_subtracted_and_clamped(
    reserved: dict[str, str | int], available: dict[str, str | int]
) -> None:
    pods = [pod(container("a", {"cpu": "2", "memory": "2Gi"}), node="n1")]
    summary = summarize([node("n1", SMALL)], pods, reserved)
    assert summary.available == q(available)


def test_overcommitted_allocation_clamps_at_zero() -> None:
    pods = [pod(container("a", {"cpu": "12"}), node="n1")]
    summary = summarize([node("n1", SMALL)], pods)
    assert summary.allocated == q({"cpu": "12", "pods": 1})
    assert summary.available["cpu"] == 0
    assert summary.available["pods"] == 109


def test_accelerators_are_grouped_by_model() -> None:
    gpu8 = {**SMALL, GPU: "8"}
    a100 = {MODEL_LABEL: "A100"}
    h100 = {MODEL_LABEL: "H100"}
    nodes = [
        node("a1", gpu8, labels=a100),
        node("a2", gpu8, allocatable={**SMALL, GPU: "7"}, labels=a100),
        node("a3", gpu8, labels=a100, ready=False),
        node("h1", {**SMALL, GPU: "4"}, labels=h100),
        node("m1", {**SMALL, AMD_GPU: "8"}, labels={AMD_LABEL: "MI300X"}),
        node("cpu-only", SMALL, labels={MODEL_LABEL: "A100"}),
    ]
    pods = [
        pod(container("a", {GPU: "3"}), node="a1"),
        pod(container("a", {GPU: "8"}), node="a3"),
        pod(container("a", {GPU: "6"}), node="h1"),
    ]
    summary = summarize(nodes, pods)
    assert summary.accelerators == (
        # a1: 8 devices, 3 taken (5 free); a2: 7 of 8 allocatable (1 unhealthy, 7 free);
        # a3 is not Ready: its 8 devices are capacity only.
        AcceleratorInventory(
            "A100",
            GPU,
            nodes=3,
            capacity=24,
            allocatable=15,
            allocated=3,
            available=12,
            vendor="NVIDIA",
            resource_names=(GPU,),
            unhealthy=1,
            slots={"1": 12, "2": 5, "4": 2, "8": 0, "16": 0},
        ),
        # A pod asking 6 of h1's 4 devices takes the 4 there are, never more.
        AcceleratorInventory(
            "H100",
            GPU,
            nodes=1,
            capacity=4,
            allocatable=4,
            allocated=4,
            available=0,
            vendor="NVIDIA",
            resource_names=(GPU,),
            slots={"1": 0, "2": 0, "4": 0, "8": 0, "16": 0},
        ),
        AcceleratorInventory(
            "MI300X",
            AMD_GPU,
            nodes=1,
            capacity=8,
            allocatable=8,
            allocated=0,
            available=8,
            vendor="AMD",
            resource_names=(AMD_GPU,),
            slots={"1": 8, "2": 4, "4": 2, "8": 1, "16": 0},
        ),
    )
    assert summary.capacity[GPU] == 28
    assert summary.allocatable[GPU] == 19
    assert summary.allocated[GPU] == 9


def test_devices_without_a_model_label_are_counted_as_unknown_of_their_vendor() -> None:
    nodes = [
        node("x1", {**SMALL, GPU: "2"}),
        # The NVIDIA label names no AMD device: the AMD vendor reads its own labels only.
        node("m1", {**SMALL, AMD_GPU: "8"}, labels={MODEL_LABEL: "MI300X"}),
    ]
    pods = [pod(container("a", {GPU: "1"}), node="x1", phase="Succeeded")]
    summary = summarize(nodes, pods)
    assert [
        (a.model, a.vendor, a.capacity, a.available, a.identified) for a in summary.accelerators
    ] == [
        ("unknown-amd", "AMD", 8, 8, False),
        ("unknown-nvidia", "NVIDIA", 2, 2, False),
    ]


def test_an_empty_member() -> None:
    summary = summarize([], [pod(container("a", {"cpu": "1"}))])
    assert summary == inventory.MemberInventory(
        capacity={},
        allocatable={},
        allocated={},
        available={},
        nodes_total=0,
        nodes_ready=0,
        nodes_counted=0,
    )


# --- static summaries ----------------------------------------------------------------------


def test_static_summary() -> None:
    summary = inventory.summarize_static(
        q({"cpu": "512", "memory": "4Ti"}),
        [
            DeclaredAccelerator("A100", 8),
            DeclaredAccelerator("H100", 4),
            DeclaredAccelerator("A100", 8),
        ],
        q({"cpu": "16", GPU: "2", "example.com/foo": "1"}),
        4,
    )
    assert summary.capacity == q({"cpu": "512", "memory": "4Ti", GPU: 20})
    assert summary.allocatable == q({"cpu": "496", "memory": "4Ti", GPU: 18})
    assert summary.allocated == {}
    assert summary.available == summary.allocatable
    assert (summary.nodes_total, summary.nodes_ready, summary.nodes_counted) == (4, 4, 4)
    # The 2 reserved devices come off the first model by name (A100: 16 declared, 14 offered).
    assert summary.accelerators == (
        AcceleratorInventory(
            "A100",
            GPU,
            nodes=0,
            capacity=16,
            allocatable=14,
            allocated=0,
            available=14,
            resource_names=(GPU,),
        ),
        AcceleratorInventory(
            "H100",
            GPU,
            nodes=0,
            capacity=4,
            allocatable=4,
            allocated=0,
            available=4,
            resource_names=(GPU,),
        ),
    )


def test_static_declared_resources_win_over_accelerator_counts() -> None:
    summary = inventory.summarize_static(
        q({"cpu": "8", GPU: "6"}), [DeclaredAccelerator("A100", 8)], {}, 1
    )
    assert summary.capacity == q({"cpu": "8", GPU: 6})


def test_static_reserved_clamps_at_zero() -> None:
    summary = inventory.summarize_static(q({"cpu": "8"}), [], q({"cpu": "10"}), 1)
    assert summary.allocatable == q({"cpu": "0"})


COMPUTE_CASES: list[tuple[str, list[tuple[int, dict[str, str]]], dict[str, str]]] = [
    ("nothing", [], {}),
    ("one model", [(8, {"fp16": "312", "fp32": "19.5"})], {"fp16": "2496", "fp32": "156"}),
    (
        "models add up per precision",
        [(8, {"fp16": "312", "fp32": "19.5"}), (4, {"fp16": "989.5", "fp8": "1979"})],
        {"fp16": "6454", "fp32": "156", "fp8": "7916"},
    ),
    ("zero devices", [(0, {"fp16": "312"})], {"fp16": "0"}),
]


@pytest.mark.parametrize(
    ("models", "expected"),
    [pytest.param(m, e, id=name) for name, m, e in COMPUTE_CASES],
)
def test_compute_power(models: list[tuple[int, dict[str, str]]], expected: dict[str, str]) -> None:
    given = [(count, {k: Decimal(v) for k, v in per.items()}) for count, per in models]
    assert inventory.compute_power(given) == {k: Decimal(v) for k, v in expected.items()}
