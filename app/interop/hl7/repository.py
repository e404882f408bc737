"""The SQL the HL7 v2 receiver needs beyond the panels and patients repositories."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
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


def _message_key(organization_id: uuid.UUID, header: MessageHeader) -> dict[str, Any]:
    """What names an accepted message: its sender and MSH-10 control id, per organization
    (the table's unique key)."""
    return {
        "organization_id": organization_id,
        "sending_application": header.sending_application,
        "sending_facility": header.sending_facility,
        "control_id": header.control_id,
    }


async def get_message(
    session: AsyncSession, *, organization_id: uuid.UUID, header: MessageHeader
) -> Hl7Message | None:
    """The accepted message with this sender and control id, if any."""
    return await session.scalar(
        select(Hl7Message).filter_by(**_message_key(organization_id, header))
    )


async def add_message(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    header: MessageHeader,
    payload_hash: str,
    panels: Sequence[tuple[uuid.UUID, uuid.UUID]],
) -> None:
    """Record an accepted message and the (panel, patient) pairs it stored, so that the same
    message sent again is answered as before without being processed again."""
    session.add(
        Hl7Message(
            **_message_key(organization_id, header),
            payload_hash=payload_hash,
            panel_ids=[
                {"panel_id": str(panel_id), "patient_id": str(patient_id)}
                for panel_id, patient_id in panels
            ],
            received_at=utcnow(),
        )
    )
    await session.flush()
