"""The in-memory world keeps the newest copy; backoff is per object and per write stream."""

from __future__ import annotations

from typing import Any

import pytest

from fedcompute.intents import CreateNode, PatchNode, PatchStatus, PostEvent, SetFinalizers
from fedcompute.kube.actuator import Outcome
from fedcompute.reconcile.backoff import Backoff
from fedcompute.reconcile.world import META, NODE, STATUS, World, newer_or_same, stream
from tests.unit.builders import static

P = ("computeproviders", "a")


def body(rv: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": "fc-a", "resourceVersion": rv}, **extra}


@pytest.mark.parametrize(
    ("incoming", "current", "replaces"),
    [
        ("5", None, True),
        ("5", "4", True),
        ("5", "5", True),
        ("4", "5", False),
        ("10", "9", True),  # numbers, not strings
        ("9", "10", False),
        ("abc", "5", True),  # not comparable: the newcomer wins
    ],
)
def test_newer_or_same(incoming: str, current: str | None, replaces: bool) -> None:
    assert newer_or_same(body(incoming), body(current) if current else None) is replaces


def test_a_write_answer_older_than_the_watch_copy_never_replaces_it() -> None:
    w = World()
    w.observe(
        "computeproviders",
        "MODIFIED",
        {**static("a"), "metadata": {"name": "a", "resourceVersion": "7"}},
    )
    stale = {**static("a"), "metadata": {"name": "a", "resourceVersion": "6"}}
    w.apply([Outcome(PatchStatus(P, {}), "ok", (("computeproviders", "a", stale),))])
    assert w.providers["a"].resource_version == "7"
    fresh = {**static("a"), "metadata": {"name": "a", "resourceVersion": "8"}}
    w.apply([Outcome(PatchStatus(P, {}), "ok", (("computeproviders", "a", fresh),))])
    assert w.providers["a"].resource_version == "8"


def test_an_older_watch_event_does_not_undo_a_newer_answer() -> None:
    w = World()
    w.observe(
        "computeproviders",
        "ADDED",
        {**static("a"), "metadata": {"name": "a", "resourceVersion": "9"}},
    )
    w.observe(
        "computeproviders",
        "MODIFIED",
        {**static("a"), "metadata": {"name": "a", "resourceVersion": "8"}},
    )
    assert w.providers["a"].resource_version == "9"


def test_an_answer_never_resurrects_a_deleted_object() -> None:
    w = World()
    w.observe(
        "computeproviders",
        "ADDED",
        {**static("a"), "metadata": {"name": "a", "resourceVersion": "1"}},
    )
    w.observe("computeproviders", "DELETED", {"metadata": {"name": "a"}})
    late = {**static("a"), "metadata": {"name": "a", "resourceVersion": "2"}}
    w.apply([Outcome(PatchStatus(P, {}), "ok", (("computeproviders", "a", late),))])
    assert "a" not in w.providers


def test_node_answers_and_deletions() -> None:
    w = World()
    w.apply(
        [
            Outcome(
                CreateNode(P, "fc-a", {}),
                "ok",
                (("nodes", "fc-a", body("3")), ("leases", "fc-a", body("1"))),
            )
        ]
    )
    assert set(w.nodes) == {"fc-a"} and set(w.leases) == {"fc-a"}
    w.apply([Outcome(PatchNode(P, "fc-a", None, {}), "ok", (("nodes", "fc-a", body("2")),))])
    assert w.nodes["fc-a"]["metadata"]["resourceVersion"] == "3"
    w.apply([Outcome(PatchNode(P, "fc-a", None, {}), "ok", (("nodes", "fc-a", None),))])
    assert w.nodes == {}


def test_refusals_are_kept_per_stream_until_that_stream_succeeds() -> None:
    w = World()
    node = CreateNode(P, "fc-a", {})
    w.apply([Outcome(node, "rejected", code=422, message="bad label")])
    assert w.snapshot().rejections[P].what == "create Node fc-a"
    w.apply([Outcome(PatchStatus(P, {}), "ok")])  # another stream's success
    assert P in w.snapshot().rejections
    w.apply([Outcome(node, "ok")])
    assert P not in w.snapshot().rejections
    w.apply([Outcome(PatchStatus(P, {}), "rejected", code=422, message="no")])
    assert w.snapshot().rejections[P].status_write
    w.forget_rejections(P)
    assert w.rejections == {}


def test_streams() -> None:
    assert stream(PatchStatus(P, {})) == STATUS
    assert stream(PostEvent(P, "ComputeProvider", "", "", "Normal", "x", "y")) == STATUS
    assert stream(SetFinalizers(P, (), "1")) == META
    assert stream(CreateNode(P, "fc-a", {})) == NODE


def test_backoff_doubles_per_key_and_resets() -> None:
    b = Backoff(initial=1.0, maximum=8.0)
    assert b.failed("a", 100.0) == 101.0
    assert b.failed("a", 101.0) == 103.0
    assert b.failed("a", 103.0) == 107.0
    assert b.failed("a", 107.0) == 115.0
    assert b.failed("a", 115.0) == 123.0  # capped at 8
    assert b.waiting("a", 120.0) and not b.waiting("b", 120.0)
    assert b.next_due(120.0) == 123.0
    b.succeeded("a")
    assert not b.waiting("a", 120.0) and b.next_due(120.0) is None
    assert b.failed("a", 200.0) == 201.0


def test_one_key_backing_off_never_delays_another() -> None:
    b = Backoff()
    for t in range(10):
        b.failed(("x", NODE), float(t))
    assert not b.waiting(("y", NODE), 5.0)
    assert not b.waiting(("x", STATUS), 5.0)
    b.forget(lambda key: isinstance(key, tuple) and key[0] == "x")
    assert not b.waiting(("x", NODE), 9.5)


def test_a_new_copy_reuses_the_parsed_model_until_its_spec_changes() -> None:
    w = World()
    body = {**static("a"), "metadata": {"name": "a", "resourceVersion": "1", "generation": 1}}
    w.observe("computeproviders", "ADDED", body)
    first = w.providers["a"].model
    w.observe(
        "computeproviders",
        "MODIFIED",
        {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}, "status": {"pool": "x"}},
    )
    assert w.providers["a"].model is first  # only the status changed
    changed = {**body, "spec": {**body["spec"], "region": "west"}}
    changed["metadata"] = {**body["metadata"], "resourceVersion": "3", "generation": 2}
    w.observe("computeproviders", "MODIFIED", changed)
    model = w.providers["a"].model
    assert model is not first and model is not None and model.spec.region == "west"
