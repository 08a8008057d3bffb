"""Fit what the operator writes into the CRD's bounds by folding, never by failing. Pure.

A heterogeneous member can carry more resource names or accelerator models than a status
may list, and a pool can gather more regions than its status holds. Instead of a status
the API server would refuse (which used to stop every write of the pass), the largest
entries are kept and the rest are summed into one clearly named remainder entry; the
number of entries folded away is reported with the status.

Bounds are read from the API models themselves, so the CRD and this module cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, TypeVar

import annotated_types
from pydantic import BaseModel

from fedcompute.api.common import (
    LABEL_VALUE_PATTERN,
    QUALIFIED_NAME_MAX,
    QUALIFIED_NAME_PATTERN,
    QUANTITY_MAP_MAX,
)
from fedcompute.quantities import Quantities

OTHER_RESOURCES: Final = "fedcompute.io/other"
"""Resource name of the remainder of resources folded away (their values summed)."""
OTHER_MODELS: Final = "other-models"
"""Accelerator model of the remainder of models folded away."""
OTHER_REGIONS: Final = "other-regions"
"""Region name of the remainder of regions folded away."""
PRIORITY_RESOURCES: Final = ("cpu", "memory", "pods", "ephemeral-storage")
"""Kept first, whatever their values, because every report and node needs them."""
INT64_MAX: Final = 2**63 - 1

_QUALIFIED = re.compile(QUALIFIED_NAME_PATTERN)
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)
T = TypeVar("T")


def max_items(model: type[BaseModel], name: str) -> int:
    """The ``max_length`` of a list or map field of an API model (its CRD maxItems)."""
    for item in model.model_fields[name].metadata:
        if isinstance(item, annotated_types.MaxLen):
            return int(item.max_length)
    raise LookupError(f"{model.__name__}.{name} has no max_length")  # pragma: no cover


def valid_resource_name(name: object) -> bool:
    """Whether ``name`` may be a key of a status quantity map (a qualified name)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= QUALIFIED_NAME_MAX
        and _QUALIFIED.match(name) is not None
    )


def valid_label_value(value: object) -> bool:
    """Whether ``value`` may be a label value (an accelerator model in status)."""
    return isinstance(value, str) and 0 < len(value) <= 63 and _LABEL_VALUE.match(value) is not None


def clamp(value: int) -> int:
    """An integer within the CRD's int64, never negative."""
    return max(0, min(INT64_MAX, value))


def fold_maps(
    maps: Mapping[str, Mapping[str, Decimal]],
    *,
    keep_first: Iterable[str] = (),
    limit: int = QUANTITY_MAP_MAX,
) -> tuple[dict[str, Quantities], int]:
    """Fold several resource maps over one common choice of kept resource names.

    The maps (e.g. capacity, allocatable, allocated, available) keep the same names, so
    the figures stay comparable. ``keep_first`` names are kept first, then the names with
    the largest value in any map. Invalid names are always folded. Returns the maps and
    how many names were folded into :data:`OTHER_RESOURCES`.
    """
    names: set[str] = set()
    for values in maps.values():
        names.update(values)
    valid = {n for n in names if valid_resource_name(n) and n != OTHER_RESOURCES}
    if len(valid) == len(names) and len(names) <= limit:
        return {k: dict(v) for k, v in maps.items()}, 0
    largest = {n: max(v.get(n, Decimal(0)) for v in maps.values()) for n in valid}
    order = [n for n in dict.fromkeys(keep_first) if n in valid]
    order += sorted((n for n in valid if n not in order), key=lambda n: (-largest[n], n))
    kept = set(order[: limit - 1])
    folded = names - kept
    result: dict[str, Quantities] = {}
    for key, values in maps.items():
        out = {n: v for n, v in values.items() if n in kept}
        rest = [v for n, v in values.items() if n in folded]
        if rest:
            out[OTHER_RESOURCES] = sum(rest, Decimal(0))
        result[key] = out
    return result, len(folded)


def fold_list(
    entries: Sequence[T],
    *,
    limit: int,
    size: Callable[[T], Any],
    name: Callable[[T], str],
    merge: Callable[[Sequence[T]], T],
) -> tuple[list[T], int]:
    """Keep the ``limit - 1`` largest entries (by ``size``, then name) and merge the rest.

    Returns the entries (in their original order, the remainder last) and how many were
    folded into the remainder. A list within the bound is returned unchanged.
    """
    if len(entries) <= limit:
        return list(entries), 0
    ranked = sorted(range(len(entries)), key=lambda i: (-size(entries[i]), name(entries[i])))
    kept = set(ranked[: limit - 1])
    rest = [e for i, e in enumerate(entries) if i not in kept]
    return [e for i, e in enumerate(entries) if i in kept] + [merge(rest)], len(rest)
