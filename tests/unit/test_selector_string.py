"""Label selectors in the query-string form the API takes (``?labelSelector=``)."""

from __future__ import annotations

from typing import Any

import pytest

from fedcompute.api.common import LabelSelector
from fedcompute.kube.members import selector_string


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    req: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        req["values"] = list(values)
    return req


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param({"matchLabels": {"tier": "gold"}}, "tier=gold", id="one-label"),
        pytest.param(
            {"matchLabels": {"zone": "a", "app": "x", "example.com/role": "gpu"}},
            "app=x,example.com/role=gpu,zone=a",
            id="labels-sorted",
        ),
        pytest.param(
            {"matchExpressions": [expr("gpu", "In", "a100", "h100")]},
            "gpu in (a100,h100)",
            id="in",
        ),
        pytest.param(
            {"matchExpressions": [expr("pool", "NotIn", "spot")]},
            "pool notin (spot)",
            id="notin",
        ),
        pytest.param({"matchExpressions": [expr("gpu", "Exists")]}, "gpu", id="exists"),
        pytest.param(
            {"matchExpressions": [expr("example.com/drain", "DoesNotExist")]},
            "!example.com/drain",
            id="does-not-exist",
        ),
        pytest.param(
            {
                "matchLabels": {"tier": "gold"},
                "matchExpressions": [
                    expr("gpu", "Exists"),
                    expr("zone", "In", "b", "a"),
                    expr("cordon", "DoesNotExist"),
                ],
            },
            "tier=gold,gpu,zone in (b,a),!cordon",
            id="labels-then-expressions-in-order",
        ),
    ],
)
def test_selector_string(selector: dict[str, Any], expected: str) -> None:
    assert selector_string(LabelSelector.model_validate(selector)) == expected


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param(None, id="no-selector"),
        pytest.param(LabelSelector(), id="empty-selector"),
        pytest.param(LabelSelector(match_labels={}, match_expressions=[]), id="empty-parts"),
    ],
)
def test_selecting_everything_needs_no_query(selector: LabelSelector | None) -> None:
    assert selector_string(selector) is None


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"tier": "gold"},
        {"tier": "gold", "gpu": "h100"},
        {"tier": "gold", "gpu": "h100", "zone": "a"},
        {"tier": "gold", "gpu": "a100", "zone": "c"},
        {"tier": "gold", "gpu": "a100", "zone": "b", "cordon": ""},
        {"tier": "silver", "gpu": "a100", "zone": "b"},
    ],
)
def test_string_agrees_with_the_selectors_own_matching(labels: dict[str, str]) -> None:
    """The string, read with the apiserver's grammar, selects what ``matches`` selects."""
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"tier": "gold"},
            "matchExpressions": [
                expr("gpu", "Exists"),
                expr("zone", "In", "a", "b"),
                expr("zone", "NotIn", "c"),
                expr("cordon", "DoesNotExist"),
            ],
        }
    )
    text = selector_string(selector)
    assert text is not None
    assert _parse_and_match(text, labels) == selector.matches(labels)


def _parse_and_match(text: str, labels: dict[str, str]) -> bool:
    """A minimal reader of the selector grammar, enough for the strings built here."""
    requirements: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            requirements.append(text[start:i])
            start = i + 1
    requirements.append(text[start:])
    for req in requirements:
        if " notin (" in req:
            key, values = req.split(" notin (")
            if labels.get(key) in values.rstrip(")").split(","):
                return False
        elif " in (" in req:
            key, values = req.split(" in (")
            if labels.get(key) not in values.rstrip(")").split(","):
                return False
        elif "=" in req:
            key, value = req.split("=")
            if labels.get(key) != value:
                return False
        elif req.startswith("!"):
            if req[1:] in labels:
                return False
        elif req not in labels:
            return False
    return True
