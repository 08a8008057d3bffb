"""The pinned test tools behave as their upstreams do, on small inputs with known answers.

Other tests trust these tools to stand in for Argo CD, kstatus and Prometheus, so each
is first held to what its upstream is known to do: Argo CD's sandbox and result handling,
kstatus's generic rules, and Prometheus's parse of a fedcompute-style query.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fedcompute.local import binaries
from tests import health_tools

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INVALID = {"status": "Unknown", "message": "Lua returned an invalid health status"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def pool(**fields: Any) -> dict[str, Any]:
    """A RegionPool-shaped custom object; ``metadata``/``status`` entries merge in."""
    obj: dict[str, Any] = {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "RegionPool",
        "metadata": {"name": "east", "generation": 1},
    }
    obj["metadata"].update(fields.pop("metadata", {}))
    obj.update(fields)
    return obj


@pytest.mark.parametrize(
    ("tool", "module"),
    [
        ("argocd-lua", f"github.com/yuin/gopher-lua {binaries.GOPHER_LUA_VERSION}"),
        ("kstatus", f"sigs.k8s.io/cli-utils {binaries.CLI_UTILS_VERSION}"),
        ("promql", f"github.com/prometheus/prometheus {binaries.PROMETHEUS_VERSION}"),
        ("flux-health", f"github.com/fluxcd/pkg/runtime {binaries.FLUX_RUNTIME_VERSION}"),
    ],
)
def test_the_wrapper_module_requires_the_pinned_version(tool: str, module: str) -> None:
    """The version in binaries.py (the cache key) is the one the module builds."""
    go_mod = (ROOT / "hack" / tool / "go.mod").read_text()
    assert re.search(rf"^\s*(require\s+)?{re.escape(module)}\s*$", go_mod, re.M), go_mod


# --- argocd-lua ---------------------------------------------------------------------------


def test_string_library_is_closed_unless_open_libs(tmp_path: Path) -> None:
    """A custom health check gets no string library unless useOpenLibs is set."""
    script = write(
        tmp_path / "health.lua",
        'return {status = "Healthy", message = string.format("gen %d", obj.metadata.generation)}\n',
    )
    [sandboxed] = health_tools.argocd_health(script, [pool()])
    assert "attempt to index a non-table object(nil) with key 'format'" in sandboxed["error"]
    [opened] = health_tools.argocd_health(script, [pool()], open_libs=True)
    assert opened == {"status": "Healthy", "message": "gen 1"}


def test_only_argo_cds_libraries_are_open(tmp_path: Path) -> None:
    """Package, base and table, and os.time/os.date only through require("os")."""
    script = write(
        tmp_path / "health.lua",
        """
local seen = {}
for _, name in ipairs({"string", "math", "os", "io", "debug", "coroutine"}) do
  table.insert(seen, name .. "=" .. type(_G[name]))
end
local os = require("os")
table.insert(seen, "os.time=" .. type(os.time))
table.insert(seen, "os.exit=" .. type(os.exit))
table.insert(seen, "table.time=" .. type(table.time))
return {status = "Healthy", message = table.concat(seen, " ")}
""",
    )
    [result] = health_tools.argocd_health(script, [pool()])
    assert result["message"] == (
        "string=nil math=nil os=nil io=nil debug=nil coroutine=nil "
        "os.time=function os.exit=nil table.time=nil"
    )


def test_an_invalid_status_becomes_unknown(tmp_path: Path) -> None:
    script = write(tmp_path / "health.lua", 'return {status = "Fine", message = "all good"}\n')
    assert health_tools.argocd_health(script, [pool()]) == [INVALID]


def test_numbers_arrive_as_numbers(tmp_path: Path) -> None:
    """Argo CD's decodeValue: integers and floats become Lua numbers, strings stay strings."""
    script = write(
        tmp_path / "health.lua",
        """
local g = obj.metadata.generation
local r = obj.status.ratio
local s = obj.status.text
return {status = "Healthy",
        message = type(g) .. ":" .. tostring(g + 1) .. " " .. type(r) .. ":" .. tostring(r * 2)
                  .. " " .. type(s) .. ":" .. s}
""",
    )
    obj = pool(metadata={"generation": 3}, status={"ratio": 0.25, "text": "7"})
    assert health_tools.argocd_health(script, [obj]) == [
        {"status": "Healthy", "message": "number:4 number:0.5 string:7"}
    ]


def test_each_object_gets_its_own_verdict(tmp_path: Path) -> None:
    """A script error, a non-table result and a timeout are reported per object."""
    script = write(
        tmp_path / "health.lua",
        """
if obj.metadata.name == "boom" then error("no good") end
if obj.metadata.name == "text" then return "Healthy" end
if obj.metadata.name == "loop" then while true do end end
return {status = "Progressing", message = obj.metadata.name}
""",
    )
    names = ["ok", "boom", "text", "loop"]
    results = health_tools.argocd_health(script, [pool(metadata={"name": n}) for n in names])
    assert results[0] == {"status": "Progressing", "message": "ok"}
    assert "no good" in results[1]["error"]
    assert results[2] == {"error": "expect table output from Lua script, not string"}
    assert "context deadline exceeded" in results[3]["error"]


HEALTH_LUA = """
local hs = {status = "Progressing", message = "Waiting for status"}
if obj.status ~= nil and obj.status.ready then
  hs.status = "Healthy"
  hs.message = "Ready"
end
return hs
"""


def fixture_dir(root: Path, *, ready_message: str) -> Path:
    write(root / "health.lua", HEALTH_LUA)
    write(
        root / "health_test.yaml",
        f"""tests:
  - healthStatus:
      status: Progressing
      message: Waiting for status
    inputPath: testdata/no-status.yaml
  - healthStatus:
      status: Healthy
      message: {ready_message}
    inputPath: testdata/ready.yaml
""",
    )
    write(root / "testdata" / "no-status.yaml", "kind: RegionPool\nmetadata:\n  name: a\n")
    write(
        root / "testdata" / "ready.yaml",
        "kind: RegionPool\nmetadata:\n  name: a\nstatus:\n  ready: true\n",
    )
    return root


def test_test_dir_passes_when_every_case_matches(tmp_path: Path) -> None:
    done = health_tools.argocd_test_dir(fixture_dir(tmp_path, ready_message="Ready"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok   testdata/no-status.yaml")
    assert lines[1].startswith("ok   testdata/ready.yaml")
    assert "2 of 2 cases match" in lines[-1]


def test_test_dir_fails_on_a_different_message(tmp_path: Path) -> None:
    done = health_tools.argocd_test_dir(fixture_dir(tmp_path, ready_message="All ready"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'FAIL testdata/ready.yaml: want Healthy "All ready", got Healthy "Ready"' in (
        done.stdout
    )
    assert "1 of 2 cases match" in done.stdout


# --- kstatus --------------------------------------------------------------------------------


def condition(kind: str, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": "Testing", "message": f"{kind} here"}


def test_kstatus_generic_rules() -> None:
    objects = [
        pool(),
        pool(metadata={"generation": 3}, status={"observedGeneration": 2}),
        pool(status={"observedGeneration": 1, "conditions": [condition("Reconciling")]}),
        pool(status={"observedGeneration": 1, "conditions": [condition("Stalled")]}),
        pool(metadata={"deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": ["x"]}),
    ]
    statuses = [r["status"] for r in health_tools.kstatus(objects)]
    assert statuses == ["Current", "InProgress", "InProgress", "Failed", "Terminating"]


def test_kstatus_messages_come_from_upstream() -> None:
    [current, behind, stalled] = health_tools.kstatus(
        [
            pool(),
            pool(metadata={"generation": 3}, status={"observedGeneration": 2}),
            pool(status={"observedGeneration": 1, "conditions": [condition("Stalled")]}),
        ]
    )
    assert current == {"status": "Current", "message": "Resource is current"}
    assert behind["message"] == "RegionPool generation is 3, but latest observed generation is 2"
    assert stalled["message"] == "Stalled here"


# --- promql ---------------------------------------------------------------------------------


def test_promql_reports_selectors_and_labels() -> None:
    query = 'sum by (pool) (fedcompute_pool_allocated{resource="nvidia.com/gpu"}) / on(pool) x'
    [parsed] = health_tools.promql([query])
    assert parsed == {
        "selectors": [
            {
                "name": "fedcompute_pool_allocated",
                "matchers": [{"label": "resource", "type": "=", "value": "nvidia.com/gpu"}],
            },
            {"name": "x", "matchers": []},
        ],
        "labels": ["pool", "resource"],
    }


def test_promql_label_functions_and_matching_modifiers() -> None:
    [replace, join, grouped] = health_tools.promql(
        [
            'label_replace(up{job=~"fed.*"}, "dst", "$1", "src", "(.*)")',
            'label_join(up, "joined", ",", "a", "b")',
            "sum without (node) (rate(a_total[5m])) * ignoring(zone) group_left(model) b",
        ]
    )
    assert replace["labels"] == ["dst", "job", "src"]
    assert replace["selectors"][0]["matchers"] == [{"label": "job", "type": "=~", "value": "fed.*"}]
    assert join["labels"] == ["a", "b", "joined"]
    assert grouped["labels"] == ["model", "node", "zone"]
    assert [s["name"] for s in grouped["selectors"]] == ["a_total", "b"]


def test_promql_reports_parse_errors() -> None:
    [broken] = health_tools.promql(["sum(fedcompute_pool_allocated"])
    assert set(broken) == {"error"}
    assert "parse error" in broken["error"]
