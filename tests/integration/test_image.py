"""The container image's build stage, replayed without a container runtime.

The build stage's commands run on the build context that ``.dockerignore`` leaves (parsed
in tests/unit/test_image.py): the wheel is built, installed from wheels only into a fresh
virtual environment, and run. Needs PyPI or a warm pip cache.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_image import ROOT, STAGES, build_context

pytestmark = pytest.mark.integration


def test_build_stage_builds_a_wheel_that_runs(tmp_path: Path) -> None:
    """Replay the build stage: wheel from the context, wheels-only install, run it.

    Needs PyPI or a warm pip cache (the build backend and the dependencies' wheels).
    """
    context = tmp_path / "context"
    for rel in build_context(ROOT):
        target = context / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    (build,) = (s for s in STAGES if s.name == "build")
    (run,) = build.all("RUN")
    commands = [shlex.split(c) for c in run.split("&&")]
    # The same commands, on this machine's Python and in tmp_path instead of / .
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv = tmp_path / "venv"
    wheels = tmp_path / "wheels"
    for command in commands:
        argv = []
        for word in command:
            arg = word.replace("/opt/fedcompute", str(venv)).replace("/wheels", str(wheels))
            argv += sorted(map(str, wheels.glob("*.whl"))) if arg.endswith("*.whl") else [arg]
        if argv[0] == "python":
            argv[0] = sys.executable
        result = subprocess.run(
            argv, cwd=context, env=env, capture_output=True, text=True, check=False, timeout=600
        )
        assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    (wheel,) = wheels.glob("fedcompute-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    fedcompute = venv / "bin" / "fedcompute"
    out = subprocess.run([fedcompute, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("fedcompute ")
    # `run` and every module import with the runtime dependencies alone (no dev extras).
    subprocess.run([fedcompute, "run", "--help"], capture_output=True, check=True)
    probe = (
        "import importlib, pkgutil, fedcompute\n"
        "for m in pkgutil.walk_packages(fedcompute.__path__, 'fedcompute.'):\n"
        "    if m.name != 'fedcompute.__main__':\n"
        "        importlib.import_module(m.name)\n"
    )
    result = subprocess.run(
        [venv / "bin" / "python", "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
