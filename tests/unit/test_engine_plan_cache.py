"""The engine re-plans a provider only when something its plan depends on changed."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from fedcompute.api.provider import ComputeProvider
from fedcompute.capacity.claims import Claim
from fedcompute.reconcile.engine import Engine

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLAIM = Claim(pool="pool-a", priority=0)


def _static(name: str = "p", cpu: str = "64") -> dict[str, Any]:
    return {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": name, "generation": 1, "resourceVersion": "1"},
        "spec": {"region": "r", "source": {"static": {"resources": {"cpu": cpu}}}},
    }


def _member(name: str = "m") -> dict[str, Any]:
    body = _static(name)
    body["spec"]["source"] = {"kubernetes": {"kubeconfigSecretRef": {"name": "s"}}}
    return body


def _engine() -> Engine:
    return Engine(host=None)  # type: ignore[arg-type] - planning makes no API call


def _plan(engine: Engine, body: dict[str, Any], now: datetime = T0, claim: Claim = CLAIM) -> Any:
    engine.observe_provider(None, body)
    provider = ComputeProvider.model_validate(body)
    return engine._plan_provider(provider, claim, now)


def test_the_echo_of_its_own_status_write_reuses_the_plan() -> None:
    engine = _engine()
    body = _static()
    first = _plan(engine, body)
    echoed = copy.deepcopy(body)
    echoed["status"] = first.status_wire
    echoed["metadata"]["resourceVersion"] = "2"
    assert _plan(engine, echoed, T0 + timedelta(seconds=5)) is first


def test_a_spec_change_a_new_claim_or_a_foreign_status_edit_re_plan() -> None:
    engine = _engine()
    first = _plan(engine, _static())
    assert _plan(engine, _static(cpu="128")) is not first
    second = _plan(engine, _static(cpu="128"))
    assert _plan(engine, _static(cpu="128"), claim=Claim(pool="pool-b", priority=1)) is not second
    edited = _static(cpu="128")
    edited["status"] = {"pool": "someone-else"}
    third = _plan(engine, edited, claim=Claim(pool="pool-b", priority=1))
    assert third.status.pool == "pool-b"


def test_member_providers_are_always_planned() -> None:
    engine = _engine()
    body = _member()
    first = _plan(engine, body)
    assert _plan(engine, body) is not first
