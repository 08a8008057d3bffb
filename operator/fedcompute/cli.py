"""The ``fedcompute`` command line.

Each subcommand lives next to the code it drives and registers itself through a
``register(subparsers)`` function; this module only wires them together, so that
importing the CLI never builds an API client or touches the network.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fedcompute import __version__

# Modules that provide ``register(subparsers) -> None``. Each adds one subcommand whose
# parser sets ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "fedcompute.local.commands",
    "fedcompute.api.commands",
    "fedcompute.report.commands",
    "fedcompute.deploy",
    "fedcompute.handlers.commands",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (used by ``main`` and by tests)."""
    parser = argparse.ArgumentParser(
        prog="fedcompute",
        description="Federated compute pools for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"fedcompute {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
