"""The capacity report's pure core: building the document and rendering the table."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from fedcompute.report import rendering

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
T0 = "2025-06-01T11:58:00Z"
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

# --- builders ------------------------------------------------------------------------------


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T0,
        "observedGeneration": 1,
    }


def provider(
    name: str,
    region: str,
    *,
    pool: str | None = None,
    ready: str = "True",
    reason: str = "Fresh",
    message: str = "collected within staleAfter (3m)",
    cpu: str = "7168",
    memory: str = "128Ti",
    free_cpu: str | None = None,
    free_memory: str | None = None,
    gpus: int = 0,
    free_gpus: int | None = None,
    model: str = "NVIDIA-H100-80GB-HBM3",
    unschedulable: bool = False,
    with_status: bool = True,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "region": region,
        "zone": f"{region}-a",
        "sector": "research",
        "displayName": name.title(),
        "source": {"static": {"resources": {"cpu": cpu, "memory": memory}}},
    }
    if unschedulable:
        spec["unschedulable"] = True
    obj: dict[str, Any] = {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "ComputeProvider",
        "metadata": {"name": name, "generation": 1},
        "spec": spec,
    }
    if not with_status:
        return obj
    allocatable = {"cpu": cpu, "memory": memory}
    available = {"cpu": free_cpu or cpu, "memory": free_memory or memory}
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [
            condition("Ready", ready, reason, message),
            condition("Collected", "True", "StaticInventory", "inventory declared in spec"),
            condition(
                "Claimed",
                "True" if pool else "False",
                "Claimed" if pool else "NoMatchingPool",
            ),
        ],
        "capacity": dict(allocatable),
        "allocatable": allocatable,
        "allocated": {"cpu": "0", "memory": "0"},
        "available": available,
        "nodes": {"total": 16, "ready": 16},
        "lastCollectionTime": T0,
    }
    if gpus:
        free = gpus if free_gpus is None else free_gpus
        for key in ("capacity", "allocatable", "available"):
            status[key]["nvidia.com/gpu"] = str(free if key == "available" else gpus)
        status["accelerators"] = [
            {
                "model": model,
                "resourceName": "nvidia.com/gpu",
                "count": gpus,
                "allocated": gpus - free,
                "available": free,
            }
        ]
        status["acceleratorCount"] = gpus
        status["computePower"] = {"fp64": str(34 * gpus), "bf16": "989.4"}
    if pool:
        status["pool"] = pool
    obj["status"] = status
    return obj


def pool(
    name: str,
    *,
    regions: list[str],
    ready: str = "True",
    degraded: str = "False",
    providers: tuple[int, int] = (1, 1),
    cpu: str = "7168",
    free_cpu: str = "7168",
    memory: str = "128Ti",
    gpus: int = 0,
    free_gpus: int = 0,
    with_status: bool = True,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "fedcompute.io/v1alpha1",
        "kind": "RegionPool",
        "metadata": {"name": name, "generation": 1},
        "spec": {"regions": regions},
    }
    if not with_status:
        return obj
    total, ready_count = providers
    obj["status"] = {
        "observedGeneration": 1,
        "conditions": [
            condition(
                "Ready",
                ready,
                "EnoughProvidersReady" if ready == "True" else "NotEnoughProvidersReady",
                f"{ready_count} of {total} providers Ready",
            ),
            condition(
                "Degraded",
                degraded,
                "ProvidersNotReady" if degraded == "True" else "AllProvidersReady",
            ),
        ],
        "providers": {"total": total, "ready": ready_count},
        "capacity": {"cpu": cpu, "memory": memory},
        "allocatable": {"cpu": cpu, "memory": memory},
        "allocated": {"cpu": "0", "memory": "0"},
        "available": {"cpu": free_cpu, "memory": memory},
        "regions": [
            {
                "name": r,
                "providers": total,
                "readyProviders": ready_count,
                "allocatable": {"cpu": cpu},
                "available": {"cpu": free_cpu},
            }
            for r in regions
        ],
        "nodes": ready_count,
    }
    if gpus:
        obj["status"]["accelerators"] = [
            {"model": "NVIDIA-H100-80GB-HBM3", "count": gpus, "available": free_gpus}
        ]
        obj["status"]["acceleratorCount"] = gpus
    return obj


def platform() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two pools, a stale and a failing provider, one unclaimed and one not yet seen."""
    providers = [
        provider(
            "shanghai-telecom-ai-cloud",
            "east-china",
            pool="ai-training",
            cpu="6912",
            free_cpu="5120",
            memory="126Ti",
            free_memory="100Ti",
            gpus=496,
            free_gpus=480,
        ),
        provider(
            "beijing-ai-cluster",
            "north-china",
            pool="ai-training",
            ready="False",
            reason="Stale",
            message="no good collection for more than 3m (last at 2025-06-01T11:50:00Z)",
            cpu="4096",
            memory="64Ti",
            gpus=256,
            free_gpus=200,
        ),
        provider(
            "hangzhou-industrial",
            "east-china",
            pool="east-china-general",
            cpu="2048",
            memory="16Ti",
        ),
        provider(
            "nanjing-member",
            "east-china",
            pool="east-china-general",
            ready="False",
            reason="Unreachable",
            message="dial tcp 10.0.0.1:6443: connection refused",
            cpu="512",
            memory="4Ti",
        ),
        provider("chengdu-hpc", "west-china", cpu="16384", memory="256Ti"),
        provider("xian-new-site", "west-china", with_status=False),
    ]
    pools = [
        pool(
            "ai-training",
            regions=["east-china", "north-china"],
            degraded="True",
            providers=(2, 1),
            cpu="6912",
            free_cpu="5120",
            memory="126Ti",
            gpus=496,
            free_gpus=480,
        ),
        pool(
            "east-china-general",
            regions=["east-china"],
            degraded="True",
            providers=(2, 1),
            cpu="2048",
            free_cpu="2048",
            memory="16Ti",
        ),
    ]
    return providers, pools


def build(**kwargs: Any) -> dict[str, Any]:
    providers, pools = platform()
    kwargs.setdefault("now", NOW)
    return rendering.build_report(providers, pools, **kwargs)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = [p for pool in report["pools"] for p in pool["providers"]] + report["unclaimed"]
    return {e["name"]: e for e in entries}


# --- states --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "reason", "expected"),
    [
        ("True", "Fresh", rendering.State.READY),
        ("True", "StaticInventory", rendering.State.READY),
        ("False", "Stale", rendering.State.STALE),
        ("Unknown", "Stale", rendering.State.STALE),
        ("False", "Unreachable", rendering.State.NOT_READY),
        ("False", "NoReadyNodes", rendering.State.NOT_READY),
        ("Unknown", "Pending", rendering.State.PENDING),
    ],
)
def test_provider_state_follows_the_ready_condition(ready: str, reason: str, expected: str) -> None:
    state, got_reason, _ = rendering.provider_state(provider("p", "r", ready=ready, reason=reason))
    assert (state, got_reason) == (expected, reason)


def test_provider_without_status_is_pending() -> None:
    assert rendering.provider_state(provider("p", "r", with_status=False))[0] == "Pending"
    assert rendering.provider_state({"status": {"conditions": "garbage"}})[0] == "Pending"


def test_pool_state_and_degraded() -> None:
    assert rendering.pool_state(pool("a", regions=["r"]))[0::3] == ("Ready", False)
    assert rendering.pool_state(pool("a", regions=["r"], ready="False", degraded="True"))[0::3] == (
        "NotReady",
        True,
    )
    assert rendering.pool_state(pool("a", regions=["r"], with_status=False))[0::3] == (
        "Pending",
        None,
    )


# --- the document --------------------------------------------------------------------------


def test_report_header_and_grouping() -> None:
    report = build()
    assert report["apiVersion"] == "fedcompute.io/v1alpha1"
    assert report["kind"] == "CapacityReport"
    assert report["generatedAt"] == "2025-06-01T12:00:00Z"
    assert report["filters"] == {"pools": [], "regions": []}
    assert [p["name"] for p in report["pools"]] == ["ai-training", "east-china-general"]
    ai = report["pools"][0]
    # Providers sorted by region, then name.
    assert [p["name"] for p in ai["providers"]] == [
        "shanghai-telecom-ai-cloud",
        "beijing-ai-cluster",
    ]
    assert (ai["state"], ai["degraded"]) == ("Ready", True)
    assert [p["name"] for p in report["unclaimed"]] == ["chengdu-hpc", "xian-new-site"]


def test_status_is_carried_verbatim_and_copied() -> None:
    providers, pools = platform()
    report = rendering.build_report(providers, pools, now=NOW)
    entries = by_name(report)
    for obj in providers:
        assert entries[obj["metadata"]["name"]]["status"] == obj.get("status", {})
    for obj, entry in zip(pools, report["pools"], strict=True):
        assert entry["status"] == obj["status"]
    # A copy: mutating the report leaves the inputs alone.
    entries["chengdu-hpc"]["status"]["capacity"]["cpu"] = "1"
    assert providers[4]["status"]["capacity"]["cpu"] == "16384"
    # Quantities stay the strings the API returned.
    assert entries["shanghai-telecom-ai-cloud"]["status"]["allocatable"]["memory"] == "126Ti"


def test_provider_entry_fields() -> None:
    entries = by_name(build())
    stale = entries["beijing-ai-cluster"]
    assert {k: v for k, v in stale.items() if k != "status"} == {
        "name": "beijing-ai-cluster",
        "displayName": "Beijing-Ai-Cluster",
        "region": "north-china",
        "zone": "north-china-a",
        "sector": "research",
        "pool": "ai-training",
        "state": "Stale",
        "reason": "Stale",
        "message": "no good collection for more than 3m (last at 2025-06-01T11:50:00Z)",
        "unschedulable": False,
    }
    assert entries["nanjing-member"]["state"] == "NotReady"
    assert entries["xian-new-site"]["state"] == "Pending"
    assert entries["xian-new-site"]["status"] == {}


def test_totals_count_states_and_sum_only_offered_providers() -> None:
    totals = build()["totals"]
    assert totals["pools"] == {"total": 2, "ready": 2}
    assert totals["providers"] == {
        "total": 6,
        "ready": 3,
        "stale": 1,
        "notReady": 1,
        "pending": 1,
        "unclaimed": 2,
        "offered": 2,
    }
    # capacity: every provider with figures; the rest: Ready providers claimed by a pool.
    assert totals["capacity"] == {
        "cpu": str(6912 + 4096 + 2048 + 512 + 16384),
        "memory": f"{126 + 64 + 16 + 4 + 256}Ti",
        "nvidia.com/gpu": "752",
    }
    assert totals["allocatable"] == {
        "cpu": str(6912 + 2048),
        "memory": "142Ti",
        "nvidia.com/gpu": "496",
    }
    assert totals["available"]["cpu"] == str(5120 + 2048)
    assert totals["accelerators"] == [
        {"model": "NVIDIA-H100-80GB-HBM3", "count": 496, "allocated": 16, "available": 480}
    ]
    assert totals["acceleratorCount"] == 496
    assert totals["computePower"] == {"fp64": str(34 * 496), "bf16": "989.4"}


def test_totals_match_the_pools_when_the_operator_is_current() -> None:
    report = build()
    summed: dict[str, int] = {}
    for p in report["pools"]:
        summed["cpu"] = summed.get("cpu", 0) + int(p["status"]["allocatable"]["cpu"])
    assert report["totals"]["allocatable"]["cpu"] == str(summed["cpu"])


def test_unschedulable_ready_provider_is_not_offered() -> None:
    providers = [provider("p", "r", pool="a", unschedulable=True)]
    report = rendering.build_report(providers, [pool("a", regions=["r"])], now=NOW)
    assert report["pools"][0]["providers"][0]["unschedulable"] is True
    assert report["totals"]["providers"]["offered"] == 0
    assert report["totals"]["allocatable"] == {}


def test_pool_filter_keeps_named_pools_and_drops_unclaimed() -> None:
    report = build(pools_filter=["east-china-general", "no-such-pool"])
    assert [p["name"] for p in report["pools"]] == ["east-china-general"]
    assert report["unclaimed"] == []
    assert report["filters"]["pools"] == ["east-china-general", "no-such-pool"]
    assert rendering.missing_pools(report) == ["no-such-pool"]
    assert report["totals"]["providers"]["total"] == 2


def test_region_filter_keeps_providers_of_the_region_and_pools_touching_it() -> None:
    report = build(regions_filter=["north-china"])
    assert [p["name"] for p in report["pools"]] == ["ai-training"]
    assert [p["name"] for p in report["pools"][0]["providers"]] == ["beijing-ai-cluster"]
    assert report["unclaimed"] == []
    west = build(regions_filter=["west-china"])
    assert west["pools"] == []
    assert [p["name"] for p in west["unclaimed"]] == ["chengdu-hpc", "xian-new-site"]


def test_filters_combine() -> None:
    report = build(pools_filter=["ai-training"], regions_filter=["east-china"])
    assert [p["name"] for p in report["pools"]] == ["ai-training"]
    assert [p["name"] for p in report["pools"][0]["providers"]] == ["shanghai-telecom-ai-cloud"]


def test_provider_claimed_by_an_unknown_pool_is_unclaimed() -> None:
    report = rendering.build_report([provider("p", "r", pool="gone")], [], now=NOW)
    assert [p["name"] for p in report["unclaimed"]] == ["p"]
    assert report["unclaimed"][0]["pool"] == "gone"


def test_malformed_figures_never_raise() -> None:
    bad = provider("p", "r", pool="a")
    bad["status"]["allocatable"] = {"cpu": "lots", "memory": None}
    bad["status"]["accelerators"] = ["x", {"model": "m", "count": "many"}]
    report = rendering.build_report([bad, {"metadata": {}}], [pool("a", regions=["r"])], now=NOW)
    assert report["totals"]["allocatable"] == {}
    assert "p" in rendering.render_table(report)


def test_json_and_yaml_round_trip() -> None:
    report = build()
    assert json.loads(rendering.render_json(report)) == report
    assert yaml.safe_load(rendering.render_yaml(report)) == report


# --- the table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "value", "expected"),
    [
        ("cpu", "7168", "7.2k"),
        ("cpu", "6912", "6.9k"),
        ("cpu", "16384", "16k"),
        ("cpu", "64", "64"),
        ("cpu", "500m", "0.5"),
        ("cpu", "0", "0"),
        ("cpu", "9990", "10k"),
        ("cpu", "999999", "1.0M"),
        ("memory", "128Ti", "128Ti"),
        ("memory", "126Ti", "126Ti"),
        ("memory", "1536Ti", "1.5Pi"),
        ("memory", "512Gi", "512Gi"),
        ("memory", "1Pi", "1.0Pi"),
        ("memory", "1000", "1000"),
        ("cpu", None, "-"),
        ("cpu", "lots", "lots"),
    ],
)
def test_human_quantities(resource: str, value: str | None, expected: str) -> None:
    assert rendering.human(resource, value) == expected


def row(table: str, name: str) -> str:
    return next(line for line in table.splitlines() if line.strip().startswith(name))


def test_table_marks_stale_providers() -> None:
    table = rendering.render_table(build())
    line = row(table, "beijing-ai-cluster")
    assert "STALE" in line.split()
    assert "north-china" in line
    # The reason follows on its own line.
    lines = table.splitlines()
    following = lines[lines.index(line) + 1]
    assert "Stale: no good collection" in following
    assert "Ready" in row(table, "shanghai-telecom-ai-cloud").split()
    assert "NotReady" in row(table, "nanjing-member").split()
    assert "Pending" in row(table, "xian-new-site").split()


def test_table_figures_are_human_and_free_over_allocatable() -> None:
    table = rendering.render_table(build())
    cells = row(table, "shanghai-telecom-ai-cloud").split()
    # Rows: allocatable CPU and memory, free/allocatable GPUs.
    assert cells[-3:] == ["6.9k", "126Ti", "480/496"]
    assert row(table, "chengdu-hpc").split()[-1] == "-"
    assert "POOL ai-training  Ready  1/2 providers ready  DEGRADED" in table
    assert "regions       east-china 1/2, north-china 1/2" in table
    assert "accelerators  NVIDIA-H100-80GB-HBM3 480/496" in table
    assert "UNCLAIMED  2 provider(s) in no pool" in table
    total = table[table.index("TOTAL") :]
    assert "2 pool(s), 2 Ready" in total
    assert "6 provider(s): 3 Ready, 1 STALE, 1 NotReady, 1 Pending, 2 unclaimed" in total
    assert "offered  CPU 7.2k/9.0k  MEM 116Ti/142Ti  GPU 480/496" in total


@pytest.mark.parametrize("width", [80, 72, 60])
def test_table_fits_a_narrow_terminal(width: int) -> None:
    table = rendering.render_table(build(), width=width)
    for line in table.splitlines():
        assert len(line) <= width, line


def test_long_names_get_a_line_of_their_own_and_are_never_cut() -> None:
    name = "a-provider-name-that-is-much-too-long-for-a-narrow-terminal-x"[:60]
    report = rendering.build_report(
        [provider(name, "r", pool="a")], [pool("a", regions=["r"])], now=NOW
    )
    table = rendering.render_table(report, width=60)
    assert f"  {name}" in table.splitlines()
    for line in table.splitlines():
        assert len(line) <= 62


def test_no_ansi_codes_without_color() -> None:
    table = rendering.render_table(build(), color=False)
    assert "\x1b" not in table


def test_colour_marks_states_and_keeps_alignment() -> None:
    plain = rendering.render_table(build(), color=False)
    coloured = rendering.render_table(build(), color=True)
    assert "\x1b[33mSTALE\x1b[0m" in coloured
    assert "\x1b[32mReady\x1b[0m" in coloured
    assert "\x1b[31mNotReady\x1b[0m" in coloured
    assert ANSI_RE.sub("", coloured) == plain


def test_filters_are_shown() -> None:
    table = rendering.render_table(build(regions_filter=["north-china"]))
    assert "only region north-china" in table


def test_empty_report() -> None:
    table = rendering.render_table(rendering.build_report([], [], now=NOW))
    assert "no RegionPools or ComputeProviders found" in table
    assert "0 provider(s): 0 Ready" in table


# --- the command's loop, with the cluster faked ----------------------------------------------


def args(*argv: str) -> Any:
    from fedcompute import cli

    return cli.build_parser().parse_args(["capacity", *argv])


class Stop(Exception):
    pass


def run_loop(
    argv: tuple[str, ...], fetches: list[Any], *, tty: bool = False, color: bool = False
) -> tuple[int, str, str]:
    import io

    from fedcompute.report import commands

    out, err = io.StringIO(), io.StringIO()
    queue = list(fetches)

    def fetch() -> Any:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def sleep(_: float) -> None:
        if not queue:
            raise KeyboardInterrupt

    code = commands.loop(
        args(*argv),
        fetch=fetch,
        out=out,
        err=err,
        tty=tty,
        color=color,
        clock=lambda: NOW,
        sleep=sleep,
        width=lambda: 80,
    )
    return code, out.getvalue(), err.getvalue()


def test_command_prints_once() -> None:
    code, out, err = run_loop(("-o", "json"), [platform()])
    assert code == 0 and err == ""
    assert json.loads(out) == build()


def test_command_api_error_is_one_line_and_exit_1() -> None:
    from fedcompute.report import commands

    code, out, err = run_loop((), [commands.CapacityError("cannot reach https://x: boom")])
    assert (code, out) == (1, "")
    assert err == "fedcompute capacity: cannot reach https://x: boom\n"


def test_command_warns_about_unknown_pools() -> None:
    code, _, err = run_loop(("--pool", "nope"), [platform()])
    assert code == 0
    assert "no RegionPool named 'nope'" in err


def test_watch_on_a_terminal_redraws_in_place_and_ctrl_c_exits_0() -> None:
    from fedcompute.report import commands

    code, out, err = run_loop(
        ("--watch",), [platform(), commands.CapacityError("flaky"), platform()], tty=True
    )
    assert code == 0
    assert out.count(commands.CLEAR) == 2
    assert out.startswith(commands.CLEAR)
    # A failure after the first refresh is reported and the watch goes on.
    assert err == "fedcompute capacity: flaky\n"


def test_watch_without_a_terminal_separates_reports() -> None:
    code, out, _ = run_loop(("--watch",), [platform(), platform()])
    assert code == 0
    assert "\x1b" not in out
    assert out.count("CAPACITY ") == 2
    assert "\n\nCAPACITY " in out
    _, yaml_out, _ = run_loop(("--watch", "-o", "yaml"), [platform(), platform()])
    assert len(list(yaml.safe_load_all(yaml_out))) == 2


def test_watch_fails_when_the_first_fetch_fails() -> None:
    from fedcompute.report import commands

    code, _, _ = run_loop(("--watch",), [commands.CapacityError("down"), platform()])
    assert code == 1


@pytest.mark.parametrize(
    ("argv", "tty", "environ", "expected"),
    [
        ((), True, {}, True),
        ((), False, {}, False),
        (("--no-color",), True, {}, False),
        ((), True, {"NO_COLOR": "1"}, False),
        ((), True, {"NO_COLOR": ""}, True),
    ],
)
def test_colour_only_on_a_terminal(
    argv: tuple[str, ...], tty: bool, environ: dict[str, str], expected: bool
) -> None:
    from fedcompute.report import commands

    class Stream:
        def isatty(self) -> bool:
            return tty

    assert commands.use_color(args(*argv), Stream(), environ) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "argv", [("--interval", "0"), ("--interval", "x"), ("-o", "xml"), ("--bogus",)]
)
def test_usage_errors_exit_2(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exited:
        args(*argv)
    assert exited.value.code == 2


def test_importing_the_command_builds_no_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fedcompute.report.commands; "
        "sys.exit(1 if 'kubernetes.client' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
