"""RFC 7386 merge patches computed from observed and wanted documents."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from fedcompute.patches import merge_patch


def apply(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, MergePatch(Target, Patch)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result


CASES = [
    pytest.param({}, {}, {}, id="both-empty"),
    pytest.param({"a": 1, "b": [1]}, {"a": 1, "b": [1]}, {}, id="equal"),
    pytest.param({"a": 1}, {"a": 2}, {"a": 2}, id="scalar-changed"),
    pytest.param({}, {"a": "x"}, {"a": "x"}, id="key-added"),
    pytest.param({"a": 1, "b": 2}, {"a": 1}, {"b": None}, id="key-removed"),
    pytest.param({"a": None}, {}, {"a": None}, id="null-key-removed"),
    pytest.param(
        {"m": {"x": 1, "y": 2, "z": {"deep": 1}}},
        {"m": {"x": 1, "y": 3, "z": {"deep": 1}}},
        {"m": {"y": 3}},
        id="nested-only-difference",
    ),
    pytest.param(
        {"m": {"x": 1, "y": 2}}, {"m": {"x": 1}}, {"m": {"y": None}}, id="nested-key-removed"
    ),
    pytest.param({"m": {"x": 1}}, {"m": {"x": 1}}, {}, id="nested-equal"),
    pytest.param({"m": {"x": 1}}, {}, {"m": None}, id="whole-map-removed"),
    pytest.param({"m": {"x": 1}}, {"m": {}}, {"m": {"x": None}}, id="map-emptied"),
    pytest.param({}, {"m": {"x": {"y": 1}}}, {"m": {"x": {"y": 1}}}, id="new-nested-map"),
    pytest.param({"m": 5}, {"m": {"x": 1}}, {"m": {"x": 1}}, id="scalar-to-map"),
    pytest.param({"m": {"x": 1}}, {"m": [1]}, {"m": [1]}, id="map-to-list"),
    pytest.param({"l": [1, 2, 3]}, {"l": [1, 3]}, {"l": [1, 3]}, id="list-replaced-whole"),
    pytest.param(
        {"l": [{"type": "Ready", "status": "True"}]},
        {"l": [{"type": "Ready", "status": "False"}]},
        {"l": [{"type": "Ready", "status": "False"}]},
        id="list-of-maps-replaced-whole",
    ),
    pytest.param({"l": []}, {"l": []}, {}, id="empty-lists-equal"),
]


@pytest.mark.parametrize(("observed", "wanted", "expected"), CASES)
def test_merge_patch(observed: dict[str, Any], wanted: dict[str, Any], expected: Any) -> None:
    assert merge_patch(observed, wanted) == expected


@pytest.mark.parametrize(("observed", "wanted", "expected"), CASES)
def test_applying_the_patch_to_observed_gives_wanted(
    observed: dict[str, Any], wanted: dict[str, Any], expected: Any
) -> None:
    # None values in observed are absent keys to a JSON reader; wanted has none.
    before = {k: v for k, v in observed.items() if v is not None}
    assert apply(before, merge_patch(observed, wanted)) == wanted


def test_inputs_are_not_modified() -> None:
    observed = {"m": {"x": 1, "y": 2}, "l": [1]}
    wanted = {"m": {"x": 2}, "n": {"z": 1}}
    frozen = (json.dumps(observed), json.dumps(wanted))
    merge_patch(observed, wanted)
    assert (json.dumps(observed), json.dumps(wanted)) == frozen


def _documents() -> list[dict[str, Any]]:
    """A small family of status-like documents, mixing maps, lists and scalars."""
    parts: list[dict[str, Any]] = [
        {},
        {"capacity": {"cpu": "4", "memory": "1Gi"}},
        {"capacity": {"cpu": "8"}},
        {"capacity": {"cpu": "4", "memory": "1Gi", "nvidia.com/gpu": "2"}},
        {"conditions": [{"type": "Ready", "status": "True"}]},
        {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Collected"}]},
        {"nodes": {"total": 2, "ready": 1}, "pool": "a"},
        {"nodes": {"total": 2}, "pool": "b", "extra": {"deep": {"er": [1, {"x": 1}]}}},
        {"extra": {"deep": {"er": "flat"}}},
    ]
    docs: list[dict[str, Any]] = []
    for a, b in itertools.combinations_with_replacement(parts, 2):
        doc = copy.deepcopy(a)
        for key, value in b.items():
            doc.setdefault(key, copy.deepcopy(value))
        docs.append(doc)
    return docs


def test_property_patch_reaches_wanted_for_every_pair() -> None:
    docs = _documents()
    pairs = 0
    for observed, wanted in itertools.product(docs, docs):
        patch = merge_patch(observed, wanted)
        assert apply(observed, patch) == wanted
        assert (patch == {}) == (observed == wanted)
        # Only what differs is sent: no key of the patch is redundant.
        for key in patch:
            assert observed.get(key) != wanted.get(key)
        pairs += 1
    assert pairs > 1000
