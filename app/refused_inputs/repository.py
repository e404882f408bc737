"""Queries on refused inputs; every one is scoped by organization."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.list_sql import newest_first
from app.models.refused_input import RefusedInput


async def find_open(
    session: AsyncSession, *, organization_id: uuid.UUID, channel: str, payload_hash: str
) -> RefusedInput | None:
    """The still-refused row for this exact payload on this channel, if any."""
    found = await session.scalars(
        select(RefusedInput)
        .where(
            RefusedInput.organization_id == organization_id,
            RefusedInput.channel == channel,
            RefusedInput.payload_hash == payload_hash,
            RefusedInput.status == "refused",
        )
        .limit(1)
    )
    return found.first()


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, refused_id: uuid.UUID, lock: bool = False
) -> RefusedInput | None:
    query = select(RefusedInput).where(
        RefusedInput.organization_id == organization_id, RefusedInput.id == refused_id
    )
    if lock:
        query = query.with_for_update()
    found = await session.scalars(query)
    return found.first()


async def page(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    channel: str | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[RefusedInput]:
    """Newest first, keyset on (received_at, id)."""
    query = select(RefusedInput).where(RefusedInput.organization_id == organization_id)
    if channel is not None:
        query = query.where(RefusedInput.channel == channel)
    if status is not None:
        query = query.where(RefusedInput.status == status)
    query = newest_first(query, RefusedInput.received_at, RefusedInput.id, after=after, limit=limit)
    return list((await session.scalars(query)).all())


async def purge(
    session: AsyncSession, *, before: datetime, organization_id: uuid.UUID | None = None
) -> int:
    """Delete refused inputs received before ``before``; how many were deleted."""
    statement = delete(RefusedInput).where(RefusedInput.received_at < before)
    if organization_id is not None:
        statement = statement.where(RefusedInput.organization_id == organization_id)
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)
