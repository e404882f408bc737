"""What a handler passes on from the parsed command line to the function that does the work."""

from __future__ import annotations

import argparse
from typing import Any


def options(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The parsed options `names`, as keyword arguments of the same names."""
    return {name: getattr(args, name) for name in names}
