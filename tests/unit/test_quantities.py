"""Kubernetes quantity arithmetic: exact parsing and canonical formatting."""

from __future__ import annotations

import re
from decimal import Decimal

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
