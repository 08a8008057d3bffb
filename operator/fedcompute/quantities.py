"""Kubernetes resource quantities as exact decimals.

Pure helpers shared by the API models (validation), the capacity arithmetic and the
reports. Quantities are parsed to :class:`decimal.Decimal` so sums never drift, and
formatted back in the canonical form Kubernetes itself would print.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation

# The grammar of resource.Quantity (k8s.io/apimachinery/pkg/api/resource), anchored.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}

Quantities = dict[str, Decimal]


class QuantityError(ValueError):
    """Raised for a string that is not a Kubernetes quantity."""


def parse(value: str | int | float | Decimal) -> Decimal:
    """Parse a quantity (``"500m"``, ``"64Gi"``, ``8``) into an exact decimal."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    text = value.strip()
    match = _QUANTITY_RE.match(text)
    if match is None:
        raise QuantityError(f"{value!r} is not a quantity (expected e.g. 500m, 4, 64Gi, 1.5T)")
    try:
        number = Decimal(match["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{value!r} is not a quantity") from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * (Decimal(10) ** int(suffix[1:]))


def is_quantity(value: object) -> bool:
    """Tell whether ``value`` parses as a quantity."""
    if not isinstance(value, str | int | float | Decimal) or isinstance(value, bool):
        return False
    try:
        parse(value)
    except QuantityError:
        return False
    return True


def format_quantity(value: Decimal, *, binary: bool = False) -> str:
    """Format a decimal as a canonical quantity string.

    Whole numbers stay plain (``"8"``), fractions become milli-units rounded up the way
    Kubernetes rounds (``"1500m"``), and ``binary=True`` prefers ``Ki``/``Mi``/``Gi``
    suffixes when they divide exactly (used for memory).
    """
    if value == 0:
        return "0"
    if value != value.to_integral_value():
        milli = (value * 1000).to_integral_value(rounding=ROUND_CEILING)
        return f"{int(milli)}m"
    whole = int(value)
    if binary:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            factor = _BINARY[suffix]
            if whole % factor == 0 and abs(whole) >= factor:
                return f"{whole // factor}{suffix}"
        return str(whole)
    for suffix in ("E", "P", "T", "G", "M", "k"):
        factor = int(_DECIMAL[suffix])
        if whole % factor == 0 and abs(whole) >= factor:
            return f"{whole // factor}{suffix}"
    return str(whole)


BINARY_RESOURCES = frozenset({"memory", "ephemeral-storage", "storage"})


def format_resource(name: str, value: Decimal) -> str:
    """Format a quantity for resource ``name`` (binary suffixes for memory-like ones)."""
    binary = name in BINARY_RESOURCES or name.startswith("hugepages-")
    return format_quantity(value, binary=binary)


def parse_map(values: Mapping[str, str | int | float | Decimal] | None) -> Quantities:
    """Parse a resource map (``{"cpu": "4", "memory": "8Gi"}``)."""
    return {name: parse(v) for name, v in (values or {}).items()}


def format_map(values: Mapping[str, Decimal]) -> dict[str, str]:
    """Format a resource map, sorted by resource name for stable output."""
    return {name: format_resource(name, values[name]) for name in sorted(values)}


def add(*maps: Mapping[str, Decimal]) -> Quantities:
    """Sum resource maps key by key."""
    total: Quantities = {}
    for m in maps:
        for name, v in m.items():
            total[name] = total.get(name, Decimal(0)) + v
    return total


def subtract(a: Mapping[str, Decimal], *others: Mapping[str, Decimal]) -> Quantities:
    """``a`` minus each of ``others``, clamped at zero, over ``a``'s keys."""
    result = dict(a)
    for other in others:
        for name, v in other.items():
            if name in result:
                result[name] = max(Decimal(0), result[name] - v)
    return result


def maximum(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> Quantities:
    """Key-wise maximum of two resource maps."""
    return {k: max(a.get(k, Decimal(0)), b.get(k, Decimal(0))) for k in set(a) | set(b)}


def total_of(maps: Iterable[Mapping[str, Decimal]]) -> Quantities:
    """Sum an iterable of resource maps."""
    return add(*maps)
