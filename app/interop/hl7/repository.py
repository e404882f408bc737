"""The SQL the HL7 v2 receiver needs beyond the panels and patients repositories."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.panel import Panel


async def lock_panel(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> None:
    """Hold the panel row until the transaction ends, so two corrections of one panel apply
    one after the other instead of one silently overwriting the other (PostgreSQL; SQLite
    has a single writer anyway)."""
    await session.execute(
        select(Panel.id)
        .where(Panel.organization_id == organization_id, Panel.id == panel_id)
        .with_for_update()
    )
