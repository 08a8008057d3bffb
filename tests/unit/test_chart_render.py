"""The Helm chart's values and dashboard, checked as files (no helm needed).

The schema is closed and described, every value is declared and documented, and the
dashboard is well formed. What ``helm template`` makes of them is tested in
tests/integration/test_chart_render.py; what the apiserver makes of that, in
tests/integration/test_chart.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from fedcompute import deploy

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / deploy.CHART
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _schema_objects(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from _schema_objects(child, f"{path}.{key}")


def test_schema_is_closed_and_described() -> None:
    for path, node in _schema_objects(SCHEMA):
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '<root>'} is open"
        if path:
            assert node.get("description"), f"{path} has no description"


def _documented(lines: list[str], line: int) -> bool:
    """Whether the key on 0-based ``line`` has a ``# --`` comment block right above it."""
    i = line - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        if lines[i].strip().startswith("# --"):
            return True
        i -= 1
    return False


def test_every_value_is_in_the_schema_and_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    lines = text.splitlines()
    missing_doc: list[str] = []

    def walk(node: yaml.MappingNode, schema: dict[str, Any], path: str) -> None:
        props = schema.get("properties") or {}
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value
            seen.add(key)
            where = f"{path}.{key}".lstrip(".")
            assert key in props, f"values.yaml has {where}, which the schema does not declare"
            child = props[key]
            if "properties" in child:
                assert isinstance(value_node, yaml.MappingNode), where
                walk(value_node, child, where)
            elif not _documented(lines, key_node.start_mark.line):
                missing_doc.append(where)
        unused = set(props) - seen - {"global"}
        assert not unused, f"the schema declares {sorted(unused)} under {path or '<root>'}"

    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    walk(root, SCHEMA, "")
    assert not missing_doc, f"values without a '# --' comment: {missing_doc}"


def test_dashboard_panels_are_well_formed() -> None:
    board = deploy.dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"] for p in board["panels"])
    for word in ("pool", "region", "model", "Stale"):
        assert word in titles, word
    variables = {v["name"] for v in board["templating"]["list"]}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable in variables | {"__rate_interval"}, variable


def test_high_availability_values_default_to_drains_and_spreading() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    props = SCHEMA["properties"]
    policy = props["podDisruptionBudget"]["properties"]["unhealthyPodEvictionPolicy"]
    assert policy["enum"] == ["IfHealthyBudget", "AlwaysAllow"]
    assert values["podDisruptionBudget"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    anti = props["podAntiAffinity"]["properties"]
    assert anti["mode"]["enum"] == ["soft", "hard", "none"]
    assert values["podAntiAffinity"] == {"mode": "soft", "topologyKey": "kubernetes.io/hostname"}
    assert re.fullmatch(anti["topologyKey"]["pattern"], "topology.kubernetes.io/zone")
    assert not re.fullmatch(anti["topologyKey"]["pattern"], "not a key")


def test_kueue_and_cluster_profiles_default_to_off() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kueue"] == {"enabled": False}
    assert values["clusterProfiles"] == {"namespace": ""}
    props = SCHEMA["properties"]
    assert props["kueue"]["properties"]["enabled"]["type"] == "boolean"
    assert props["kueue"]["required"] == ["enabled"]
    namespace = props["clusterProfiles"]["properties"]["namespace"]
    assert namespace["maxLength"] == 63
    # A namespace name is a DNS label; empty means off.
    for good in ("", "fleet", "fleet-system", "a1"):
        assert re.fullmatch(namespace["pattern"], good), good
    for bad in ("Fleet", "fleet_system", "-fleet", "fleet-", "fleet.system"):
        assert not re.fullmatch(namespace["pattern"], bad), bad
    # The comments say which flag each value turns on and which rights come with it.
    text = (CHART / "values.yaml").read_text()
    for words in ("--kueue", "--cluster-profiles-namespace", "clusterprofiles/status"):
        assert words in text, words
