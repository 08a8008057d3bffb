"""Where local state lives: the per-user XDG cache directory, never the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$FEDCOMPUTE_CACHE_DIR`` or ``$XDG_CACHE_HOME/fedcompute`` (``~/.cache/fedcompute``)."""
    explicit = os.environ.get("FEDCOMPUTE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fedcompute"


def binaries_root() -> Path:
    """Versioned binary cache (one sub-directory per pin)."""
    return cache_root() / "bin"


def clusters_root() -> Path:
    """One sub-directory per local cluster."""
    return cache_root() / "clusters"


def source_root() -> Path | None:
    """The checkout this package runs from (holding ``hack/``), if any."""
    explicit = os.environ.get("FEDCOMPUTE_SOURCE_DIR")
    if explicit:
        return Path(explicit)
    candidate = Path(__file__).resolve().parents[3]
    return candidate if (candidate / "hack").is_dir() else None
