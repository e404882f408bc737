"""The panel routes' hot paths (issue 15): GET /api/v1/panels/{id} in one round trip.

A GET answers the stored document, and its audit row must commit with the read. On PostgreSQL
both are one autocommit statement (``app.audit.service.append_along``), sent straight through
asyncpg (``app.core.driver``): the SELECT of the document also calls ``audit_append_rows``, so
there is no BEGIN, no COMMIT and no second statement. The audit row's hash must be computed
here before the statement (the HMAC key never reaches the database) and names the panel's
patient, so the patient is known beforehand from a per-process map of panel -> patient. A
panel's patient never changes (no route updates it, panels are never deleted), and the
statement still checks it: the row is read, and the audit row appended, only where the panel
has that id, that organization AND that patient; otherwise nothing is appended and the request
takes the plain path (one transaction, as before). So a stale or wrong entry can cost a round
trip, never a wrong audit row or another organization's panel. The map is filled by the plain
path and by POST, and bounded.

SQLite has no such statement, but its one writer holds the write lock from BEGIN IMMEDIATE to
COMMIT: the same remembered patient makes the GET one short transaction on a bare connection
(the document and the audit tail in one SELECT, then the audit row), with the same checks and
the same fallback.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit import repository as audit_repository
from app.audit import service as audit_service
from app.audit.context import append_success, audit_target, draft_of
from app.audit.entries import build_entry
from app.auth.principal import Principal
from app.core.db import transaction
from app.panels import repository, service

_PANEL_PATIENT_MAX = 100_000
# (database, organization, panel) -> patient, the ids as their 128-bit integers. The database is
# part of the key: tests (and the CLI) run several apps on several databases in one process.
# Integers, not uuid.UUID objects: a tuple of a str and ints is not tracked by the garbage
# collector, and a full map of UUIDs (4 tracked objects per entry) made every full collection
# walk 400,000 objects, a pause of ~50 ms of the event loop (every request in flight waits).
_panel_patient: dict[tuple[str, int, int], int] = {}

# $1-$3: the audit rows (repository.PG_APPEND_CALL); sent through the driver (app.core.driver).
_DOCUMENT_AND_AUDIT = (
    "SELECT panel.document, "
    + audit_repository.PG_APPEND_CALL
    + " FROM panel WHERE panel.organization_id = $4 AND panel.id = $5"
    " AND panel.patient_id = $6 AND panel.document IS NOT NULL"
)


def remember_patient(
    engine: AsyncEngine, organization_id: uuid.UUID, panel_id: uuid.UUID, patient_id: uuid.UUID
) -> None:
    """Note a panel's patient (immutable) for the one-statement GET."""
    if len(_panel_patient) >= _PANEL_PATIENT_MAX:
        _panel_patient.clear()
    key = (audit_service.database_name(engine), organization_id.int, panel_id.int)
    _panel_patient[key] = patient_id.int


def remembered_patient(
    engine: AsyncEngine, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> uuid.UUID | None:
    """The patient `remember_patient` noted for the panel, or None."""
    patient = _panel_patient.get(
        (audit_service.database_name(engine), organization_id.int, panel_id.int)
    )
    return None if patient is None else uuid.UUID(int=patient)


async def read_document(request: Request, principal: Principal, panel_id: uuid.UUID) -> bytes:
    """The panel's JSON document; its audit row (the route's `audited` draft) committed with
    the read. 404 (NotFoundError) for a panel this organization does not have."""
    engine: AsyncEngine = request.app.state.engine
    organization_id = principal.organization_id
    patient_id = remembered_patient(engine, organization_id, panel_id)
    if patient_id is not None:
        document = await read_remembered(request, principal, panel_id, patient_id)
        if document is not None:
            return document
    audit_target(request, resource_id=panel_id)
    # The plain path: one transaction, the audit row its last statement.
    async with transaction(request.app.state.sessionmaker) as session:
        document_text = await service.get_document(
            session, organization_id=organization_id, panel_id=panel_id
        )
        patient_id = service.patient_of(document_text)
        audit_target(request, patient_id=patient_id)
        await append_success(session, request, 200)
    remember_patient(engine, organization_id, panel_id, patient_id)
    return document_text.encode()


async def read_remembered(
    request: Request, principal: Principal, panel_id: uuid.UUID, patient_id: uuid.UUID
) -> bytes | None:
    """The panel's document read with its audit row appended by one statement, where the
    panel is this organization's and `patient_id`'s (the patient `remembered_patient` gave);
    None, nothing appended, otherwise (or when the draft names further patients): the plain
    path then answers. Also the direct GET's read (app.panels.direct_get)."""
    audit_target(request, resource_id=panel_id)
    draft = draft_of(request.state)
    if draft is None or draft.more:
        return None
    audit_target(request, patient_id=patient_id)
    entry = build_entry(
        principal,
        action=draft.action,
        resource_type=draft.resource_type,
        resource_id=draft.resource_id,
        patient_id=patient_id,
        outcome="success",
        status_code=200,
        scope=request.scope,
    )
    engine: AsyncEngine = request.app.state.engine
    read = read_along if engine.dialect.name == "postgresql" else read_along_sqlite
    document = await read(engine, entry, principal.organization_id, panel_id, patient_id)
    if document is None:
        draft.patient_id = None  # not confirmed: the plain path names the panel's own
        return None
    draft.written = True
    return document.encode()


async def read_along(
    engine: AsyncEngine,
    entry: audit_service.AuditEntry,
    organization_id: uuid.UUID,
    panel_id: uuid.UUID,
    patient_id: uuid.UUID,
) -> str | None:
    """The panel's document, its audit row appended by the same statement; None (nothing
    appended) when the panel is not that organization's and that patient's."""
    row = await audit_service.append_along(
        engine, [entry], _DOCUMENT_AND_AUDIT, organization_id, panel_id, patient_id
    )
    return None if row is None else str(row[0])


async def read_along_sqlite(
    engine: AsyncEngine,
    entry: audit_service.AuditEntry,
    organization_id: uuid.UUID,
    panel_id: uuid.UUID,
    patient_id: uuid.UUID,
) -> str | None:
    """``read_along`` on SQLite: one short write transaction (BEGIN IMMEDIATE) on a bare
    connection, no ORM session: the document and the audit tail in one SELECT, then the
    audit row. None (rolled back, nothing appended) as ``read_along``."""
    async with engine.connect() as connection, connection.begin() as transaction:
        found = await repository.document_and_audit_tail(
            connection, organization_id=organization_id, panel_id=panel_id, patient_id=patient_id
        )
        if found is None:
            await transaction.rollback()
            return None
        document, tail = found
        await audit_service.append_sqlite_on(connection, [entry], tail=tail)
    return document
