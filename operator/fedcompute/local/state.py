"""The small JSON files that describe a local cluster on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fedcompute.local import processes


def write(directory: Path, data: dict[str, Any], *, name: str = "state.json") -> None:
    """Replace ``directory/name`` atomically, so readers never see half a file."""
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, directory / name)


def read(directory: Path, *, name: str = "state.json") -> dict[str, Any]:
    """Read a state file; an absent or torn file reads as empty."""
    try:
        data = json.loads((directory / name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def owner_alive(pid: int, marker: str) -> bool:
    """Whether the process that asked for a cluster is still alive."""
    if marker:
        return processes.is_ours(pid, marker)
    return bool(processes.cmdline(pid))
