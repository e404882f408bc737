"""The SQL of list endpoints: time windows and the keyset side of pagination (the cursor side
is `app.kit.pagination`).

Lists page newest first on a (time, id) pair served by an index; the next page starts strictly
after the previous page's last row, so rows sharing a timestamp are neither skipped nor
repeated."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVarTuple

from sqlalchemy import BindParameter, ColumnElement, Select, bindparam, literal, tuple_
from sqlalchemy.orm import QueryableAttribute

from app.domain.result_status import WITHDRAWN

Ts = TypeVarTuple("Ts")
# Inclusive (from, to) instants; None leaves that side open.
Bounds = tuple[datetime | None, datetime | None]


def constants(name: str, values: Sequence[str]) -> BindParameter[list[str]]:
    """Values the code fixes (statuses, codes) for ``IN`` / ``NOT IN``, written into the SQL
    (literal_execute) instead of bound. A prepared statement's generic plan knows no parameter
    value: with one status stored, ``status NOT IN ($1, $2)`` is estimated to match no row at
    all, and the plan read the whole results table for a page of the flagged list (measured:
    a parallel sequential scan of 265,000 results). Written in, the planner weighs them against
    the column's statistics, and an index predicate can be proven from them. They are written
    in the order given: sort a set first, so that the SQL is the same every time."""
    return bindparam(name, list(values), expanding=True, literal_execute=True)


def constant(value: str) -> BindParameter[str]:
    """One such value, for ``=`` / ``!=`` (see `constants`)."""
    return literal(value, literal_execute=True)


def not_withdrawn(status: QueryableAttribute[str]) -> ColumnElement[bool]:
    """A result's `status` that still counts: not cancelled or entered in error (written in)."""
    return status.not_in(constants("withdrawn", sorted(WITHDRAWN)))


def not_cancelled(status: QueryableAttribute[str]) -> ColumnElement[bool]:
    """A panel's `status` other than cancelled (written in)."""
    return status != constant("cancelled")


def within(query: Select[*Ts], moment: Any, bounds: Bounds) -> Select[*Ts]:
    """`query` limited to rows whose `moment` lies in `bounds` (both ends included)."""
    start, end = bounds
    if start is not None:
        query = query.where(moment >= start)
    if end is not None:
        query = query.where(moment <= end)
    return query


def after_keyset(
    moment: Any, row_id: Any, after: tuple[datetime, uuid.UUID]
) -> ColumnElement[bool]:
    """Rows that sort after `after` in (moment, row_id) descending order.

    One row comparison, `(moment, row_id) < (at, last_id)`, not the equivalent `moment < at OR
    (moment = at AND row_id < last_id)`: PostgreSQL takes a row comparison as a bound of an
    index on (..., moment, row_id) and starts the scan at the cursor, where it applied the OR
    as a filter to every row from the newest on, so each page cost more the deeper it was.
    SQLite compares row values the same way."""
    at, last_id = after
    return tuple_(moment, row_id) < tuple_(literal(at, moment.type), literal(last_id, row_id.type))


def newest_first(
    query: Select[*Ts],
    moment: Any,
    row_id: Any,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Select[*Ts]:
    """`query` ordered by (moment, row_id) descending, continuing after `after`, `limit` rows."""
    if after is not None:
        query = query.where(after_keyset(moment, row_id, after))
    return query.order_by(moment.desc(), row_id.desc()).limit(limit)
