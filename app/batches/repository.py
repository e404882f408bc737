from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.batches.models import PanelBatch
from app.core.db import utcnow


async def create(
    session: AsyncSession, *, organization_id: uuid.UUID, principal_id: str | None
) -> PanelBatch:
    batch = PanelBatch(organization_id=organization_id, principal_id=principal_id)
    session.add(batch)
    await session.flush()
    return batch


async def add_counts(
    session: AsyncSession, batch_id: uuid.UUID, counts: dict[str, int], *, status: str | None
) -> None:
    """Add a chunk's counts in the chunk's own transaction (progress is what committed)."""
    table = PanelBatch.__table__.c
    values: dict[str, object] = {name: table[name] + count for name, count in counts.items()}
    values["updated_at"] = utcnow()
    if status is not None:
        values["status"] = status
        values["finished_at"] = utcnow()
    await session.execute(update(PanelBatch).where(PanelBatch.id == batch_id).values(**values))


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, batch_id: uuid.UUID
) -> PanelBatch | None:
    result = await session.execute(
        select(PanelBatch).where(
            PanelBatch.id == batch_id, PanelBatch.organization_id == organization_id
        )
    )
    return result.scalar_one_or_none()
