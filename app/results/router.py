from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from app.audit.context import audit_target, audited
from app.auth.deps import CanReadPanels
from app.kit.listing import OrganizationListing
from app.kit.routing import api_router
from app.kit.schemas_common import Instant
from app.results import service
from app.results.schemas import FlaggedResultPage, ResultFlag

router = api_router("results")


@router.get(
    "/api/v1/results",
    summary="List the organization's abnormal or critical results",
    dependencies=[Depends(audited("search", "result"))],
)
async def list_flagged_results(
    principal: CanReadPanels,
    query: OrganizationListing,
    flag: Annotated[
        ResultFlag,
        Query(
            description="`abnormal`: outside the reference interval (L, H, LL, HH) or critical; "
            "`critical`: critical or possibly critical (a comparator value that may lie beyond "
            "a critical limit counts wherever criticals count); `possibly-critical`: only those."
        ),
    ] = "abnormal",
    analyte: Annotated[
        str | None, Query(max_length=100, description="Only this analyte (code, LOINC or name).")
    ] = None,
    collected_from: Annotated[
        Instant | None,
        Query(alias="from", description="Only results collected at or after this time."),
    ] = None,
    collected_to: Annotated[
        Instant | None,
        Query(alias="to", description="Only results collected before this time."),
    ] = None,
) -> FlaggedResultPage:
    """Every patient's current results carrying the flag, **newest collection first**, each
    with the patient's id, first MRN (and name where recorded), so a "results needing
    attention" screen needs no call per row. Withdrawn results (cancelled, entered-in-error)
    are left out. Keyset-paginated: follow `next_cursor` (or the `Link: rel="next"` header)
    until it is null; no total (counting every flagged result of an organization is not
    cheap). The audit trail records every patient a page returned (one event each; one
    without a patient when the page is empty)."""
    page = await service.flagged_page(
        query.session,
        organization_id=query.organization_id,
        flag=flag,
        analyte=analyte,
        collected_from=collected_from,
        collected_to=collected_to,
        **query.paging,
    )
    audit_target(
        query.request, patient_ids=list(dict.fromkeys(item.patient_id for item in page.items))
    )
    return query.linked(page)
