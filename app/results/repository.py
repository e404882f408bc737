"""All SQL for the organization's list of flagged (abnormal, critical) results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BindParameter, ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.list_sql import constants, newest_first, not_withdrawn
from app.models.panel import Result

ABNORMAL_CODES = ("L", "H", "LL", "HH")

# Two partial indexes serve the flagged lists (migration a7c9e1b3d5f0): their predicates are
# the abnormal and the critical conditions of `flag_condition`, which must keep a form the
# planner can prove them from. The codes are written into the SQL (literal_execute), not
# bound: a prepared statement's generic plan cannot prove an index predicate from parameters.
_ABNORMAL_LITERALS: BindParameter[list[str]] = constants("abnormal_codes", ABNORMAL_CODES)


def flag_condition(flag: str) -> ColumnElement[bool]:
    """`critical`: critical or possibly critical (a possibly critical value counts wherever
    criticals count); `possibly-critical`: only those; `abnormal`: outside the reference
    interval (L, H, LL, HH) or critical in any way."""
    critical = or_(Result.critical.is_(True), Result.possibly_critical.is_(True))
    if flag == "critical":
        return critical
    if flag == "possibly-critical":
        return Result.possibly_critical.is_(True)
    return or_(Result.interpretation.in_(_ABNORMAL_LITERALS), critical)


@dataclass(frozen=True, slots=True)
class Flagged:
    """Which results a flagged list holds: those `flag` selects (see `flag_condition`), of one
    analyte code or all, collected in [collected_from, collected_to)."""

    flag: str
    analyte: str | None
    collected_from: datetime | None
    collected_to: datetime | None


async def flagged(
    session: AsyncSession,
    organization_id: uuid.UUID,
    which: Flagged,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[Result]:
    """Newest collection first (ties by id, descending). Served by the partial indexes on
    (organization_id, collected_at, id) of the flagged rows (see `flag_condition`)."""
    query = select(Result).where(
        Result.organization_id == organization_id,
        not_withdrawn(Result.status),
        flag_condition(which.flag),
    )
    if which.analyte is not None:
        query = query.where(Result.analyte == which.analyte)
    if which.collected_from is not None:
        query = query.where(Result.collected_at >= which.collected_from)
    if which.collected_to is not None:
        query = query.where(Result.collected_at < which.collected_to)
    query = newest_first(query, Result.collected_at, Result.id, after=after, limit=limit)
    return (await session.scalars(query)).all()
