"""EXPLAIN of a statement as a prepared statement runs it (PostgreSQL), for the query-plan tests.

EXPLAIN with bound parameters always plans with their values; a prepared statement may keep a
GENERIC plan, planned without them (asyncpg's statement cache prepares every statement, and
plpgsql keeps its statements' plans). So the statement is PREPAREd as the driver sent it and
EXPLAINed as an EXECUTE, its parameters written in as literals (EXECUTE's arguments take no
parameters); the caller's plan_cache_mode decides which plan that is.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def literal(value: Any) -> str:
    """`value` as an SQL literal of unknown type: the prepared statement's parameter types give
    it its type."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        items = ",".join(
            "NULL" if item is None else '"' + str(item).replace('"', '\\"') + '"' for item in value
        )
        return "'{" + items.replace("'", "''") + "}'"
    if isinstance(value, datetime):
        value = value.isoformat()
    return "'" + str(value).replace("'", "''") + "'"


def explain_prepared(
    cursor: Any, statement: str, parameters: Any, *, options: str = "FORMAT JSON"
) -> list[dict[str, Any]]:
    """``EXPLAIN (options) EXECUTE`` of `statement` prepared, with `parameters`: the JSON plan."""
    cursor.execute(f"PREPARE plan_check AS {statement}")
    try:
        values = list(parameters or ())
        arguments = f"({', '.join(map(literal, values))})" if values else ""
        cursor.execute(f"EXPLAIN ({options}) EXECUTE plan_check{arguments}")
        row = cursor.fetchone()[0]
    finally:
        cursor.execute("DEALLOCATE plan_check")
    plan: list[dict[str, Any]] = json.loads(row) if isinstance(row, str) else row
    return plan


def buffers(node: dict[str, Any]) -> int:
    """Shared buffers a plan node touched (hits and reads, its children's included), from
    EXPLAIN (ANALYZE, BUFFERS)."""
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))
