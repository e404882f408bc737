"""All SQL for the organization's list of flagged (abnormal, critical) results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.result_status import WITHDRAWN
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


async def flagged(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    flag: str,
    analyte: str | None,
    collected_from: datetime | None,
    collected_to: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[Result]:
    """Newest collection first (ties by id, descending). Served by the (organization_id,
    critical, collected_at) and (organization_id, interpretation, collected_at) indexes."""
    query = select(Result).where(
        Result.organization_id == organization_id,
        Result.status.not_in(sorted(WITHDRAWN)),
        flag_condition(flag),
    )
    if analyte is not None:
        query = query.where(Result.analyte == analyte)
    if collected_from is not None:
        query = query.where(Result.collected_at >= collected_from)
    if collected_to is not None:
        query = query.where(Result.collected_at < collected_to)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (Result.collected_at < moment)
            | ((Result.collected_at == moment) & (Result.id < row_id))
        )
    query = query.order_by(Result.collected_at.desc(), Result.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
