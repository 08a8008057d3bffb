"""``fedcompute capacity --fit NxMODEL``: how many jobs of one shape fit now, and where. Pure.

Read from status alone: a provider's ``status.accelerators[].slots`` says how many jobs of
1, 2, 4, 8 or 16 devices of one model fit on its Ready, schedulable nodes now. A pool's
figure is the sum over the providers it lists that are Ready and schedulable (so it equals
the pool's own ``status.accelerators[].slots`` when no ``--region`` filter drops any of
them); the total is the sum over the pools. MODEL matches a model by name or alias, in any
spelling (``NVIDIA H100 80GB HBM3`` finds ``NVIDIA-H100-80GB-HBM3``), through the built-in
catalog and the cluster's AcceleratorModels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fedcompute.capacity.catalog import Catalog, model_key
from fedcompute.capacity.inventory import SLOT_SIZES
from fedcompute.report.rendering import State

Json = dict[str, Any]
_SHAPE: Final = re.compile(r"^\s*([0-9]+)\s*[xX*]\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Shape:
    """A job shape: ``count`` devices of ``model`` on one node."""

    count: int
    model: str


def parse_shape(text: str) -> Shape:
    """``8xNVIDIA-H100-80GB-HBM3`` -> Shape(8, ...); ValueError with a usage message."""
    match = _SHAPE.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a job shape: expected NxMODEL, e.g. 8xNVIDIA-H100-80GB-HBM3"
        )
    count = int(match.group(1))
    if count not in SLOT_SIZES:
        sizes = ", ".join(str(s) for s in SLOT_SIZES)
        raise ValueError(f"{count} devices per job: slots are reported for {sizes} devices only")
    return Shape(count, match.group(2))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _names(model: str, catalog: Catalog) -> set[str]:
    """Every spelling (compared as :func:`model_key`) that means ``model``."""
    keys = {model_key(model)}
    spec = catalog.lookup(model)
    if spec is not None:
        keys |= {model_key(n) for n in (spec.name, *spec.aliases)}
    return keys


def _slots(status: Mapping[str, Any], keys: set[str], count: int) -> int:
    total = 0
    for item in status.get("accelerators") or ():
        entry = _mapping(item)
        if isinstance(entry.get("model"), str) and model_key(entry["model"]) in keys:
            value = _mapping(entry.get("slots")).get(str(count))
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                total += value
    return total


def _offered(provider: Mapping[str, Any]) -> bool:
    return provider.get("state") == State.READY and provider.get("unschedulable") is not True


def fit(report: Mapping[str, Any], shape: Shape, catalog: Catalog) -> Json:
    """``{"shape", "total", "pools": [{"name", "slots", "providers": [{"name", "slots"}]}]}``
    from a capacity report (:func:`fedcompute.report.rendering.build_report`), zero-slot
    entries left out."""
    spec = catalog.lookup(shape.model)
    keys = _names(shape.model, catalog)
    pools: list[Json] = []
    for pool in report.get("pools") or ():
        providers = []
        for provider in pool.get("providers") or ():
            if not _offered(provider):
                continue
            slots = _slots(_mapping(provider.get("status")), keys, shape.count)
            if slots:
                providers.append({"name": provider["name"], "slots": slots})
        if providers:
            total = sum(p["slots"] for p in providers)
            pools.append({"name": pool["name"], "slots": total, "providers": providers})
    return {
        "shape": {"model": spec.name if spec is not None else shape.model, "count": shape.count},
        "total": sum(p["slots"] for p in pools),
        "pools": pools,
    }


def render_fit_table(result: Mapping[str, Any]) -> str:
    """The fit as text: one line per pool, its providers indented under it."""
    shape = result["shape"]
    title = f"{shape['count']} x {shape['model']} on one node"
    lines = [f"JOBS THAT FIT NOW: {title}", ""]
    rows: Sequence[tuple[str, int]] = [
        row
        for pool in result["pools"]
        for row in [
            (f"pool {pool['name']}", pool["slots"]),
            *((f"  {p['name']}", p["slots"]) for p in pool["providers"]),
        ]
    ]
    width = max([len(name) for name, _ in rows] + [len("total")])
    lines += [f"{name:<{width}}  {slots:>8}" for name, slots in rows]
    if not rows:
        lines.append("no Ready, schedulable provider has room for such a job now")
    lines += ["", f"{'total':<{width}}  {result['total']:>8}"]
    return "\n".join(lines) + "\n"
