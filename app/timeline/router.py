from __future__ import annotations

from fastapi import Depends

from app.audit.context import audited
from app.auth.deps import CanReadPlans
from app.kit.listing import Days
from app.kit.pagination import encode_cursor
from app.kit.problems import problem_doc
from app.kit.routing import api_router
from app.patients.deps import PatientListing
from app.timeline import service
from app.timeline.schemas import TimelinePage

router = api_router("timeline", "/api/v1/patients/{patient_id}/timeline")


@router.get(
    "",
    summary="A patient's mineral panels and sleep scores over time",
    dependencies=[Depends(audited("read", "timeline"))],
    responses={400: problem_doc("Bad cursor, or `from` after `to`.")},
)
async def get_timeline(principal: CanReadPlans, query: PatientListing, days: Days) -> TimelinePage:
    """The patient's mineral panels and Insomnia Severity Index scores in one list, newest
    first, optionally limited to the days `from`..`to` (both inclusive, UTC).

    Each entry has a `kind` and a time `at`: for a `panel`, the specimen's collection time,
    with every result in its analyte's canonical unit, its interpretation and critical flag,
    and the panel's mineral ratios (every status is listed, `cancelled` included, with its
    `status`); for a `sleep-assessment`, the day it was answered at
    00:00 UTC (`assessed_on` is given too), with its total and category. Pages are
    keyset-based: follow `next_cursor` until it is null."""
    items, last = await service.page(query.session, **await query.patient(), **days, **query.paging)
    next_cursor = encode_cursor(*last) if last is not None else None
    return query.linked(TimelinePage(items=items, limit=query.limit, next_cursor=next_cursor))
