"""All SQL for the organization's list of flagged (abnormal, critical) results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.result_status import WITHDRAWN
from app.kit.list_sql import newest_first
from app.models.panel import Result

ABNORMAL_CODES = ("L", "H", "LL", "HH")


def flag_condition(flag: str) -> ColumnElement[bool]:
    """`critical`: critical or possibly critical (a possibly critical value counts wherever
    criticals count); `possibly-critical`: only those; `abnormal`: outside the reference
    interval (L, H, LL, HH) or critical in any way."""
    critical = or_(Result.critical.is_(True), Result.possibly_critical.is_(True))
    if flag == "critical":
        return critical
    if flag == "possibly-critical":
        return Result.possibly_critical.is_(True)
    return or_(Result.interpretation.in_(ABNORMAL_CODES), critical)


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
    """Newest collection first (ties by id, descending). Served by the (organization_id,
    critical, collected_at) and (organization_id, interpretation, collected_at) indexes."""
    query = select(Result).where(
        Result.organization_id == organization_id,
        Result.status.not_in(sorted(WITHDRAWN)),
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
