"""Leader election, decided without a cluster: which Lease to write, and when to act.

What the apiserver makes of these bodies (resourceVersion races, two real replicas taking
over from each other) is tested in tests/integration/test_replicas.py.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fedcompute.reconcile.leadership import (
    Action,
    Decision,
    Tenure,
    decide,
    next_tenure,
    parse_micro_time,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
STAMP = "2025-06-01T12:00:00.250000Z"
ME = "replica-a"
OTHER = "replica-b"
DURATION = 15.0
RENEW_EVERY = 5.0


def micro(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease(**spec: Any) -> dict[str, Any]:
    """A Lease as the apiserver returns it; ``spec`` entries set to None are left out."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "fedcompute-ha",
            "namespace": "fedcompute-system",
            "resourceVersion": "4711",
            "uid": "5c2d0c4e-0000-4000-8000-000000000001",
        },
        "spec": {k: v for k, v in spec.items() if v is not None},
    }


def held_by(holder: str, age: float, **spec: Any) -> dict[str, Any]:
    """A Lease of ``holder``, renewed ``age`` seconds before NOW (by NOW's clock)."""
    fields: dict[str, Any] = {
        "holderIdentity": holder,
        "leaseDurationSeconds": 15,
        "renewTime": micro(NOW - timedelta(seconds=age)),
        "acquireTime": "2025-06-01T11:00:00.000000Z",
        "leaseTransitions": 3,
    }
    fields.update(spec)
    return lease(**fields)


def decide_at(
    observed: dict[str, Any] | None,
    *,
    now: datetime = NOW,
    identity: str = ME,
    duration: float = DURATION,
) -> Decision:
    return decide(
        observed,
        identity=identity,
        now=now,
        duration=duration,
        namespace="fedcompute-system",
        name="fedcompute-ha",
    )


# --- the election rule ----------------------------------------------------------------------


def test_absent_lease_is_created_held_from_now() -> None:
    decision = decide_at(None)
    assert decision.action is Action.CREATE
    assert decision.body == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "fedcompute-ha", "namespace": "fedcompute-system"},
        "spec": {
            "holderIdentity": ME,
            "leaseDurationSeconds": 15,
            "renewTime": STAMP,
            "acquireTime": STAMP,
            "leaseTransitions": 0,
        },
    }


def test_own_lease_is_renewed_keeping_acquire_time_and_transitions() -> None:
    observed = held_by(ME, age=4, preferredHolder=ME, strategy="OldestEmulationVersion")
    before = copy.deepcopy(observed)
    decision = decide_at(observed)
    assert decision.action is Action.RENEW
    assert decision.body == {
        **before,
        "spec": {
            "holderIdentity": ME,
            "leaseDurationSeconds": 15,
            "renewTime": STAMP,
            "acquireTime": "2025-06-01T11:00:00.000000Z",
            "leaseTransitions": 3,
            "preferredHolder": ME,
            "strategy": "OldestEmulationVersion",
        },
    }
    assert decision.body["metadata"]["resourceVersion"] == "4711"  # the replace is guarded
    assert observed == before, "the observed Lease is not modified"


def test_own_expired_lease_is_renewed_not_taken_over() -> None:
    """Still this replica's: no transition, whatever its age."""
    decision = decide_at(held_by(ME, age=3600))
    assert decision.action is Action.RENEW
    assert decision.body is not None
    assert decision.body["spec"]["leaseTransitions"] == 3
    assert decision.body["spec"]["acquireTime"] == "2025-06-01T11:00:00.000000Z"


@pytest.mark.parametrize("age", [0.0, 1.0, 14.999_999, 15.0])
def test_someone_elses_fresh_lease_is_left_alone(age: float) -> None:
    decision = decide_at(held_by(OTHER, age=age))
    assert decision.action is Action.STAND_BY
    assert decision.body is None


@pytest.mark.parametrize("age", [15.000_001, 16.0, 3600.0])
def test_someone_elses_expired_lease_is_taken_over(age: float) -> None:
    observed = held_by(OTHER, age=age, preferredHolder=OTHER)
    decision = decide_at(observed)
    assert decision.action is Action.TAKE_OVER
    assert decision.body is not None
    assert decision.body["metadata"] == observed["metadata"]  # resourceVersion: one winner
    assert decision.body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "renewTime": STAMP,
        "acquireTime": STAMP,
        "leaseTransitions": 4,
        "preferredHolder": OTHER,
    }


@pytest.mark.parametrize(
    "renew_time",
    [None, "", "yesterday", "2025-13-01T00:00:00.000000Z", 1_748_779_200, ["2025"]],
    ids=["absent", "empty", "words", "bad-month", "number", "list"],
)
def test_missing_or_garbled_renew_time_leaves_the_lease_free(renew_time: object) -> None:
    decision = decide_at(held_by(OTHER, age=0, renewTime=renew_time))
    assert decision.action is Action.TAKE_OVER
    assert decision.body is not None
    assert decision.body["spec"]["renewTime"] == STAMP


@pytest.mark.parametrize("holder", [None, ""], ids=["absent", "empty"])
def test_released_lease_is_taken_at_once(holder: str | None) -> None:
    """No holder means released (client-go writes an empty holderIdentity): no waiting."""
    decision = decide_at(held_by(OTHER, age=0, holderIdentity=holder))
    assert decision.action is Action.TAKE_OVER
    assert decision.body is not None
    assert decision.body["spec"]["leaseTransitions"] == 4


def test_lease_without_spec_is_taken_over_from_zero_transitions() -> None:
    observed = lease()
    del observed["spec"]
    decision = decide_at(observed)
    assert decision.action is Action.TAKE_OVER
    assert decision.body is not None
    assert decision.body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "renewTime": STAMP,
        "acquireTime": STAMP,
        "leaseTransitions": 1,
    }


@pytest.mark.parametrize(
    ("transitions", "expected"),
    [(None, 1), (0, 1), (3, 4), (2**31 - 2, 2**31 - 1), (-5, 1), ("7", 1), (True, 1), (2.5, 1)],
    ids=["absent", "zero", "three", "large", "negative", "string", "bool", "float"],
)
def test_lease_transitions_count_each_change_of_holder(transitions: object, expected: int) -> None:
    decision = decide_at(held_by(OTHER, age=60, leaseTransitions=transitions))
    assert decision.body is not None
    assert decision.body["spec"]["leaseTransitions"] == expected


def test_the_holders_own_duration_decides_freshness() -> None:
    """The holder said how long its Lease lasts; this replica's setting does not override it."""
    long_lived = held_by(OTHER, age=30, leaseDurationSeconds=60)
    assert decide_at(long_lived).action is Action.STAND_BY
    short_lived = held_by(OTHER, age=10, leaseDurationSeconds=5)
    assert decide_at(short_lived).action is Action.TAKE_OVER


@pytest.mark.parametrize(
    "stated",
    [None, 0, -15, "15", True, float("nan")],
    ids=["absent", "zero", "negative", "string", "bool", "nan"],
)
def test_unusable_lease_duration_falls_back_to_ours(stated: object) -> None:
    observed = held_by(OTHER, age=14, leaseDurationSeconds=stated)
    assert decide_at(observed, duration=15).action is Action.STAND_BY
    assert decide_at(observed, duration=10).action is Action.TAKE_OVER


@pytest.mark.parametrize(("duration", "written"), [(15.0, 15), (2.5, 3), (0.2, 1), (0.0, 1)])
def test_written_duration_is_whole_seconds_never_shorter(duration: float, written: int) -> None:
    decision = decide_at(None, duration=duration)
    assert decision.body is not None
    assert decision.body["spec"]["leaseDurationSeconds"] == written


def test_times_are_written_in_utc_whatever_the_clocks_zone() -> None:
    shanghai = NOW.astimezone(timezone(timedelta(hours=8)))
    decision = decide_at(None, now=shanghai)
    assert decision.body is not None
    assert decision.body["spec"]["renewTime"] == STAMP
    assert decision.body["spec"]["acquireTime"] == STAMP


def test_clock_skew_shifts_the_deadline_by_the_skew() -> None:
    """Freshness is the holder's renewTime against this replica's clock.

    A holder whose clock runs ahead is honoured for as much longer (a renewTime in the
    future is fresh); one that lags by more than ``duration`` is taken over although it
    has just renewed, which is why replicas' clocks must agree within a renew period.
    """
    ahead = held_by(OTHER, age=-10)  # written by a clock 10 s ahead, just now
    assert decide_at(ahead).action is Action.STAND_BY
    assert decide_at(ahead, now=NOW + timedelta(seconds=25)).action is Action.STAND_BY
    assert decide_at(ahead, now=NOW + timedelta(seconds=26)).action is Action.TAKE_OVER
    lagging = held_by(OTHER, age=20)  # written by a clock 20 s behind, just now
    assert decide_at(lagging).action is Action.TAKE_OVER


def test_two_replicas_hand_over_through_the_written_bodies() -> None:
    """Each replica's write is exactly what the other then observes."""
    first = decide_at(None, identity=ME).body
    assert first is not None
    assert decide_at(first, identity=OTHER).action is Action.STAND_BY
    later = NOW + timedelta(seconds=DURATION + 1)
    taken = decide_at(first, identity=OTHER, now=later)
    assert taken.action is Action.TAKE_OVER
    assert taken.body is not None
    assert taken.body["spec"]["leaseTransitions"] == 1
    assert decide_at(taken.body, identity=ME, now=later).action is Action.STAND_BY
    renewed = decide_at(taken.body, identity=OTHER, now=later + timedelta(seconds=5))
    assert renewed.action is Action.RENEW
    assert renewed.body is not None
    assert renewed.body["spec"]["acquireTime"] == micro(later)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-01T12:00:00.250000Z", NOW),
        ("2025-06-01T12:00:00.25Z", NOW),
        ("2025-06-01T20:00:00.250000+08:00", NOW),
        ("2025-06-01T12:00:00.250000", NOW),
        ("2025-06-01T12:00:00Z", NOW.replace(microsecond=0)),
        ("not a time", None),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_parse_micro_time(text: object, expected: datetime | None) -> None:
    assert parse_micro_time(text) == expected


# --- the timing rule ------------------------------------------------------------------------


def run_attempts(outcomes: str, *, start: float = 1000.0) -> list[tuple[float, bool]]:
    """(time, leading) after each attempt, one every RENEW_EVERY; ``H`` held, ``-`` not."""
    tenure = Tenure()
    trace = []
    for n, outcome in enumerate(outcomes):
        now = start + n * RENEW_EVERY
        tenure = next_tenure(
            tenure, held=outcome == "H", now=now, duration=DURATION, renew_every=RENEW_EVERY
        )
        trace.append((now - start, tenure.leading))
    return trace


def test_a_standby_never_starts_without_the_lease() -> None:
    assert [leading for _, leading in run_attempts("-----")] == [False] * 5


def test_leading_starts_with_the_first_held_attempt() -> None:
    tenure = next_tenure(Tenure(), held=True, now=42.0, duration=15, renew_every=5)
    assert tenure == Tenure(leading=True, last_held=42.0)


def test_failed_renewals_stop_leading_a_renew_period_before_expiry() -> None:
    # held at 0; failures at 5 and 10 are tolerated (10 is not past 15 - 5); at 15 it stops.
    assert run_attempts("H---") == [(0, True), (5, True), (10, True), (15, False)]


def test_one_success_resets_the_countdown() -> None:
    assert [leading for _, leading in run_attempts("H--H--H---")] == [True] * 9 + [False]


def test_leading_resumes_when_the_lease_is_won_again() -> None:
    assert [leading for _, leading in run_attempts("H---H")] == [True, True, True, False, True]


def test_stopping_keeps_the_time_of_the_last_tenure() -> None:
    leading = Tenure(leading=True, last_held=100.0)
    stopped = next_tenure(leading, held=False, now=111.0, duration=15, renew_every=5)
    assert stopped == Tenure(leading=False, last_held=100.0)
    assert next_tenure(stopped, held=False, now=200.0, duration=15, renew_every=5) == stopped


@pytest.mark.parametrize(("duration", "renew_every"), [(15, 5), (10, 2), (30, 10), (6, 5)])
def test_the_holder_stops_before_a_standby_may_take_over(
    duration: float, renew_every: float
) -> None:
    """With instant attempts, acting stops no later than the Lease can be seen expired."""
    tenure = next_tenure(Tenure(), held=True, now=0.0, duration=duration, renew_every=renew_every)
    now = 0.0
    while tenure.leading:
        now += renew_every
        tenure = next_tenure(
            tenure, held=False, now=now, duration=duration, renew_every=renew_every
        )
    assert now <= duration  # a standby takes over only once now - renewTime > duration
