"""The ``riskrl`` command line.

Subcommands are registered in :func:`build_parser`; each is a small function taking the parsed
arguments. Bad arguments exit with status 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from riskrl._version import __version__


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A user mistake detected after parsing; reported as one line with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="riskrl",
        description="Risk-aware reinforcement learning: act on mean - risk_tolerance * std.",
    )
    parser.add_argument("--version", action="version", version=f"riskrl {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``riskrl`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"riskrl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
