"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.hostile import HostileServer, start_hostile


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[HostileServer]:
    """A hostile member API server on loopback (set its ``handler``)."""
    yield from start_hostile(tmp_path)
