"""POST /api/v1/panels on SQLite in one short write transaction (issue 15, ADR 0007).

The PostgreSQL one-statement POST (``app.panels.fast_post``) computes the whole panel (its
interpretation, document, stored response and audit entry) against a patient this process
remembered, then lets ``ingest_panel_once()`` check and write it. SQLite has no server-side
functions, but it needs none: its one writer holds the database's write lock from BEGIN
IMMEDIATE to the commit, and statements run in-process. So the same prepared panel is written
here with Core statements on one connection:

1. one SELECT re-reads the remembered patient (by id or identifier, with the active range set,
   exactly as the plain path reads it), whether the Idempotency-Key or the accession is
   already stored, and the audit chain's tail;
2. unless anything differs (the patient, its identifier or the range set changed; the key or
   the accession exists: replays, corrections and conflicts are the plain path's), the
   completed idempotency record, the panel, its results and the audit row are inserted, the
   audit row linked to the tail read under the same lock; then COMMIT.

Refused, the transaction rolls back having written nothing and the request takes the plain
path, which answers exactly as if this had never been tried. Versus the plain path this skips
the ORM session, the in-flight claim and its completing UPDATE (pointless under SQLite's single
writer: no other transaction can see a claim before it commits), and the separate tail read.

The statements go straight to the pooled sqlite3 connection (``write_transaction``,
app.core.sqlite_raw: each compiled once by SQLAlchemy, its values bound by SQLAlchemy's own type
processors), not through SQLAlchemy's per-statement execution, which cost more CPU than SQLite's
work (issue 15). Engine listeners still see every statement.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit import service as audit_service
from app.core.sqlite_raw import write_transaction
from app.idempotency import repository as idempotency_repository
from app.panels import repository
from app.panels.repository import PatientForPanel


class Written(enum.Enum):
    WRITTEN = "written"
    STALE = "stale"  # the remembered patient or range set is no longer right: forget it
    PLAIN = "plain"  # the key or the accession is stored: the plain path answers


async def write(
    engine: AsyncEngine,
    *,
    organization_id: uuid.UUID,
    patient: PatientForPanel,
    identifier: tuple[str, str] | None,
    principal_id: str,
    record: dict[str, Any] | None,
    panel: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    entries: Sequence[audit_service.AuditEntry],
) -> Written:
    """Write a prepared new panel in one BEGIN IMMEDIATE transaction, or nothing."""
    async with engine.connect() as connection:
        try:
            async with write_transaction(connection):
                check = await repository.new_panel_check(
                    connection,
                    organization_id=organization_id,
                    patient_id=None if identifier is not None else patient.id,
                    identifier=identifier,
                    principal_id=principal_id,
                    key=None if record is None else record["key"],
                    source=panel["source"],
                    accession=panel["accession"],
                )
                if check.patient != patient:
                    raise _Refused(Written.STALE)
                if check.key_exists or check.accession_exists:
                    raise _Refused(Written.PLAIN)
                if record is not None:
                    await idempotency_repository.insert_record_on(connection, record)
                await repository.insert_new_panel_on(connection, panel, rows)
                await audit_service.append_sqlite_on(connection, entries, tail=check.audit_tail)
        except _Refused as refused:  # rolled back: nothing was written
            return refused.written
    return Written.WRITTEN


class _Refused(Exception):
    def __init__(self, written: Written) -> None:
        super().__init__(written.value)
        self.written = written
