"""All SQL for HL7 code-map entries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.list_sql import newest_first
from app.models.code_map import ANY_FACILITY, CodeMapEntry


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, sending_facility: str, local_code: str
) -> CodeMapEntry | None:
    return await session.scalar(
        select(CodeMapEntry).filter_by(
            organization_id=organization_id,
            sending_facility=sending_facility,
            local_code=local_code,
        )
    )


async def list_entries(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    sending_facility: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[CodeMapEntry]:
    query = select(CodeMapEntry).where(CodeMapEntry.organization_id == organization_id)
    if sending_facility is not None:
        query = query.where(CodeMapEntry.sending_facility == sending_facility)
    query = newest_first(query, CodeMapEntry.created_at, CodeMapEntry.id, after=after, limit=limit)
    return (await session.scalars(query)).all()


async def for_facility(
    session: AsyncSession, *, organization_id: uuid.UUID, sending_facility: str
) -> Sequence[CodeMapEntry]:
    """The entries that apply to a message from this facility: its own and the `*` ones."""
    return (
        await session.scalars(
            select(CodeMapEntry).where(
                CodeMapEntry.organization_id == organization_id,
                CodeMapEntry.sending_facility.in_({sending_facility, ANY_FACILITY}),
            )
        )
    ).all()


async def add(session: AsyncSession, entry: CodeMapEntry) -> None:
    session.add(entry)
    await session.flush()


async def remove(
    session: AsyncSession, *, organization_id: uuid.UUID, sending_facility: str, local_code: str
) -> bool:
    result = await session.execute(
        delete(CodeMapEntry)
        .where(
            CodeMapEntry.organization_id == organization_id,
            CodeMapEntry.sending_facility == sending_facility,
            CodeMapEntry.local_code == local_code,
        )
        .returning(CodeMapEntry.id)
    )
    return result.first() is not None
