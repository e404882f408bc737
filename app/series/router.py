from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query

from app.audit.context import audited
from app.auth.deps import CanReadPlans
from app.kit.listing import Days
from app.kit.problems import problem_doc
from app.kit.routing import api_router
from app.patients.deps import PatientQuery, patient_query
from app.series import service
from app.series.schemas import SeriesPage

router = api_router("timeline")


@router.get(
    "/api/v1/patients/{patient_id}/series",
    summary="Minerals and ISI scores aligned on one time axis",
    dependencies=[Depends(audited("read", "timeline"))],
    responses={
        400: problem_doc(
            "No series asked for, an unknown analyte or unit, a bad cursor, or `from` after `to`."
        )
    },
)
async def get_patient_series(
    principal: CanReadPlans,
    query: Annotated[PatientQuery, Depends(patient_query(default_limit=200))],
    days: Days,
    analyte: Annotated[
        list[str],
        Query(
            max_length=service.MAX_SERIES,
            description="A series per analyte, as `code` or `code:unit` (e.g. "
            "`magnesium:mg/dL`); repeat for more. Values are in that unit (default the "
            "canonical one).",
        ),
    ] = [],  # noqa: B006 - FastAPI copies defaults per request
    include: Annotated[
        list[Literal["isi"]],
        Query(description="Other series: `isi` (Insomnia Severity Index total, 0-28)."),
    ] = [],  # noqa: B006
) -> SeriesPage:
    """One row per time point (a specimen's collection time, or an ISI assessment's day at
    00:00 UTC), **oldest first**, with one value per requested series in `series` order (null
    where that series has none at that time): what a multi-line chart plots. Withdrawn results
    (cancelled, entered-in-error) and cancelled panels are left out; censored values (`<0.5`)
    carry their comparator. Where two panels share a collection time, the later-stored one's
    value is shown. Keyset-paginated by time: follow `next_cursor` or the `Link` header."""
    page = await service.aligned(
        query.session,
        **await query.patient(),
        analytes=analyte,
        include=list(include),
        **days,
        **query.paging,
    )
    return query.linked(page)
