from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request, Response
from pydantic import AwareDatetime

from app.audit import repository
from app.audit.context import audit_target, audited
from app.audit.schemas import AuditEventOut, AuditEventPage
from app.audit.service import AuditOutcome
from app.auth.deps import CanReadAudit
from app.core.deps import AuditedSession
from app.kit.pagination import Cursor, Limit, decode_tagged, encode_tagged, keyset_page
from app.kit.routing import api_router

router = api_router("audit", "/api/v1/audit-events")


@router.get(
    "",
    summary="Search the PHI audit trail",
    response_model=AuditEventPage,
    dependencies=[Depends(audited("search", "audit_event"))],
)
async def list_audit_events(
    request: Request,
    session: AuditedSession,
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
        before_seq=decode_tagged(cursor, "audit") if cursor else None,
    )
    page = keyset_page(
        request, response, events, limit, cursor_of=lambda e: encode_tagged("audit", e.seq)
    )
    return page.page(AuditEventPage, AuditEventOut.model_validate)
