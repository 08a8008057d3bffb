"""``fedcompute run``'s process settings: the collector's thresholds and frozen start-up."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from fedcompute.handlers import process


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_start_up_and_raises_the_thresholds(
    restore_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(process.DEFAULT_GC_ENV, raising=False)
    gc.unfreeze()
    process.tune_gc()
    assert gc.get_threshold() == process.GC_THRESHOLD
    assert gc.get_freeze_count() > 0


def test_the_defaults_can_be_kept_for_a_comparison(
    restore_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(process.DEFAULT_GC_ENV, "1")
    gc.unfreeze()
    before = gc.get_threshold()
    process.tune_gc()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
