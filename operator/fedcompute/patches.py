"""JSON merge patches (RFC 7386) computed from observed and wanted documents. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(observed: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The smallest merge patch turning ``observed`` into ``wanted``.

    Keys absent from ``wanted`` become ``null`` (removed), nested maps are diffed key by
    key, and anything else (lists included, which merge patch replaces whole) is set when
    it differs. An empty result means the two are equal.
    """
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        before = observed.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in observed or before != value:
            patch[key] = value
    for key in observed:
        if key not in wanted:
            patch[key] = None
    return patch
