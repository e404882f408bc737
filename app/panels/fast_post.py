"""POST /api/v1/panels in ONE statement on PostgreSQL (issue 15, ADR 0007).

A new panel's POST needs the patient (sex, birth date) and the organization's active range set
before anything can be interpreted; the plain path reads them, then claims the
Idempotency-Key, inserts the panel, its results, completes the key and appends the audit row:
several round trips in one transaction. Here the patient comes from the per-process map the
plain path fills (``app.panels.known_patients``), everything is computed exactly as the plain
path computes it (``service.new_panel``, the same stored response, the same audit entry,
hashed here: the HMAC key never reaches the database), and ONE autocommit statement,
``ingest_panel_once()`` (migration e3a9c5f7b1d2), re-checks the patient, its identifier and
the active range set, then writes the completed idempotency record, the panel, its results and
the audit rows. Anything unusual (a stale entry, a key or accession already stored, a lock it
would wait for) makes it RAISE, so nothing is written, and the request takes the plain path in
a fresh transaction (replays, 409s, unchanged re-sends, corrections and conflicts all live
there only). A stale entry costs a round trip, never a wrong write.

SQLite (one writer, in-process) writes the same prepared panel in one short BEGIN IMMEDIATE
transaction instead (``app.panels.sqlite_once``), with the same checks and the same fallback.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import orjson
from fastapi import Request, Response
from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.audit import service as audit_service
from app.audit.context import AuditDraft, audit_target, draft_of
from app.audit.entries import build_entry
from app.auth.principal import Principal
from app.core.config import Settings
from app.core.db import utcnow
from app.core.driver import Driver
from app.core.errors import AppError
from app.domain.catalog import default_catalog
from app.domain.errors import DomainError
from app.idempotency.deps import request_target, stored_response
from app.idempotency.http import json_response
from app.idempotency.service import (
    LOCK_NOT_AVAILABLE,
    StoredResponse,
    claim_values,
    completed_values,
    fingerprint,
    validate_key,
)
from app.models.panel import Result
from app.ops import metrics
from app.panels import hot, known_patients, service, sqlite_once
from app.panels.interpretation import normalize
from app.panels.repository import PatientForPanel, json_default
from app.panels.schemas import PanelCreate
from app.patients import matching as patient_matching
from app.ranges import service as ranges

# Sent through the driver (app.core.driver): $1 the payload, $2 the panel's document, $3 the
# stored response's body, $4-$6 the audit rows' parameters (migration f1b3d5e7a9c2).
_INGEST_ONCE = (
    "SELECT ingest_panel_once(CAST($1 AS jsonb), $2, $3,"
    " CAST($4 AS jsonb), $5, CAST($6 AS smallint))"
)
# The function's refusals (see the migration): the plain path answers those requests.
_STALE_PATIENT = "MP001"
_STALE_RANGE_SET = "MP002"
_KEY_EXISTS = "MP003"
_ACCESSION_EXISTS = "MP004"
_TAIL_MOVED = "MP005"
_PLAIN_PATH = frozenset(
    {_STALE_PATIENT, _STALE_RANGE_SET, _KEY_EXISTS, _ACCESSION_EXISTS, LOCK_NOT_AVAILABLE}
)
# How long the statement may wait for another sender's uncommitted key or accession before it
# leaves the request to the plain path (which waits the full idempotency wait, then answers).
_LOCK_WAIT = "50ms"
# The function inserts whole rows: a result row must name every column (else a default would
# be lost), and new_panel's rows do.
_RESULT_COLUMNS = frozenset(column.key for column in cast(Table, Result.__table__).columns)


class _PlainPath(Exception):
    """The statement refused (and wrote nothing): the request takes the plain path."""

    def __init__(self, *, stale: bool) -> None:
        super().__init__()
        self.stale = stale  # the remembered patient or its range set is no longer right


@dataclass(frozen=True, slots=True)
class _Prepared:
    payload: str  # PostgreSQL: ingest_panel_once's first argument ("" on SQLite)
    record: dict[str, Any] | None
    panel: dict[str, Any]
    rows: list[dict[str, object]]
    response: StoredResponse
    entry: audit_service.AuditEntry
    panel_id: uuid.UUID
    patient_id: uuid.UUID
    results: int


async def try_post(
    request: Request,
    principal: Principal,
    data: PanelCreate,
    *,
    key: str | None,
    settings: Settings,
) -> Response | None:
    """The 201 of a new panel posted in one statement, or None: the caller takes the plain
    path, which answers exactly as if this had never been tried (nothing was written)."""
    engine: AsyncEngine = request.app.state.engine
    draft = draft_of(request.state)
    dialect = engine.dialect.name
    if dialect not in ("postgresql", "sqlite") or draft is None or draft.more or draft.written:
        return None
    ref = data.patient
    identifier = (ref.identifier.system, ref.identifier.value) if ref.identifier else None
    patient_key = known_patients.key_of(engine, principal.organization_id, ref.id, identifier)
    patient = known_patients.get(patient_key)
    if patient is None:
        return None
    prepared = await _prepare(
        request, principal, data, draft, patient, identifier, key, settings, dialect=dialect
    )
    if prepared is None:
        return None
    if dialect == "sqlite":
        written = await sqlite_once.write(
            engine,
            organization_id=principal.organization_id,
            patient=patient,
            identifier=identifier,
            principal_id=principal.id,
            record=prepared.record,
            panel=prepared.panel,
            rows=prepared.rows,
            entries=[prepared.entry],
        )
        if written is not sqlite_once.Written.WRITTEN:
            if written is sqlite_once.Written.STALE:
                known_patients.forget(patient_key)
            return None
        return _written(request, principal, draft, prepared, engine)
    try:
        await audit_service.append_with(engine, [prepared.entry], _writer(prepared))
    except _PlainPath as refused:
        if refused.stale:  # the plain path reads the patient again and refills it
            known_patients.forget(patient_key)
        return None
    except audit_service.TailKeptMovingError:
        return None
    return _written(request, principal, draft, prepared, engine)


def _written(
    request: Request,
    principal: Principal,
    draft: AuditDraft,
    prepared: _Prepared,
    engine: AsyncEngine,
) -> Response:
    """The 201, and exactly what the plain path leaves behind once its transaction committed."""
    draft.written = True
    audit_target(
        request,
        resource_id=prepared.panel_id,
        patient_id=prepared.patient_id,
        action="create",
        status_code=201,
    )
    hot.remember_patient(engine, principal.organization_id, prepared.panel_id, prepared.patient_id)
    metrics.PANELS_INGESTED.labels("json").inc()
    metrics.RESULTS_INGESTED.labels("json").inc(prepared.results)
    return stored_response(prepared.response, replayed=False)


async def _prepare(
    request: Request,
    principal: Principal,
    data: PanelCreate,
    draft: AuditDraft,
    patient: PatientForPanel,
    identifier: tuple[str, str] | None,
    key: str | None,
    settings: Settings,
    *,
    dialect: str,
) -> _Prepared | None:
    """Everything the plain path would write for a new panel, or None when it would refuse
    (the plain path then refuses with its own words)."""
    organization_id = principal.organization_id
    range_set = None
    if patient.range_set_id is not None:
        range_set = ranges.COMPILED.get((organization_id, patient.range_set_id))
        if range_set is None:
            return None  # not compiled in this process yet: the plain path loads it
    try:
        if key is not None:
            validate_key(key)
        if identifier is not None:
            patient_matching.check_reference(*identifier)
        normalized = normalize(data, specimen=data.specimen.value, catalog=default_catalog())
        panel, rows, _view = service.new_panel_rows(
            data,
            normalized,
            organization_id=organization_id,
            patient=patient,
            range_set=range_set,
            source_format="json",
        )
    except (AppError, DomainError):
        return None
    if any(row.keys() != _RESULT_COLUMNS for row in rows):
        return None
    assert panel.document is not None
    response = json_response(panel.document.encode(), 201, location=f"/api/v1/panels/{panel.id}")
    record: dict[str, Any] | None = None
    if key is not None:
        path = request_target(request)
        record = completed_values(
            claim_values(
                key=key,
                principal_id=principal.id,
                organization_id=organization_id,
                method=request.method,
                path=path,
                fingerprint=fingerprint(request.method, path, await request.body()),
                now=utcnow(),
                retention=timedelta(hours=settings.idempotency_retention_hours),
            ),
            response,
        )
    panel_row = service.panel_values(panel)
    entry = build_entry(
        principal,
        action="create",
        resource_type=draft.resource_type,
        resource_id=str(panel.id),
        patient_id=patient.id,
        outcome=draft.outcome or "success",
        status_code=201,
        scope=request.scope,
    )
    payload = (
        ""
        if dialect != "postgresql"
        else _payload(organization_id, patient, identifier, record, panel_row, rows)
    )
    return _Prepared(
        payload=payload,
        record=record,
        panel=panel_row,
        rows=rows,
        response=response,
        entry=entry,
        panel_id=panel.id,
        patient_id=patient.id,
        results=len(rows),
    )


def _payload(
    organization_id: uuid.UUID,
    patient: PatientForPanel,
    identifier: tuple[str, str] | None,
    record: dict[str, Any] | None,
    panel: dict[str, Any],
    rows: list[dict[str, object]],
) -> str:
    """ingest_panel_once's JSON argument: everything but the document and the stored
    response's body, which are bound as text and bytea of their own (nothing to escape,
    unescape or hex-decode)."""
    if record is not None:
        record = {name: value for name, value in record.items() if name != "response_body"}
    panel = {name: value for name, value in panel.items() if name != "document"}
    payload = {
        "organization_id": organization_id,
        "patient": {
            "id": patient.id,
            "sex": patient.sex,
            "birth_date": patient.birth_date,
            **({"system": identifier[0], "value": identifier[1]} if identifier else {}),
        },
        "range_set_id": patient.range_set_id,
        "lock_timeout": _LOCK_WAIT,
        "idempotency": record,
        "panel": panel,
        "results": rows,
    }
    return orjson.dumps(payload, default=json_default).decode()


def _writer(prepared: _Prepared) -> audit_service.AppendingWrite:
    document = prepared.panel["document"]
    body = prepared.record["response_body"] if prepared.record is not None else None

    async def write(driver: Driver, audit: tuple[str, str, int]) -> str | None:
        try:
            await driver.fetchrow(_INGEST_ONCE, prepared.payload, document, body, *audit)
        except DBAPIError as exc:
            # Autocommit: the refused statement wrote nothing, and there is nothing to undo.
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate == _TAIL_MOVED:
                tail = getattr(exc.orig, "detail", None)
                if isinstance(tail, str):
                    return tail  # nothing written: hashed again against the real tail
            if sqlstate in _PLAIN_PATH:
                stale = sqlstate in (_STALE_PATIENT, _STALE_RANGE_SET)
                raise _PlainPath(stale=stale) from exc
            raise
        return None

    return write
