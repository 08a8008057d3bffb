"""The member reader ClusterRole in the examples is exactly what a collection asks for."""

from __future__ import annotations

from pathlib import Path

import yaml

from fedcompute.kube import members

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "member-cluster" / "reader-rbac.yaml"


def test_example_reader_role_has_exactly_the_collection_rules() -> None:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    assert role["rules"] == [dict(rule) for rule in members.READER_RULES]


def test_reader_rules_cover_every_list_a_collection_makes() -> None:
    listed = {path.rsplit("/", 1)[-1] for _, path in members.DRA_LISTS} | {"nodes", "pods"}
    granted = {r for rule in members.READER_RULES for r in rule["resources"]}
    assert granted == listed
    assert all(rule["verbs"] == ["list"] for rule in members.READER_RULES)
