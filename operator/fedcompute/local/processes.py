"""Process identity and teardown helpers for local clusters.

A PID alone is not an identity (PIDs are reused, and zombies still answer
``kill(pid, 0)``), so a process counts as ours only while its command line still names
the cluster's state directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def cmdline(pid: int) -> str:
    """The process's command line joined by spaces ('' when gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_ours(pid: int | None, marker: str) -> bool:
    """Whether ``pid`` is alive and its command line contains ``marker``."""
    if not pid or pid <= 0:
        return False
    return marker in cmdline(pid)


def pids_with_marker(marker: str) -> list[int]:
    """Every live process whose command line contains ``marker`` (orphans included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if pid != os.getpid() and marker in cmdline(pid):
                found.append(pid)
    return found


def terminate(pids: Iterable[int], marker: str, *, grace: float = 10.0) -> None:
    """SIGTERM the processes still ours, then SIGKILL whatever is left after ``grace``."""
    targets = [p for p in pids if is_ours(p, marker)]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        targets = [p for p in targets if is_ours(p, marker)]
        if not targets:
            return
        time.sleep(0.05)
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(is_ours(p, marker) for p in targets):
        time.sleep(0.05)
