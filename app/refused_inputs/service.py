"""Keeping refused inputs, and re-processing or discarding them.

A refusal is recorded where its answer is decided: HL7 messages in the request's (or MLLP
frame's) own transaction, which commits (a refused message only rolled back its savepoint);
FHIR Bundles and JSON panels by ``app.refused_inputs.capture`` in a short transaction of their
own, after the request's transaction rolled back. Recording never changes the answer: a failure
to store is logged.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import new_id, transaction, utcnow
from app.core.errors import (
    PROBLEM_BASE,
    PROBLEM_JSON,
    AppError,
    NotFoundError,
    is_database_unavailable,
    validation_errors,
)
from app.domain.catalog import default_catalog
from app.interop.fhir.inbound import parse_bundle
from app.interop.fhir.outcome import FHIR_JSON, FhirError, operation_outcome, outcome_of
from app.interop.fhir.transaction import process_bundle
from app.interop.hl7 import service as hl7_service
from app.kit.lookup import found
from app.models.refused_input import RefusedInput
from app.panels import corrections
from app.panels.schemas import PanelCreate
from app.refused_inputs import repository

log = logging.getLogger("app.refused_inputs")

DEFAULT_RETENTION_DAYS = 30
HL7_MEDIA_TYPE = "x-application/hl7-v2+er7"
_REASON_MAX = 4000


class RefusedInputNotFoundError(
    NotFoundError, slug="refused-input-not-found", title="Refused input not found"
): ...


class RefusedInputClosedError(
    AppError, status=409, slug="refused-input-closed", title="Refused input already resolved"
): ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused input, as it arrived and as it was answered."""

    organization_id: uuid.UUID
    channel: str
    content_type: str
    payload: bytes
    reason: str
    response_status: int
    principal_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    sending_application: str | None = None
    sending_facility: str | None = None
    control_id: str | None = None


def payload_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


async def record(
    session: AsyncSession, refusal: Refusal, *, retention_days: int | None = None
) -> RefusedInput:
    """Keep a refusal: the same payload still refused on the same channel is one row (its
    ``attempts`` counted, reason and time refreshed). Rows past retention are purged first."""
    now = utcnow()
    if retention_days is not None:
        await repository.purge(
            session,
            before=now - timedelta(days=retention_days),
            organization_id=refusal.organization_id,
        )
    digest = payload_hash(refusal.payload)
    reason = refusal.reason[:_REASON_MAX]
    row = await repository.find_open(
        session,
        organization_id=refusal.organization_id,
        channel=refusal.channel,
        payload_hash=digest,
    )
    if row is not None:
        row.attempts += 1
        row.reason = reason
        row.response_status = refusal.response_status
        row.details = refusal.details
        row.last_refused_at = now
        return row
    row = RefusedInput(
        id=new_id(),
        organization_id=refusal.organization_id,
        channel=refusal.channel,
        content_type=refusal.content_type[:200],
        payload=refusal.payload,
        payload_hash=digest,
        reason=reason,
        response_status=refusal.response_status,
        details=refusal.details,
        principal_id=refusal.principal_id,
        sending_application=_clip(refusal.sending_application),
        sending_facility=_clip(refusal.sending_facility),
        control_id=_clip(refusal.control_id),
        status="refused",
        attempts=1,
        received_at=now,
        last_refused_at=now,
        result={},
    )
    session.add(row)
    await session.flush()
    return row


async def record_separately(
    sessionmaker: async_sessionmaker[AsyncSession],
    refusal: Refusal,
    *,
    retention_days: int | None = None,
) -> None:
    """``record`` in a short transaction of its own; a failure is logged, never raised."""
    try:
        async with transaction(sessionmaker) as session:
            await record(session, refusal, retention_days=retention_days)
    except Exception:
        log.exception("a refused %s input could not be kept", refusal.channel)


def _clip(value: str | None) -> str | None:
    return value[:200] if value else None


# --- HL7 v2 -------------------------------------------------------------------------------


def hl7_reason(outcome: hl7_service.MessageOutcome) -> str:
    return "; ".join(str(issue) for issue in outcome.issues if issue.severity != "I") or (
        f"refused with {outcome.ack_code}"
    )


def hl7_refusals(
    outcomes: Sequence[hl7_service.MessageOutcome],
    *,
    organization_id: uuid.UUID,
    principal_id: str | None,
    channel: str,
    body: str,
) -> list[Refusal]:
    """One refusal per message answered AE / AR (its own text; the whole body when it could not
    be split into messages)."""
    refusals = []
    for outcome in outcomes:
        if outcome.ack_code == "AA":
            continue
        header = outcome.header
        text = outcome.text or body
        refusals.append(
            Refusal(
                organization_id=organization_id,
                channel=channel,
                content_type=HL7_MEDIA_TYPE,
                payload=text.encode("utf-8", "surrogateescape"),
                reason=hl7_reason(outcome),
                response_status=200,
                principal_id=principal_id,
                details={"ack_code": outcome.ack_code},
                sending_application=header.sending_application if header else None,
                sending_facility=header.sending_facility if header else None,
                control_id=header.control_id if header else None,
            )
        )
    return refusals


async def record_hl7(
    session: AsyncSession,
    outcomes: Sequence[hl7_service.MessageOutcome],
    *,
    organization_id: uuid.UUID,
    principal_id: str | None,
    channel: str,
    body: str,
    retention_days: int | None = None,
) -> None:
    """Keep every refused message of a body, in the caller's transaction (which commits: a
    refused message only rolled back its own savepoint). A failure is logged, never raised."""
    for refusal in hl7_refusals(
        outcomes,
        organization_id=organization_id,
        principal_id=principal_id,
        channel=channel,
        body=body,
    ):
        try:
            async with session.begin_nested():
                await record(session, refusal, retention_days=retention_days)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise
            log.exception("a refused HL7 message could not be kept")


# --- re-processing -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reprocessed:
    """The new answer, as the channel would give it to a fresh input."""

    status_code: int
    media_type: str
    body: bytes
    accepted: bool
    patient_ids: tuple[uuid.UUID, ...] = ()
    result: dict[str, Any] = field(default_factory=dict)


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, refused_id: uuid.UUID, lock: bool = False
) -> RefusedInput:
    return found(
        await repository.get(
            session, organization_id=organization_id, refused_id=refused_id, lock=lock
        ),
        RefusedInputNotFoundError(f"No refused input {refused_id}."),
    )


async def _open_row(
    session: AsyncSession,
    organization_id: uuid.UUID,
    refused_id: uuid.UUID,
    *,
    closed_note: str = "",
) -> RefusedInput:
    """The refusal, locked for the change, while it is still open (404 / 409 otherwise)."""
    row = await get(session, organization_id=organization_id, refused_id=refused_id, lock=True)
    if row.status != "refused":
        raise RefusedInputClosedError(
            f"Refused input {refused_id} is already {row.status}{closed_note}.",
            refused_status=row.status,
        )
    return row


async def reprocess(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    refused_id: uuid.UUID,
    principal_id: str,
) -> tuple[RefusedInput, Reprocessed]:
    """Run the input again through its channel's ingestion (same validation, dedupe and
    idempotency as a fresh input). Accepted: the row is marked ``reprocessed`` with what was
    stored; refused again: the row stays ``refused`` with the new reason (no second row)."""
    row = await _open_row(
        session, organization_id, refused_id, closed_note="; nothing was run again"
    )
    if row.channel in ("hl7-http", "hl7-mllp"):
        done = await _reprocess_hl7(session, row)
    elif row.channel == "fhir":
        done = await _reprocess_fhir(session, row)
    else:
        done = await _reprocess_json(session, row)
    now = utcnow()
    if done.accepted:
        row.status = "reprocessed"
        row.resolved_at = now
        row.resolved_by = principal_id
        row.result = {**done.result, "status_code": done.status_code}
    else:
        row.attempts += 1
        row.last_refused_at = now
        row.reason = _reason_of(done)[:_REASON_MAX]
        row.response_status = done.status_code
    await session.flush()
    return row, done


async def discard(
    session: AsyncSession, *, organization_id: uuid.UUID, refused_id: uuid.UUID, principal_id: str
) -> RefusedInput:
    """Close a refusal that cannot be fixed without changing the data: nothing is run."""
    row = await _open_row(session, organization_id, refused_id)
    row.status = "discarded"
    row.resolved_at = utcnow()
    row.resolved_by = principal_id
    await session.flush()
    return row


async def _reprocess_hl7(session: AsyncSession, row: RefusedInput) -> Reprocessed:
    text = row.payload.decode("utf-8", "surrogateescape")
    outcomes = await hl7_service.receive(session, organization_id=row.organization_id, text=text)
    accepted = all(outcome.ack_code == "AA" for outcome in outcomes)
    panels = [p for outcome in outcomes for p in outcome.panels]
    reason = "; ".join(hl7_reason(o) for o in outcomes if o.ack_code != "AA")
    return Reprocessed(
        status_code=200,
        media_type=HL7_MEDIA_TYPE,
        body=hl7_service.ack_of(outcomes, text).encode(),
        accepted=accepted,
        patient_ids=tuple(dict.fromkeys(p.patient_id for p in panels)),
        result={
            "panel_ids": [str(p.panel_id) for p in panels],
            "ack_codes": [o.ack_code for o in outcomes],
            "reason": reason,
        },
    )


async def _reprocess_fhir(session: AsyncSession, row: RefusedInput) -> Reprocessed:
    try:
        async with session.begin_nested():
            parsed = parse_bundle(row.payload, default_catalog())
            outcome = await process_bundle(
                session, organization_id=row.organization_id, parsed=parsed
            )
    except (AppError, FhirError) as exc:
        status, issues, _ = outcome_of(exc)
        body = operation_outcome(issues).model_dump_json().encode()
        return Reprocessed(status, FHIR_JSON, body, accepted=False)
    body = outcome.response.model_dump_json().encode()
    failed = failed_entries(body)
    return Reprocessed(
        status_code=200,
        media_type=FHIR_JSON,
        body=body,
        accepted=not failed,
        patient_ids=tuple(dict.fromkeys(t.patient_id for t in outcome.touched)),
        result={
            "resources": [
                {"type": t.resource_type, "id": str(t.resource_id)} for t in outcome.touched
            ],
            "failed_entries": failed,
        },
    )


async def _reprocess_json(session: AsyncSession, row: RefusedInput) -> Reprocessed:
    try:
        data = PanelCreate.model_validate_json(row.payload)
    except ValidationError as exc:
        body = _problem(
            422,
            "validation-error",
            "The request is not valid",
            "The panel is not valid.",
            errors=validation_errors(exc.errors()),
        )
        return Reprocessed(422, PROBLEM_JSON, body, accepted=False)
    try:
        async with session.begin_nested():
            outcome = await corrections.ingest_or_correct(
                session,
                organization_id=row.organization_id,
                data=data,
                source_format="json",
                via="the native API",
            )
    except AppError as exc:
        body = _problem(exc.status, exc.type_slug, exc.title, exc.detail, **exc.extensions)
        return Reprocessed(exc.status, PROBLEM_JSON, body, accepted=False)
    panel = outcome.panel
    return Reprocessed(
        status_code=201 if outcome.created else 200,
        media_type="application/json",
        body=outcome.document.encode(),
        accepted=True,
        patient_ids=(panel.patient_id,),
        result={"panel_ids": [str(panel.id)]},
    )


def _problem(status: int, slug: str, title: str, detail: str, **extensions: Any) -> bytes:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return orjson.dumps(body)


def failed_entries(bundle_json: bytes) -> list[int]:
    """The indexes of a batch-response's entries answered 4xx."""
    try:
        document = orjson.loads(bundle_json)
    except orjson.JSONDecodeError:
        return []
    failed = []
    for index, entry in enumerate(document.get("entry") or []):
        status = str(((entry or {}).get("response") or {}).get("status", ""))
        if status[:1] == "4":
            failed.append(index)
    return failed


def _reason_of(done: Reprocessed) -> str:
    if done.media_type == HL7_MEDIA_TYPE:
        return str(done.result.get("reason") or "refused again")
    return reason_from_body(done.body, done.media_type)


def reason_from_body(body: bytes, media_type: str) -> str:
    """The text of a refusal: a problem's detail and field messages, an OperationOutcome's
    diagnostics (a batch-response's failed entries', each named by index)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:_REASON_MAX].decode("utf-8", "replace")
    if not isinstance(document, dict):
        return str(document)[:_REASON_MAX]
    return reason_from_document(document)


def reason_from_document(document: dict[str, Any]) -> str:
    """``reason_from_body`` for a refusal already parsed (a batch line's problem)."""
    if document.get("resourceType") == "OperationOutcome":
        return _diagnostics(document)
    if document.get("resourceType") == "Bundle":
        parts = []
        for index, entry in enumerate(document.get("entry") or []):
            response = (entry or {}).get("response") or {}
            if str(response.get("status", ""))[:1] == "4":
                text = _diagnostics(response.get("outcome") or {})
                parts.append(f"entry[{index}] {response.get('status')}: {text}")
        return "; ".join(parts)
    parts = [str(document.get("detail") or document.get("title") or "")]
    for error in document.get("errors") or []:
        if isinstance(error, dict):
            parts.append(f"{error.get('field', '')}: {error.get('message', '')}")
    return "; ".join(p for p in parts if p)


def _diagnostics(outcome: dict[str, Any]) -> str:
    return "; ".join(
        str(issue.get("diagnostics") or issue.get("code") or "")
        for issue in outcome.get("issue") or []
        if isinstance(issue, dict)
    )
