from __future__ import annotations

import uuid

from fastapi import Depends, Request, Response

from app.audit.context import audit_target, audited
from app.auth.deps import CanReadPlans
from app.core.deps import AuditedSession
from app.kit.pagination import Cursor, Limit, decode_optional, encode_cursor, link_next
from app.kit.problems import problem_doc
from app.kit.routing import api_router
from app.patient_context.service import get_patient_or_raise
from app.sleep.router import DateFrom, DateTo
from app.timeline import service
from app.timeline.schemas import TimelinePage

router = api_router("timeline", "/api/v1/patients/{patient_id}/timeline")


@router.get(
    "",
    summary="A patient's mineral panels and sleep scores over time",
    response_model=TimelinePage,
    dependencies=[Depends(audited("read", "timeline"))],
    responses={400: problem_doc("Bad cursor, or `from` after `to`.")},
)
async def get_timeline(
    patient_id: uuid.UUID,
    request: Request,
    session: AuditedSession,
    principal: CanReadPlans,
    limit: Limit = 50,
    cursor: Cursor = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    *,
    response: Response,
) -> TimelinePage:
    """The patient's mineral panels and Insomnia Severity Index scores in one list, newest
    first, optionally limited to the days `from`..`to` (both inclusive, UTC).

    Each entry has a `kind` and a time `at`: for a `panel`, the specimen's collection time,
    with every result in its analyte's canonical unit, its interpretation and critical flag,
    and the panel's mineral ratios (every status is listed, `cancelled` included, with its
    `status`); for a `sleep-assessment`, the day it was answered at
    00:00 UTC (`assessed_on` is given too), with its total and category. Pages are
    keyset-based: follow `next_cursor` until it is null."""
    audit_target(request, patient_id=patient_id)
    after = decode_optional(cursor)
    await get_patient_or_raise(
        session, organization_id=principal.organization_id, patient_id=patient_id
    )
    items, last = await service.page(
        session,
        organization_id=principal.organization_id,
        patient_id=patient_id,
        start=date_from,
        end=date_to,
        after=after,
        limit=limit,
    )
    next_cursor = encode_cursor(*last) if last is not None else None
    link_next(request, response, next_cursor)
    return TimelinePage(items=items, limit=limit, next_cursor=next_cursor)
