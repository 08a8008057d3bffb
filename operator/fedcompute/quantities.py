"""Kubernetes resource quantities as exact decimals.

Pure helpers shared by the API models (validation), the capacity arithmetic and the
reports. Quantities are parsed to :class:`decimal.Decimal` so sums never drift, and
formatted back in the canonical form Kubernetes itself would print.

Every function here is total and cheap for hostile input: a quantity's magnitude is read
from its digit count and exponent before any number is built, so ``1e999999999`` costs
no more than ``1``. Kubernetes represents no quantity above 2^63-1 in magnitude and none
finer than 1n (k8s.io/apimachinery/pkg/api/resource); :func:`parse` refuses the former and
rounds the latter up, and the formatters cap what they are given to the same range, as
sums over many providers may exceed it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, ROUND_UP, Context, Decimal
from typing import Final, Literal

# The grammar of resource.Quantity (k8s.io/apimachinery/pkg/api/resource), anchored.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_SUFFIX = r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE](?P<exponent>[+-]?[0-9]+))?"
_QUANTITY_RE = re.compile(
    r"(?P<sign>[+-]?)(?=\.?[0-9])(?P<whole>[0-9]*)(?:\.(?P<fraction>[0-9]*))?" + _SUFFIX
)
# What resource.ParseQuantity itself accepts: also a bare sign or point ("+", "."), as 0.
_KUBERNETES_RE = re.compile(
    r"(?P<sign>[+-]?)(?P<whole>[0-9]*)(?:\.(?P<fraction>[0-9]*))?" + _SUFFIX
)

MAX_QUANTITY: Final = 2**63 - 1
"""The largest magnitude Kubernetes represents in a quantity."""
_MAX: Final = Decimal(MAX_QUANTITY)
_MAX_DIGITS: Final = len(str(MAX_QUANTITY))  # 19
_NANO: Final = Decimal("1e-9")
_NANO_EXPONENT: Final = -9

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

# Exact arithmetic for anything parse returns (at most 28 significant digits) and for sums
# of very many of them; no trap is enabled, so no operation here raises.
_CONTEXT: Final = Context(
    prec=200, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[], flags=[]
)

Quantities = dict[str, Decimal]


class QuantityError(ValueError):
    """Raised for a value that is not a Kubernetes quantity, or is larger than one can be."""


def _too_large(value: object) -> QuantityError:
    return QuantityError(
        f"{_shown(value)} is larger than {MAX_QUANTITY} (2^63-1), the largest quantity "
        "Kubernetes represents"
    )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _exponent(text: str) -> int | None:
    """A decimal exponent's value, or None when it has too many digits to be read cheaply."""
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 40:
        return None
    return -int(digits) if text.startswith("-") else int(digits)


def _round_nano(value: Decimal, context: Context = _CONTEXT) -> Decimal:
    """``value`` rounded away from zero to a whole number of 1n, as Kubernetes rounds."""
    exponent = value.as_tuple().exponent
    if value.is_zero() or (isinstance(exponent, int) and exponent >= _NANO_EXPONENT):
        return value
    if value.adjusted() < _NANO_EXPONENT:
        return _NANO.copy_sign(value)
    return value.quantize(_NANO, rounding=ROUND_UP, context=context)


def _magnitude_exceeds(value: Decimal, digits: int) -> bool:
    """True when ``|value|`` has more than ``digits`` integer digits (cheap: no arithmetic)."""
    return not value.is_zero() and value.adjusted() >= digits


# Exponents beyond this are read as "hopelessly large or small" without building a number.
_HUGE_EXPONENT: Final = 10**15


# What parsing does with a magnitude above 2^63-1: refuse it, cap it, or what Kubernetes
# does (cap a binary-suffixed value, keep a decimal one).
_Above = Literal["refuse", "cap", "kubernetes"]


def _from_text(
    match: re.Match[str], exponent: int | None, *, above: _Above, original: object
) -> Decimal:
    """The value of a scanned quantity, built only once its magnitude is known to be small."""
    whole = match["whole"].lstrip("0")
    fraction = (match["fraction"] or "").rstrip("0")
    negative = match["sign"] == "-"
    suffix = match["suffix"] or ""
    if not whole and not fraction:
        return Decimal(0)
    tiny = -_NANO if negative else _NANO

    def beyond() -> Decimal:
        if above == "refuse":
            raise _too_large(original)
        return -_MAX if negative else _MAX

    binary = suffix in _BINARY
    if binary:
        scale, power_of_two = 0, _BINARY[suffix]
    elif suffix in _DECIMAL:
        scale, power_of_two = _DECIMAL[suffix], 0
    elif exponent is None or abs(exponent) > _HUGE_EXPONENT:
        return tiny if suffix[1:].startswith("-") else beyond()
    else:
        scale, power_of_two = exponent, 0
    # Position of the leading digit: 10^lead <= |mantissa * 10^scale| < 10^(lead+1); a
    # binary suffix (at most 2^60) adds fewer than 19 digits.
    if whole:
        lead = len(whole) - 1 + scale
    else:
        lead = scale - (len(fraction) - len(fraction.lstrip("0"))) - 1
    if lead + (19 if binary else 0) < _NANO_EXPONENT - 1:
        return tiny
    keep = above == "kubernetes" and not binary  # Kubernetes keeps large decimal values
    huge = lead >= _MAX_DIGITS + (19 if binary else 0)
    if huge and not keep:
        return beyond()
    digits = whole + fraction
    context = Context(prec=len(digits) + 60, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])
    value = Decimal(f"{'-' if negative else ''}{digits}E{scale - len(fraction)}")
    if huge:  # kept as it is, without expanding its exponent
        return _round_nano(value, context)
    if binary:
        value = context.multiply(value, Decimal(2**power_of_two))
    value = _round_nano(value, context)
    if value.copy_abs() > _MAX and not keep:
        return beyond()
    return value


def _check_decimal(value: Decimal, original: object, *, cap: bool) -> Decimal:
    if not value.is_finite():
        raise QuantityError(f"{_shown(original)} is not a quantity (not a finite number)")
    if _magnitude_exceeds(value, _MAX_DIGITS) or _round_nano(value).copy_abs() > _MAX:
        if not cap:
            raise _too_large(original)
        return _MAX.copy_sign(value)
    return _round_nano(value)


def parse(value: str | int | float | Decimal, *, cap: bool = False) -> Decimal:
    """Parse a quantity (``"500m"``, ``"64Gi"``, ``8``) into an exact decimal.

    Fractions finer than 1n round up (away from zero) to 1n as Kubernetes rounds them;
    magnitudes above :data:`MAX_QUANTITY` are refused, or with ``cap`` capped to it (for
    figures someone else summed). Raises only :class:`QuantityError`.
    """
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, Decimal):
        return _check_decimal(value, value, cap=cap)
    if isinstance(value, int):
        if abs(value) > MAX_QUANTITY:
            if not cap:
                raise _too_large(value)
            return -_MAX if value < 0 else _MAX
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"{value!r} is not a quantity (not a finite number)")
        return _check_decimal(Decimal(repr(value)), value, cap=cap)
    if not isinstance(value, str):
        raise QuantityError(f"{_shown(value)} is not a quantity")
    # Like resource.Quantity's JSON decoding, surrounding white space is ignored.
    match = _QUANTITY_RE.fullmatch(value.strip())
    if match is None:
        raise QuantityError(
            f"{_shown(value)} is not a quantity (expected e.g. 500m, 4, 64Gi, 1.5T)"
        )
    exponent = _exponent(match["exponent"]) if match["exponent"] else None
    return _from_text(match, exponent, above="cap" if cap else "refuse", original=value)


def parse_kubernetes(text: str) -> Decimal:
    """Parse ``text`` exactly as resource.ParseQuantity does, for CEL's ``quantity()``.

    Unlike :func:`parse`: the grammar also admits a bare sign or point (as 0); a decimal
    exponent must fit in 64 bits and is then truncated to 32 bits, as Kubernetes does; a
    binary-suffixed value above 2^63-1 is capped to it; and a large decimal value is kept
    as it is (lazily, without expanding its digits). Raises only :class:`QuantityError`.
    """
    match = _KUBERNETES_RE.fullmatch(text) if text else None
    if match is None:
        raise QuantityError(f"{_shown(text)} is not a quantity")
    exponent = None
    if match["exponent"]:
        exponent = _exponent(match["exponent"])
        if exponent is None or not -(2**63) <= exponent < 2**63:
            raise QuantityError(f"{_shown(text)} is not a quantity (exponent out of range)")
        exponent = (exponent + 2**31) % 2**32 - 2**31
    # A number without digits is 0 only on ParseQuantity's int64 fast path, which large
    # binary suffixes and exponents below -9 leave.
    if not (match["whole"] or match["fraction"]) and (
        match["suffix"] in ("Pi", "Ei") or (exponent is not None and exponent < -9)
    ):
        raise QuantityError(f"{_shown(text)} is not a quantity")
    return _from_text(match, exponent, above="kubernetes", original=text)


def is_quantity(value: object) -> bool:
    """Tell whether ``value`` parses as a quantity (within the range Kubernetes allows)."""
    if not isinstance(value, str | int | float | Decimal) or isinstance(value, bool):
        return False
    try:
        parse(value)
    except QuantityError:
        return False
    return True


def clamp(value: Decimal) -> Decimal:
    """``value`` in Kubernetes' range: capped at 2^63-1 in magnitude, rounded up to 1n.

    NaN becomes 0 and infinities are capped, so the result is always a quantity.
    """
    if not isinstance(value, Decimal):
        try:
            value = Decimal(value)
        except (TypeError, ValueError, ArithmeticError):
            return Decimal(0)
    if value.is_nan():
        return Decimal(0)
    if value.is_infinite() or _magnitude_exceeds(value, _MAX_DIGITS):
        return _MAX.copy_sign(value)
    rounded = _round_nano(value)
    if rounded.copy_abs() > _MAX:
        return _MAX.copy_sign(value)
    return rounded


def format_quantity(value: Decimal, *, binary: bool = False) -> str:
    """Format a decimal as a canonical quantity string; never raises.

    Whole numbers stay plain (``"8"``) or take the largest decimal suffix that divides
    them (``"3k"``); fractions take the largest of ``m``, ``u``, ``n`` that keeps them
    whole (``"1500m"``, ``"10n"``); ``binary=True`` prefers ``Ki``/``Mi``/``Gi``... when
    they divide exactly (used for memory). The value is first brought into Kubernetes'
    range by :func:`clamp`, so the result always matches :data:`QUANTITY_PATTERN` and
    is at most 30 characters.
    """
    value = clamp(value)
    if value.is_zero():
        return "0"
    nanos = int(_CONTEXT.scaleb(value, 9))
    if nanos % 10**9:
        for suffix, step in (("m", 10**6), ("u", 10**3), ("n", 1)):
            if nanos % step == 0:
                return f"{nanos // step}{suffix}"
    whole = nanos // 10**9
    if binary:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            factor = 2 ** _BINARY[suffix]
            if whole % factor == 0:
                return f"{whole // factor}{suffix}"
        return str(whole)
    for suffix in ("E", "P", "T", "G", "M", "k"):
        factor = 10 ** _DECIMAL[suffix]
        if whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)


def format_plain(value: Decimal) -> str:
    """Format as a plain decimal (``19.5``, ``312``), clamped like :func:`format_quantity`.

    Used for figures such as TFLOPS that read better without suffixes; never raises.
    """
    value = clamp(value)
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


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
    """Sum resource maps key by key, exactly (sums may exceed 2^63-1; formatting caps)."""
    total: Quantities = {}
    for m in maps:
        for name, v in m.items():
            total[name] = _CONTEXT.add(total.get(name, Decimal(0)), v)
    return total


def subtract(a: Mapping[str, Decimal], *others: Mapping[str, Decimal]) -> Quantities:
    """``a`` minus each of ``others``, clamped at zero, over ``a``'s keys."""
    result = dict(a)
    for other in others:
        for name, v in other.items():
            if name in result:
                result[name] = max(Decimal(0), _CONTEXT.subtract(result[name], v))
    return result


def maximum(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> Quantities:
    """Key-wise maximum of two resource maps."""
    return {k: max(a.get(k, Decimal(0)), b.get(k, Decimal(0))) for k in set(a) | set(b)}


def total_of(maps: Iterable[Mapping[str, Decimal]]) -> Quantities:
    """Sum an iterable of resource maps."""
    return add(*maps)
