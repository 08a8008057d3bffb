"""Build a ``CapacityReport`` from the two kinds' wire JSON, and render it. Pure.

The report carries every object's ``status`` exactly as the API returned it (quantities
stay the strings the operator wrote) and adds only what is derived from it: each
provider's state at a glance, the grouping of providers under the pool that claims them,
and platform totals. The schema is documented in ``docs/capacity.md``.

Inputs are plain mappings and may be incomplete or malformed (a provider the operator has
not seen yet, a figure that does not parse): the report shows what is there and never
raises on content.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import yaml

from fedcompute import quantities
from fedcompute.api import API_VERSION
from fedcompute.api import pool as pool_api
from fedcompute.api import provider as provider_api
from fedcompute.api.common import PRECISIONS, format_time, plain_decimal

KIND: Final = "CapacityReport"

Json = dict[str, Any]


class State:
    """A provider's state at a glance, from its Ready condition."""

    READY: Final = "Ready"
    """Ready=True: figures are fresh (or static)."""
    STALE: Final = "Stale"
    """Ready=False, reason Stale: no good collection within ``staleAfter``."""
    NOT_READY: Final = "NotReady"
    """Ready=False for any other reason (unreachable, no Ready nodes, ...)."""
    PENDING: Final = "Pending"
    """No Ready condition yet, or Ready=Unknown."""


class PoolState:
    """A pool's state at a glance, from its Ready condition."""

    READY: Final = "Ready"
    NOT_READY: Final = "NotReady"
    PENDING: Final = "Pending"


# --- reading the wire JSON ---------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _name(obj: Mapping[str, Any]) -> str:
    return str(_mapping(obj.get("metadata")).get("name") or "")


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in _list(status.get("conditions")):
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return None


def _quantity(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return quantities.parse(value)
    except (quantities.QuantityError, TypeError):
        return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def provider_state(provider: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(state, reason, message)`` of a ComputeProvider, from its Ready condition."""
    ready = _condition(_mapping(provider.get("status")), provider_api.ConditionType.READY)
    if ready is None:
        return State.PENDING, "", "no status reported yet"
    status = ready.get("status")
    reason = str(ready.get("reason") or "")
    message = str(ready.get("message") or "")
    if status == "True":
        return State.READY, reason, message
    if reason == provider_api.Reason.STALE:
        return State.STALE, reason, message
    if status == "False":
        return State.NOT_READY, reason, message
    return State.PENDING, reason, message


def pool_state(pool: Mapping[str, Any]) -> tuple[str, str, str, bool | None]:
    """``(state, reason, message, degraded)`` of a RegionPool, from its conditions."""
    status = _mapping(pool.get("status"))
    ready = _condition(status, pool_api.ConditionType.READY)
    degraded_condition = _condition(status, pool_api.ConditionType.DEGRADED)
    degraded = None if degraded_condition is None else degraded_condition.get("status") == "True"
    if ready is None:
        return PoolState.PENDING, "", "no status reported yet", degraded
    reason = str(ready.get("reason") or "")
    message = str(ready.get("message") or "")
    if ready.get("status") == "True":
        return PoolState.READY, reason, message, degraded
    if ready.get("status") == "False":
        return PoolState.NOT_READY, reason, message, degraded
    return PoolState.PENDING, reason, message, degraded


# --- building the report -----------------------------------------------------------------


def _provider_entry(provider: Mapping[str, Any]) -> Json:
    spec = _mapping(provider.get("spec"))
    status = _mapping(provider.get("status"))
    state, reason, message = provider_state(provider)
    return {
        "name": _name(provider),
        "displayName": spec.get("displayName"),
        "region": spec.get("region"),
        "zone": spec.get("zone"),
        "sector": spec.get("sector"),
        "pool": status.get("pool"),
        "state": state,
        "reason": reason,
        "message": message,
        "unschedulable": spec.get("unschedulable") is True,
        "status": copy.deepcopy(dict(status)),
    }


def _pool_entry(pool: Mapping[str, Any], providers: list[Json]) -> Json:
    state, reason, message, degraded = pool_state(pool)
    return {
        "name": _name(pool),
        "state": state,
        "reason": reason,
        "message": message,
        "degraded": degraded,
        "status": copy.deepcopy(dict(_mapping(pool.get("status")))),
        "providers": providers,
    }


def _pool_regions(pool: Mapping[str, Any], providers: Iterable[Json]) -> set[str]:
    """Regions a pool touches: its spec, its status and its claimed providers."""
    regions = {str(r) for r in _list(_mapping(pool.get("spec")).get("regions"))}
    for r in _list(_mapping(pool.get("status")).get("regions")):
        if isinstance(r, Mapping) and r.get("name"):
            regions.add(str(r["name"]))
    regions.update(str(p["region"]) for p in providers if p["region"])
    return regions


def _sum_maps(maps: Iterable[Any]) -> dict[str, str]:
    total: dict[str, Decimal] = {}
    for m in maps:
        for resource, value in _mapping(m).items():
            parsed = _quantity(value)
            if parsed is not None:
                total[resource] = total.get(resource, Decimal(0)) + parsed
    return quantities.format_map(total)


def _totals(pools: Sequence[Json], unclaimed: Sequence[Json]) -> Json:
    claimed = [p for pool in pools for p in pool["providers"]]
    everyone = claimed + list(unclaimed)
    offered = [p for p in claimed if p["state"] == State.READY and not p["unschedulable"]]
    by_state = {s: 0 for s in (State.READY, State.STALE, State.NOT_READY, State.PENDING)}
    for p in everyone:
        by_state[p["state"]] += 1

    models: dict[str, dict[str, int]] = {}
    for p in offered:
        for a in _list(p["status"].get("accelerators")):
            if not isinstance(a, Mapping) or not a.get("model"):
                continue
            entry = models.setdefault(str(a["model"]), {"count": 0, "allocated": 0, "available": 0})
            for key in entry:
                entry[key] += _count(a.get(key))
    power: dict[str, Decimal] = {}
    for p in offered:
        for precision, value in _mapping(p["status"].get("computePower")).items():
            parsed = _quantity(value)
            if parsed is not None:
                power[precision] = power.get(precision, Decimal(0)) + parsed
    order = {p: i for i, p in enumerate(PRECISIONS)}
    return {
        "pools": {
            "total": len(pools),
            "ready": sum(1 for p in pools if p["state"] == PoolState.READY),
        },
        "providers": {
            "total": len(everyone),
            "ready": by_state[State.READY],
            "stale": by_state[State.STALE],
            "notReady": by_state[State.NOT_READY],
            "pending": by_state[State.PENDING],
            "unclaimed": len(unclaimed),
            "offered": len(offered),
        },
        "capacity": _sum_maps(p["status"].get("capacity") for p in everyone),
        "allocatable": _sum_maps(p["status"].get("allocatable") for p in offered),
        "allocated": _sum_maps(p["status"].get("allocated") for p in offered),
        "available": _sum_maps(p["status"].get("available") for p in offered),
        "accelerators": [{"model": m, **models[m]} for m in sorted(models)],
        "acceleratorCount": sum(m["count"] for m in models.values()),
        "computePower": {
            k: plain_decimal(power[k])
            for k in sorted(power, key=lambda k: (order.get(k, len(order)), k))
        },
    }


def build_report(
    providers: Sequence[Mapping[str, Any]],
    pools: Sequence[Mapping[str, Any]],
    *,
    pools_filter: Collection[str] = (),
    regions_filter: Collection[str] = (),
    now: datetime,
) -> Json:
    """The ``CapacityReport`` for the given objects (wire JSON), JSON-ready.

    Providers are grouped under the pool named by their ``status.pool``; providers that no
    listed pool claims are ``unclaimed``. ``pools_filter`` keeps only the named pools (and
    drops the unclaimed); ``regions_filter`` keeps only providers in those regions and the
    pools that touch them. Empty filters keep everything.
    """
    wanted_pools = set(pools_filter)
    wanted_regions = set(regions_filter)

    def region_ok(entry: Json) -> bool:
        return not wanted_regions or entry["region"] in wanted_regions

    entries = sorted(
        (_provider_entry(p) for p in providers),
        key=lambda e: (str(e["region"] or ""), e["name"]),
    )
    pool_names = {_name(p) for p in pools}
    by_pool: dict[str, list[Json]] = {}
    unclaimed: list[Json] = []
    for entry in entries:
        if entry["pool"] in pool_names:
            by_pool.setdefault(entry["pool"], []).append(entry)
        else:
            unclaimed.append(entry)

    pool_entries: list[Json] = []
    for pool in sorted(pools, key=_name):
        name = _name(pool)
        if wanted_pools and name not in wanted_pools:
            continue
        members = by_pool.get(name, [])
        if wanted_regions and not _pool_regions(pool, members) & wanted_regions:
            continue
        pool_entries.append(_pool_entry(pool, [e for e in members if region_ok(e)]))
    unclaimed = [] if wanted_pools else [e for e in unclaimed if region_ok(e)]

    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "generatedAt": format_time(now.astimezone(UTC)),
        "filters": {"pools": sorted(wanted_pools), "regions": sorted(wanted_regions)},
        "pools": pool_entries,
        "unclaimed": unclaimed,
        "totals": _totals(pool_entries, unclaimed),
    }


def missing_pools(report: Mapping[str, Any]) -> list[str]:
    """Names in the report's pool filter that matched no RegionPool."""
    found = {p["name"] for p in report["pools"]}
    return [n for n in report["filters"]["pools"] if n not in found]


# --- JSON and YAML -----------------------------------------------------------------------


def render_json(report: Mapping[str, Any]) -> str:
    """The report as indented JSON, newline-terminated."""
    return json.dumps(report, indent=2) + "\n"


def render_yaml(report: Mapping[str, Any]) -> str:
    """The report as one YAML document (keys in schema order)."""
    text: str = yaml.safe_dump(dict(report), sort_keys=False, default_flow_style=False)
    return text


# --- the table ---------------------------------------------------------------------------

ANSI: Final = {
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "red": "\x1b[31m",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
}
RESET: Final = "\x1b[0m"
STATE_LABEL: Final = {
    State.READY: "Ready",
    State.STALE: "STALE",
    State.NOT_READY: "NotReady",
    State.PENDING: "Pending",
}
STATE_STYLE: Final = {
    State.READY: "green",
    State.STALE: "yellow",
    State.NOT_READY: "red",
    State.PENDING: "dim",
}
INDENT: Final = "  "
GAP: Final = "  "
MIN_NAME_WIDTH: Final = 8
COLUMNS: Final = ("NAME", "REGION", "STATE", "CPU", "MEM", "GPU")


def human(resource: str, value: Any) -> str:
    """A short human figure: ``7168`` -> ``7.2k``, ``128Ti`` -> ``128Ti``, ``500m`` -> ``0.5``."""
    parsed = _quantity(value)
    if parsed is None:
        return "-" if value is None else str(value)
    binary = resource in quantities.BINARY_RESOURCES or resource.startswith("hugepages-")
    base = Decimal(1024) if binary else Decimal(1000)
    units = (
        ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei") if binary else ("", "k", "M", "G", "T", "P", "E")
    )
    scaled = parsed
    index = 0
    while abs(scaled) >= base and index < len(units) - 1:
        scaled /= base
        index += 1
    if index == 0 and scaled == scaled.to_integral_value():
        return f"{int(scaled)}"
    text = f"{scaled:.1f}" if abs(scaled) < Decimal("9.95") else f"{scaled:.0f}"
    if Decimal(text) >= base and index < len(units) - 1:
        text, index = "1.0", index + 1
    return text + units[index]


def _fraction(free: str, total: str) -> str:
    if total == "-":
        return "-"
    return f"{free}/{total}"


def _resource_pair(status: Mapping[str, Any], resource: str) -> str:
    allocatable = _mapping(status.get("allocatable")).get(resource)
    if allocatable is None:
        return "-"
    available = _mapping(status.get("available")).get(resource)
    return _fraction(human(resource, available), human(resource, allocatable))


def _gpu_pair(status: Mapping[str, Any]) -> str:
    devices = [a for a in _list(status.get("accelerators")) if isinstance(a, Mapping)]
    count = status.get("acceleratorCount")
    if not devices and not count:
        return "-"
    total = _count(count) if count is not None else sum(_count(a.get("count")) for a in devices)
    free = sum(_count(a.get("available")) for a in devices)
    return f"{free}/{total}"


def _figures(status: Mapping[str, Any], *, free: bool = True) -> dict[str, str]:
    """CPU, MEM and GPU cells: ``free/allocatable``, or CPU and MEM allocatable only."""
    if free:
        cpu, mem = _resource_pair(status, "cpu"), _resource_pair(status, "memory")
    else:
        allocatable = _mapping(status.get("allocatable"))
        cpu, mem = human("cpu", allocatable.get("cpu")), human("memory", allocatable.get("memory"))
    return {"CPU": cpu, "MEM": mem, "GPU": _gpu_pair(status)}


@dataclass(frozen=True)
class _Styler:
    color: bool

    def __call__(self, text: str, style: str | None) -> str:
        if not self.color or not style or not text:
            return text
        return f"{ANSI[style]}{text}{RESET}"


def _line(pieces: Sequence[tuple[str, str | None]], width: int, paint: _Styler) -> str:
    """Join ``(text, style)`` pieces, cut to ``width`` visible columns."""
    out: list[str] = []
    used = 0
    for text, style in pieces:
        room = width - used
        if room <= 0:
            break
        shown = text if len(text) <= room else text[: max(room - 1, 0)] + "~"
        out.append(paint(shown, style))
        used += len(shown)
    return "".join(out).rstrip()


@dataclass(frozen=True)
class _Layout:
    name: int
    region: int
    state: int
    cpu: int
    mem: int
    gpu: int


def _layout(rows: Sequence[Mapping[str, Any]], width: int) -> _Layout:
    def widest(header: str, values: Iterable[str]) -> int:
        return max([len(header), *(len(v) for v in values)])

    figures = [_figures(r["status"], free=False) for r in rows]
    region = widest("REGION", (str(r["region"] or "-") for r in rows))
    state = widest("STATE", (STATE_LABEL[r["state"]] for r in rows))
    cpu = widest("CPU", (f["CPU"] for f in figures))
    mem = widest("MEM", (f["MEM"] for f in figures))
    gpu = widest("GPU", (f["GPU"] for f in figures))
    rest = len(INDENT) + region + state + cpu + mem + gpu + 5 * len(GAP)
    longest = widest("NAME", (r["name"] for r in rows))
    return _Layout(max(MIN_NAME_WIDTH, min(longest, width - rest)), region, state, cpu, mem, gpu)


def _header_row(layout: _Layout, paint: _Styler) -> str:
    cells = [
        "NAME".ljust(layout.name),
        "REGION".ljust(layout.region),
        "STATE".ljust(layout.state),
        "CPU".rjust(layout.cpu),
        "MEM".rjust(layout.mem),
        "GPU".rjust(layout.gpu),
    ]
    return paint(INDENT + GAP.join(cells), "bold" if paint.color else None)


def _provider_rows(
    entry: Mapping[str, Any], layout: _Layout, width: int, paint: _Styler
) -> list[str]:
    lines: list[str] = []
    name = entry["name"]
    if len(name) > layout.name:
        lines.append(INDENT + name)
        name = ""
    f = _figures(entry["status"], free=False)
    label = STATE_LABEL[entry["state"]]
    row = (
        INDENT
        + name.ljust(layout.name)
        + GAP
        + str(entry["region"] or "-").ljust(layout.region)
        + GAP
        + paint(label, STATE_STYLE[entry["state"]])
        + " " * (layout.state - len(label))
        + GAP
        + f["CPU"].rjust(layout.cpu)
        + GAP
        + f["MEM"].rjust(layout.mem)
        + GAP
        + f["GPU"].rjust(layout.gpu)
    )
    lines.append(row.rstrip())
    detail = INDENT * 3
    if entry["state"] != State.READY:
        text = ": ".join(t for t in (entry["reason"], entry["message"]) if t)
        if text:
            lines.append(_line([(detail + text, None)], width, paint))
    if entry["unschedulable"]:
        lines.append(
            _line([(detail + "unschedulable: offers nothing to pools", None)], width, paint)
        )
    return lines


def _state_counts(counts: Mapping[str, int]) -> list[tuple[str, str | None]]:
    pieces: list[tuple[str, str | None]] = []
    for key, state in (
        ("ready", State.READY),
        ("stale", State.STALE),
        ("notReady", State.NOT_READY),
        ("pending", State.PENDING),
    ):
        if counts.get(key) or state == State.READY:
            if pieces:
                pieces.append((", ", None))
            pieces.append((f"{counts.get(key, 0)} ", None))
            pieces.append((STATE_LABEL[state], STATE_STYLE[state]))
    return pieces


def _pool_lines(pool: Mapping[str, Any], layout: _Layout, width: int, paint: _Styler) -> list[str]:
    status = _mapping(pool["status"])
    state_style = {PoolState.READY: "green", PoolState.NOT_READY: "red", PoolState.PENDING: "dim"}
    counts = _mapping(status.get("providers"))
    header: list[tuple[str, str | None]] = [
        ("POOL ", "bold"),
        (pool["name"], "bold"),
        (GAP, None),
        (pool["state"], state_style[pool["state"]]),
    ]
    if counts:
        header.append(
            (
                f"{GAP}{_count(counts.get('ready'))}/{_count(counts.get('total'))} providers ready",
                None,
            )
        )
    if pool["degraded"]:
        header += [(GAP, None), ("DEGRADED", "yellow")]
    lines = [_line(header, width, paint)]
    if pool["state"] != PoolState.READY:
        text = ": ".join(t for t in (pool["reason"], pool["message"]) if t)
        if text:
            lines.append(_line([(INDENT + text, None)], width, paint))
    regions = [
        f"{r.get('name')} {_count(r.get('readyProviders'))}/{_count(r.get('providers'))}"
        for r in _list(status.get("regions"))
        if isinstance(r, Mapping)
    ]
    if regions:
        lines.append(_line([(INDENT + "regions       " + ", ".join(regions), None)], width, paint))
    devices = [
        f"{a.get('model')} {_count(a.get('available'))}/{_count(a.get('count'))}"
        for a in _list(status.get("accelerators"))
        if isinstance(a, Mapping)
    ]
    if devices:
        lines.append(_line([(INDENT + "accelerators  " + ", ".join(devices), None)], width, paint))
    if status.get("allocatable") is not None:
        f = _figures(status)
        text = f"resources     CPU {f['CPU']}  MEM {f['MEM']}  GPU {f['GPU']}"
        lines.append(_line([(INDENT + text, None)], width, paint))
    if pool["providers"]:
        lines.append(_header_row(layout, paint))
        for entry in pool["providers"]:
            lines.extend(_provider_rows(entry, layout, width, paint))
    else:
        lines.append(_line([(INDENT + "no providers", "dim")], width, paint))
    return lines


def render_table(report: Mapping[str, Any], *, width: int = 80, color: bool = False) -> str:
    """The report for a terminal: pool blocks, unclaimed providers, then totals.

    Every line fits ``width`` columns except a provider name longer than the line itself
    (names are never cut; a long one gets a line of its own). ``color`` adds ANSI colours
    to states; without it the output is plain text.
    """
    paint = _Styler(color)
    pools: list[Mapping[str, Any]] = report["pools"]
    unclaimed: list[Mapping[str, Any]] = report["unclaimed"]
    rows = [p for pool in pools for p in pool["providers"]] + list(unclaimed)
    layout = _layout(rows, width)

    lines = [
        _line(
            [
                ("CAPACITY ", "bold"),
                (report["generatedAt"], None),
                (GAP + "figures: allocatable, or free/allocatable", "dim"),
            ],
            width,
            paint,
        )
    ]
    filters = report["filters"]
    shown = [f"pool {', '.join(filters['pools'])}" if filters["pools"] else ""]
    shown.append(f"region {', '.join(filters['regions'])}" if filters["regions"] else "")
    if any(shown):
        lines.append(_line([("only " + "; ".join(s for s in shown if s), "dim")], width, paint))
    for pool in pools:
        lines.append("")
        lines.extend(_pool_lines(pool, layout, width, paint))
    if unclaimed:
        lines.append("")
        lines.append(
            _line(
                [("UNCLAIMED", "bold"), (f"{GAP}{len(unclaimed)} provider(s) in no pool", None)],
                width,
                paint,
            )
        )
        lines.append(_header_row(layout, paint))
        for entry in unclaimed:
            lines.extend(_provider_rows(entry, layout, width, paint))
    if not pools and not unclaimed:
        lines.append("")
        lines.append("no RegionPools or ComputeProviders found")

    totals = report["totals"]
    lead = "TOTAL  "
    pad = " " * len(lead)
    lines.append("")
    lines.append(
        _line(
            [
                (lead, "bold"),
                (f"{totals['pools']['total']} pool(s), {totals['pools']['ready']} ", None),
                ("Ready", "green"),
            ],
            width,
            paint,
        )
    )
    counts = totals["providers"]
    pieces: list[tuple[str, str | None]] = [(pad + f"{counts['total']} provider(s): ", None)]
    pieces += _state_counts(counts)
    if counts["unclaimed"]:
        pieces.append((f", {counts['unclaimed']} unclaimed", None))
    lines.append(_line(pieces, width, paint))
    f = _figures(totals)
    lines.append(
        _line(
            [(pad + f"offered  CPU {f['CPU']}  MEM {f['MEM']}  GPU {f['GPU']}", None)], width, paint
        )
    )
    return "\n".join(lines) + "\n"
