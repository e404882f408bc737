"""``python -m app``: the command line lives in :mod:`app.cli`."""

from __future__ import annotations

import sys

from app.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
