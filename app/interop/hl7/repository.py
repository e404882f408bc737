"""The SQL the HL7 v2 receiver needs beyond the panels and patients repositories."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.interop.hl7.parser import MessageHeader
from app.models.hl7_message import Hl7Message
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


async def get_message(
    session: AsyncSession, *, organization_id: uuid.UUID, header: MessageHeader
) -> Hl7Message | None:
    """The accepted message with this sender and control id, if any."""
    return await session.scalar(
        select(Hl7Message).where(
            Hl7Message.organization_id == organization_id,
            Hl7Message.sending_application == header.sending_application,
            Hl7Message.sending_facility == header.sending_facility,
            Hl7Message.control_id == header.control_id,
        )
    )


async def add_message(session: AsyncSession, message: Hl7Message) -> None:
    session.add(message)
    await session.flush()
