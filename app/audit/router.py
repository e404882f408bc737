from __future__ import annotations

from fastapi import Depends

from app.audit import repository
from app.audit.context import audit_target, audited
from app.audit.deps import AuditFilters
from app.audit.schemas import AuditEventOut, AuditEventPage
from app.auth.deps import CanReadAudit
from app.kit.listing import OrganizationListing
from app.kit.pagination import decode_tagged, encode_tagged
from app.kit.routing import api_router

router = api_router("audit", "/api/v1/audit-events")


@router.get(
    "",
    summary="Search the PHI audit trail",
    dependencies=[Depends(audited("search", "audit_event"))],
)
async def list_audit_events(
    principal: CanReadAudit, filters: AuditFilters, query: OrganizationListing
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
    audit_target(query.request, patient_id=filters["patient_id"])
    events = await repository.list_events(
        query.session,
        organization_id=query.organization_id,
        **filters,
        limit=query.limit + 1,
        before_seq=decode_tagged(query.cursor, "audit") if query.cursor else None,
    )
    return query.page(
        AuditEventPage,
        events,
        item=AuditEventOut.model_validate,
        cursor_of=lambda e: encode_tagged("audit", e.seq),
    )
