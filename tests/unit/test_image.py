"""The container image, as far as it can be checked without a container runtime.

The Dockerfile is parsed and held to its promises (multi-stage, pinned slim base, non-root
user, nothing but the virtual environment in the final stage, ``fedcompute run`` as the
entrypoint), and the build context that ``.dockerignore`` leaves is computed. Replaying the
build stage on that context (a wheel built, installed and run) takes a wheel build and a
pip install, so it is in tests/integration/test_image.py.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text())
FINAL = STAGES[-1]


def test_multi_stage_on_a_pinned_slim_base() -> None:
    assert len(STAGES) >= 2
    for stage in STAGES:
        image, _, tag = stage.base.partition(":")
        assert image == "python", stage.base
        assert re.fullmatch(r"3\.\d+\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", tag), (
            f"{stage.base}: pin an exact slim tag, not a floating one"
        )
    assert FINAL.base == STAGES[0].base, "the venv must run on the Python it was built with"


def test_final_stage_runs_fedcompute_as_non_root() -> None:
    (user,) = FINAL.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root id"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    (entrypoint,) = FINAL.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["fedcompute", "run"], "exec form, fedcompute run"
    assert not FINAL.all("CMD")


def test_final_stage_holds_no_build_tools() -> None:
    assert not FINAL.all("RUN"), "the final stage installs nothing"
    copies = FINAL.all("COPY")
    assert copies and all(c.startswith("--from=") for c in copies), copies
    assert not FINAL.all("ADD")


def test_chart_runs_the_image_as_its_user() -> None:
    import yaml

    values = yaml.safe_load((ROOT / "charts" / "fedcompute" / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    (user,) = FINAL.all("USER")
    assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    ports = {int(p) for p in FINAL.all("EXPOSE")[0].split()}
    assert ports == {values["operator"]["healthPort"], values["operator"]["metricsPort"]}


# --- the build context ----------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (Go filepath.Match, plus ``**``)."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def build_context(root: Path) -> list[Path]:
    """Files Docker sends as the build context, per ``.dockerignore``."""
    rules = []
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern(os.path.normpath(line.lstrip("!")).strip("/"))))
    kept = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in {".git", ".venv"}:
            continue
        prefixes = ["/".join(rel.parts[: n + 1]) for n in range(len(rel.parts))]
        excluded = False
        for negate, regex in rules:
            if any(regex.match(p) for p in prefixes):
                excluded = not negate
        if not excluded:
            kept.append(rel)
    return kept


def test_build_context_is_only_the_sources() -> None:
    context = build_context(ROOT)
    top = {p.parts[0] for p in context}
    assert top == {"pyproject.toml", "README.md", "operator"}, top
    assert Path("operator/fedcompute/cli.py") in context
    assert not any("__pycache__" in p.parts or p.suffix == ".pyc" for p in context)
    assert not any(p.parts[1].endswith(".egg-info") for p in context if len(p.parts) > 1)
    for source in (
        word
        for stage in STAGES
        for copy in stage.all("COPY")
        if not copy.startswith("--from=")
        for word in copy.split()[:-1]
    ):
        assert any(p == Path(source) or Path(source) in p.parents for p in context), (
            f"COPY {source}: excluded by .dockerignore"
        )
