"""Command line: ``python -m app serve | migrate | load-ranges FILE | import FILE | ...``.

One module per command group; each registers its sub-commands with a handler
(``set_defaults(handler=...)``) that takes the parsed arguments and the settings and returns the
exit code, so ``main`` is a dispatch, not a chain of branches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.cli import admin, database, demo, ingest, serve
from app.core.config import get_settings

GROUPS = (serve, database, demo, ingest, admin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    from app.core.errors import AppError
    from app.domain.errors import DomainError
    from app.domain.plans.rules import RuleSetFormatError
    from app.domain.range_errors import RangeSetFormatError

    try:
        code: int = args.handler(args, settings)
    except (AppError, DomainError, RangeSetFormatError, RuleSetFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        errors = getattr(exc, "extensions", {}).get("errors") or getattr(exc, "errors", None)
        for item in errors or []:
            print(f"  {item}", file=sys.stderr)
        return 1
    return code
