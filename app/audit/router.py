from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime

from app.audit import repository
from app.audit.context import audit_target, audited
from app.audit.schemas import AuditEventOut, AuditEventPage
from app.audit.service import AuditOutcome
from app.auth.deps import AUTH_RESPONSES, CanReadAudit
from app.deps import WriteSession
from app.pagination import Cursor, InvalidCursorError, Limit, link_next
from app.problems import PROBLEM_RESPONSES

router = APIRouter(
    prefix="/api/v1/audit-events",
    tags=["audit"],
    responses={**PROBLEM_RESPONSES, **AUTH_RESPONSES},
)


def encode_seq_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(["audit", seq])).decode().rstrip("=")


def decode_seq_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        tag, seq = orjson.loads(base64.urlsafe_b64decode(padded))
        if tag != "audit" or not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError("not an audit cursor")
        return seq
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidCursorError("The cursor is not one this API returned.") from exc


@router.get(
    "",
    summary="Search the PHI audit trail",
    response_model=AuditEventPage,
    dependencies=[Depends(audited("search", "audit_event"))],
)
async def list_audit_events(
    request: Request,
    session: WriteSession,
    principal: CanReadAudit,
    patient_id: Annotated[
        uuid.UUID | None, Query(description="Only accesses to this patient's data.")
    ] = None,
    principal_id: Annotated[
        str | None, Query(max_length=300, description="Only this caller (`key:...`, `oidc:...`).")
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=20,
            pattern=r"^[a-z_-]+$",
            description="Only this action: `read`, `search`, `create`, `update`, `delete`, "
            "`reinterpret`, ...",
        ),
    ] = None,
    outcome: Annotated[
        AuditOutcome | None, Query(description="Only `success`, `denied` or `error`.")
    ] = None,
    occurred_from: Annotated[
        AwareDatetime | None,
        Query(description="Only events at or after this time (with UTC offset)."),
    ] = None,
    occurred_to: Annotated[
        AwareDatetime | None, Query(description="Only events before this time.")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    *,
    response: Response,
) -> AuditEventPage:
    """Every recorded access to patient data in your organization, newest first: reads,
    searches, creates, updates, deletes and re-interpretations, and each denied or failed
    attempt. An event names who (principal, role), what (action, resource, patient id), when
    (UTC), the outcome and HTTP status, the request id and the client address; it never holds
    patient values. Filters combine with AND. The trail is append-only: the database refuses
    to change or delete an event, and each event's `hash` covers the one before it.

    Reading the trail is itself recorded (action `search`, resource `audit_event`, the
    `patient_id` filter as the patient), as are key, range-set, rule-set and code-map
    changes."""
    # Who looked into whose trail: the patient filter, if any, is the patient of this row.
    audit_target(request, patient_id=patient_id)
    events = await repository.list_events(
        session,
        organization_id=principal.organization_id,
        patient_id=patient_id,
        principal_id=principal_id,
        action=action,
        outcome=outcome,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        limit=limit + 1,
        before_seq=decode_seq_cursor(cursor) if cursor else None,
    )
    page = list(events[:limit])
    next_cursor = encode_seq_cursor(page[-1].seq) if len(events) > limit else None
    link_next(request, response, next_cursor)
    return AuditEventPage(
        items=[AuditEventOut.model_validate(event) for event in page],
        limit=limit,
        next_cursor=next_cursor,
    )
