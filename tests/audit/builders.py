"""Keyword-only builders and helpers for audit trail tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import AuditEntry, AuditOutcome
from app.core.db import utcnow
from app.models.audit import AuditEvent


def audit_entry(
    *,
    organization_id: uuid.UUID,
    request_id: str,
    action: str = "read",
    outcome: AuditOutcome = "success",
    patient_id: uuid.UUID | None = None,
    principal_id: str = "key:test",
    occurred_at: datetime | None = None,
    path: str = "/api/v1/patients",
) -> AuditEntry:
    return AuditEntry(
        occurred_at=occurred_at or utcnow(),
        organization_id=organization_id,
        principal_id=principal_id,
        principal_kind="api_key",
        role="clinician",
        action=action,
        resource_type="patient",
        resource_id=str(patient_id) if patient_id else None,
        patient_id=patient_id,
        outcome=outcome,
        status_code=200 if outcome == "success" else 403,
        method="GET",
        path=path,
        request_id=request_id,
        client_address="192.0.2.10",
    )


async def rows_for(session: AsyncSession, *, request_id: str) -> list[dict[str, Any]]:
    """Stored audit rows of one request, in chain order, as column dictionaries."""
    result = await session.execute(
        select(*AuditEvent.__table__.c)
        .where(AuditEvent.request_id == request_id)
        .order_by(AuditEvent.seq)
    )
    return [row._asdict() for row in result]


# The append-only triggers of migration 7c4e1a2b9f30. Tests that tamper with the trail to
# prove it is detected must first get past them, exactly as an attacker with DDL rights would.
_SQLITE_TRIGGERS = {"UPDATE": "audit_event_no_update", "DELETE": "audit_event_no_delete"}


async def bypassing_append_only(
    session: AsyncSession, verb: str, statements: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Run UPDATE or DELETE statements on audit_event with its guard trigger suspended, then
    restore the trigger, all in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change"))
        for sql, params in statements:
            await session.execute(text(sql), params)
        await session.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_no_change"))
        return
    name = _SQLITE_TRIGGERS[verb]
    definition = await session.scalar(
        text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :name"),
        {"name": name},
    )
    assert definition, f"trigger {name} is missing"
    await session.execute(text(f"DROP TRIGGER {name}"))
    for sql, params in statements:
        await session.execute(text(sql), params)
    # Recreated from its own stored definition: byte for byte what the migration created.
    await session.execute(text(definition))


async def reinsert(session: AsyncSession, row: dict[str, Any]) -> None:
    """Put back a row deleted by a tampering test, under its original seq."""
    await session.execute(insert(AuditEvent).values(**row))
