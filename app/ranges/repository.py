"""All SQL for reference-range sets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models.range_set import RangeSet, RatioRange, ReferenceRange


async def get_active_id(session: AsyncSession, *, organization_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(
        select(RangeSet.id).where(
            RangeSet.organization_id == organization_id, RangeSet.status == "active"
        )
    )


async def get_with_rows(
    session: AsyncSession, *, organization_id: uuid.UUID, range_set_id: uuid.UUID
) -> RangeSet | None:
    return await session.scalar(
        select(RangeSet)
        .options(selectinload(RangeSet.rows), selectinload(RangeSet.ratios))
        .where(RangeSet.organization_id == organization_id, RangeSet.id == range_set_id)
    )


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, range_set_id: uuid.UUID
) -> RangeSet | None:
    return await session.scalar(
        select(RangeSet).where(
            RangeSet.organization_id == organization_id, RangeSet.id == range_set_id
        )
    )


async def list_sets(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[RangeSet]:
    query = select(RangeSet).where(RangeSet.organization_id == organization_id)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (RangeSet.created_at < moment)
            | ((RangeSet.created_at == moment) & (RangeSet.id < row_id))
        )
    query = query.order_by(RangeSet.created_at.desc(), RangeSet.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def next_version(session: AsyncSession, *, organization_id: uuid.UUID, name: str) -> int:
    current = await session.scalar(
        select(func.max(RangeSet.version)).where(
            RangeSet.organization_id == organization_id, RangeSet.name == name
        )
    )
    return (current or 0) + 1


async def count_sets(session: AsyncSession, *, organization_id: uuid.UUID) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(RangeSet)
            .where(RangeSet.organization_id == organization_id)
        )
    ) or 0


async def add_set(
    session: AsyncSession,
    range_set: RangeSet,
    rows: Sequence[dict[str, Any]],
    ratios: Sequence[dict[str, Any]],
) -> None:
    session.add(range_set)
    await session.flush()
    session.add_all(ReferenceRange(range_set_id=range_set.id, **row) for row in rows)
    session.add_all(RatioRange(range_set_id=range_set.id, **ratio) for ratio in ratios)
    await session.flush()


async def activate(
    session: AsyncSession, *, organization_id: uuid.UUID, range_set_id: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        update(RangeSet)
        .where(
            RangeSet.organization_id == organization_id,
            RangeSet.status == "active",
            RangeSet.id != range_set_id,
        )
        .values(status="retired")
    )
    await session.execute(
        update(RangeSet)
        .where(RangeSet.id == range_set_id)
        .values(status="active", activated_at=now)
    )
