"""Readable pydantic validation errors for the documents users upload (range sets, rule sets).

Both documents report each error with its location as a path (`rows[3].low`) and sum them up in one
message, so an upload is fixed from the message alone; they share the wording here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_SHOWN = 5  # a message names the first few errors; the full list travels in `errors`


def error_path(loc: Sequence[Any]) -> str:
    """A pydantic location as a path: `rows[3].low` (list indexes in brackets)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def errors_message(what: str, errors: Sequence[dict[str, Any]]) -> str:
    """`the <what> has 2 errors: line 4: rows[0].low: ...; ...` for error entries with a path."""
    shown = "; ".join(
        (f"line {e['line']}: " if "line" in e else "") + f"{e['path'] or 'document'}: {e['msg']}"
        for e in errors[:_SHOWN]
    )
    more = f" (and {len(errors) - _SHOWN} more)" if len(errors) > _SHOWN else ""
    count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
    return f"the {what} has {count}: {shown}{more}"
