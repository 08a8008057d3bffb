"""Kubernetes quantity arithmetic: exact parsing and canonical formatting."""

from __future__ import annotations

import random
import re
import time
from decimal import Context, Decimal
from typing import Any, cast

import pytest

from fedcompute import quantities as q


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("4", Decimal(4)),
        ("64Gi", Decimal(64 * 2**30)),
        ("1.5", Decimal("1.5")),
        ("2k", Decimal(2000)),
        ("1e3", Decimal(1000)),
        ("100Mi", Decimal(100 * 2**20)),
        (".5", Decimal("0.5")),
        ("312T", Decimal("312e12")),
        ("10n", Decimal("1e-8")),
    ],
)
def test_parse(text: str, value: Decimal) -> None:
    assert q.parse(text) == value
    assert re.match(q.QUANTITY_PATTERN, text)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5 Gi", "Gi", "1Gb", "--1", "1e"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(q.QuantityError):
        q.parse(text)
    assert not q.is_quantity(text)
    assert not re.match(q.QUANTITY_PATTERN, text)


@pytest.mark.parametrize(
    ("resource", "value", "text"),
    [
        ("cpu", Decimal("1.5"), "1500m"),
        ("cpu", Decimal(64), "64"),
        ("memory", Decimal(64 * 2**30), "64Gi"),
        ("memory", Decimal(1000), "1000"),
        ("nvidia.com/gpu", Decimal(8), "8"),
        ("cpu", Decimal(0), "0"),
        ("cpu", Decimal(3000), "3k"),
    ],
)
def test_format_resource(resource: str, value: Decimal, text: str) -> None:
    assert q.format_resource(resource, value) == text
    assert q.parse(text) == value


def test_map_arithmetic_clamps_at_zero() -> None:
    a = q.parse_map({"cpu": "4", "memory": "8Gi"})
    b = q.parse_map({"cpu": "6", "nvidia.com/gpu": "1"})
    assert q.add(a, b) == {"cpu": Decimal(10), "memory": Decimal(8 * 2**30), "nvidia.com/gpu": 1}
    assert q.subtract(a, b) == {"cpu": Decimal(0), "memory": Decimal(8 * 2**30)}
    assert q.maximum(a, b)["cpu"] == Decimal(6)
    assert q.format_map(a) == {"cpu": "4", "memory": "8Gi"}


# --- range and hostile input -------------------------------------------------------------

MAX = Decimal(q.MAX_QUANTITY)
NANO = Decimal("1e-9")


def test_max_quantity_is_kubernetes_limit() -> None:
    assert q.MAX_QUANTITY == 2**63 - 1 == 9223372036854775807


HOSTILE: list[object] = [
    "1e999999999",
    "1E+999999999",
    "1e99999999999999999999",
    "1e" + "9" * 5000,  # beyond Python's int-from-string digit limit
    "9" * 1_000_000,
    "8Ei",
    "16Ei",
    "8192Pi",
    "9223372036854775808",
    "-9223372036854775808",
    "9223372036854775807.0000000001",
    "99999999999999999999",
    "1e19",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "0x10",
    "1_000",
    "\uff11",  # a fullwidth digit
    "1e",
    "e5",
    ".",
    "+",
    "",
    " ",
    "Ki",
    "1.2.3",
    "1 Gi",
    float("inf"),
    float("-inf"),
    float("nan"),
    1e300,
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("1e999999999"),
    Decimal("-1e999999999"),
    10**100,
    -(2**63),
    True,
    None,
    b"1",
    [],
    {},
    object(),
]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:30])
def test_hostile_input_raises_only_quantity_error_and_is_cheap(value: object) -> None:
    started = time.monotonic()
    with pytest.raises(q.QuantityError):
        q.parse(cast(Any, value))
    assert not q.is_quantity(value)
    assert time.monotonic() - started < 0.5


def test_values_above_the_limit_name_it() -> None:
    with pytest.raises(q.QuantityError, match=r"larger than 9223372036854775807 \(2\^63-1\)"):
        q.parse("8Ei")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("9223372036854775807", MAX),
        ("-9223372036854775807", -MAX),
        ("9223372036854775807000m", MAX),
        ("9.223372036854775807E18", MAX),
        ("8191Pi", Decimal(8191 * 2**50)),
        ("7.99999Ei", Decimal("7.99999") * 2**60),
        ("1.5Ki", Decimal(1536)),
        ("0.5Ki", Decimal(512)),
        ("1n", NANO),
        ("0.1n", NANO),  # finer than 1n rounds up, as Kubernetes rounds
        ("1.0000000001", Decimal("1.000000001")),
        ("-0.1n", -NANO),
        ("1e-999999999", NANO),
        ("1e-99999999999999999999", NANO),
        ("0." + "0" * 1_000_000 + "1", NANO),
        ("0e999999999", Decimal(0)),
        ("000000000000000000000000000001", Decimal(1)),
        (" 8 ", Decimal(8)),
    ],
)
def test_parse_at_the_edges(text: str, value: Decimal) -> None:
    started = time.monotonic()
    assert q.parse(text) == value
    assert time.monotonic() - started < 0.5


def test_parse_of_non_strings_is_bounded_and_rounded() -> None:
    assert q.parse(q.MAX_QUANTITY) == MAX
    assert q.parse(-q.MAX_QUANTITY) == -MAX
    assert q.parse(1.5) == Decimal("1.5")
    assert q.parse(Decimal("1e-20")) == NANO
    assert q.parse(Decimal("9223372036854775806.9999999991")) == MAX


# --- Kubernetes' own parser, for CEL's quantity() ---------------------------------------
# Values checked against resource.ParseQuantity of k8s.io/apimachinery v0.34.4.


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8Ei", MAX),  # binary values are capped...
        ("16Ei", MAX),
        ("8191.99999999999999911182158029987476766109466552734375Pi", MAX),
        ("9223372036854775808", MAX + 1),  # ...decimal ones are kept
        ("1e999999999", Decimal("1e999999999")),
        ("1e4294967296", Decimal(1)),  # the exponent is truncated to 32 bits
        ("1e4294967297", Decimal(10)),
        ("1e-9223372036854775808", Decimal(1)),
        ("0.1n", NANO),
        (".", Decimal(0)),
        ("+", Decimal(0)),
        ("Ki", Decimal(0)),
        ("7.99999Ei", Decimal("7.99999") * 2**60),
    ],
)
def test_parse_kubernetes(text: str, value: Decimal) -> None:
    assert q.parse_kubernetes(text) == value


@pytest.mark.parametrize(
    "text", ["", " 1", "1 ", "Pi", "+.Ei", "e-10", "1e9223372036854775808", "1ee5", "1Gb"]
)
def test_parse_kubernetes_refuses_what_kubernetes_refuses(text: str) -> None:
    with pytest.raises(q.QuantityError):
        q.parse_kubernetes(text)


# --- formatting is total ---------------------------------------------------------------


def _random_quantity(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
    fraction = "".join(rng.choice("0123456789") for _ in range(rng.choice([0, 0, 1, 3, 9, 12])))
    suffix = rng.choice(["", "", "n", "u", "m", "k", "M", "G", "T", "P", "E"])
    suffix = rng.choice([suffix, "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", f"e{rng.randint(-15, 18)}"])
    return digits + (f".{fraction}" if fraction else "") + suffix


def test_format_of_parse_round_trips_by_value_for_in_range_quantities() -> None:
    rng = random.Random(20250501)
    checked = 0
    while checked < 3000:
        text = _random_quantity(rng)
        try:
            value = q.parse(text)
        except q.QuantityError:
            assert not q.is_quantity(text)
            continue
        for binary in (False, True):
            formatted = q.format_quantity(value, binary=binary)
            assert q.parse(formatted) == value, (text, formatted)
            assert re.match(q.QUANTITY_PATTERN, formatted) and len(formatted) <= 64
        assert q.parse(q.format_plain(value)) == value
        checked += 1


FORMAT_EDGES = [
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    Decimal("1e999999999"),
    Decimal("-1e999999999"),
    Decimal("1e-999999999"),
    Decimal("-1e-999999999"),
    MAX,
    MAX + 1,
    MAX + NANO,
    MAX - NANO,
    -MAX - 1,
    Decimal(2**64),
    Decimal("9223372036854775806.999999999"),
    Decimal("0.123456789123456789"),
    Decimal("-0"),
    Decimal(0),
]


def test_format_never_raises_matches_the_pattern_and_fits_the_crd() -> None:
    rng = random.Random(7)
    values = FORMAT_EDGES + [
        Decimal(rng.randint(-(10**30), 10**30)).scaleb(rng.randint(-40, 40)) for _ in range(3000)
    ]
    for value in values:
        for text in (
            q.format_quantity(value),
            q.format_quantity(value, binary=True),
            q.format_resource("memory", value),
            q.format_plain(value),
            *q.format_map({"cpu": value, "memory": value}).values(),
        ):
            assert re.match(q.QUANTITY_PATTERN, text), (value, text)
            assert len(text) <= 64
            assert abs(q.parse(text)) <= MAX


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (MAX + 1, "9223372036854775807"),  # capped, as Kubernetes caps
        (-MAX - 1, "-9223372036854775807"),
        (Decimal("Infinity"), "9223372036854775807"),
        (Decimal("NaN"), "0"),
        (Decimal("1e-8"), "10n"),
        (Decimal("0.0015"), "1500u"),
        (Decimal("1e-30"), "1n"),
        (Decimal("-1e-30"), "-1n"),
    ],
)
def test_format_caps_and_rounds_like_kubernetes(value: Decimal, text: str) -> None:
    assert q.format_quantity(value) == text


# --- arithmetic is exact and total -----------------------------------------------------


def test_sums_beyond_the_limit_stay_exact_and_format_capped() -> None:
    big = {
        "memory": q.parse("9223372036854775807"),
        "cpu": q.parse("9223372036854775806999999999n"),
    }
    total = q.total_of([big] * 1000)
    assert total["memory"] == MAX * 1000
    assert total["cpu"] == (MAX - NANO) * 1000  # 31 significant digits, none lost
    assert q.format_map(total) == {"cpu": "9223372036854775807", "memory": "9223372036854775807"}
    exact = Context(prec=100)
    assert q.subtract(total, big)["cpu"] == exact.multiply(MAX - NANO, 999)
    assert q.subtract(big, total) == {"cpu": Decimal(0), "memory": Decimal(0)}
    assert q.maximum(big, total) == total
    tiny = {"cpu": q.parse("1n")}
    assert q.add(big, tiny)["cpu"] == MAX
    assert q.add({"cpu": MAX}, tiny)["cpu"] == MAX + NANO
