"""``fedcompute crds`` and ``fedcompute validate``: the API's command line.

Both work offline: ``crds`` prints or writes the generated CustomResourceDefinitions,
``validate`` checks manifests for CI and GitOps pipelines before they reach a cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fedcompute.api import crds, validation


def register(subparsers: Any) -> None:
    """Add the ``crds`` and ``validate`` subcommands."""
    crds_parser = subparsers.add_parser(
        "crds",
        help="print the CustomResourceDefinitions generated from the API models",
        description="Print both CRDs as one multi-document YAML stream, or write one file "
        "per kind with --output-dir.",
    )
    crds_parser.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="write <plural>.fedcompute.io.yaml files into DIR instead of printing",
    )
    crds_parser.set_defaults(func=run_crds)

    validate_parser = subparsers.add_parser(
        "validate",
        help="validate ComputeProvider and RegionPool manifests offline",
        description="Validate YAML or JSON files and directories (multi-document; other "
        "kinds are ignored) with the same rules the CRDs enforce. Exit 0 when every object "
        "is valid, 1 otherwise.",
    )
    validate_parser.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="file or directory ('-' for stdin)"
    )
    validate_parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text: one line per error (default); json: a report for machines",
    )
    validate_parser.set_defaults(func=run_validate)


def run_crds(args: argparse.Namespace) -> int:
    """Print the CRDs, or write them into ``--output-dir``."""
    if args.output_dir is None:
        sys.stdout.write(crds.render_stream())
        return 0
    for path in crds.write_files(args.output_dir):
        print(f"wrote {path}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Validate the given paths and report; the exit code says whether all were valid."""
    reports: list[validation.DocumentReport] = []
    files: list[Path] = []
    for path in args.paths:
        if str(path) == "-":
            reports.extend(validation.validate_text(sys.stdin.read(), file="<stdin>"))
        elif not path.exists():
            missing = validation.FieldError(
                "", validation.ErrorType.INVALID, "no such file or directory"
            )
            reports.append(validation.DocumentReport(str(path), 0, None, None, (missing,)))
        else:
            found = list(validation.manifest_files([path]))
            files.extend(found)
            reports.extend(validation.validate_paths(found))
    invalid = [r for r in reports if not r.valid]
    objects = [r for r in reports if r.kind is not None]
    if args.output == "json":
        payload = {
            "valid": not invalid,
            "objects": len(objects),
            "invalid": len(invalid),
            "results": [r.to_dict() for r in reports],
        }
        print(json.dumps(payload, indent=2))
    else:
        for report in invalid:
            for line in report.lines():
                print(line)
        verdict = "all valid" if not invalid else f"{len(invalid)} invalid"
        print(
            f"{len(objects)} fedcompute object(s) in {len(files)} file(s): {verdict}",
            file=sys.stderr,
        )
    return 1 if invalid else 0
