from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Body, Depends, Path, Query, Request, Response, status

from app.audit.context import audit_target, audited
from app.auth.deps import CanReadPanels, CanReinterpretPanels, CanWritePanels
from app.core.deps import AuditedSession
from app.idempotency.deps import IDEMPOTENCY_RESPONSES
from app.idempotency.http import DeferredIdem, json_response
from app.idempotency.service import StoredResponse
from app.kit.problems import problem_doc
from app.kit.routing import api_router
from app.panels import corrections, fast_post, hot, reinterpretation, service, trends
from app.panels.deps import Collected, PatientTrend
from app.panels.schemas import (
    PANEL_EXAMPLE,
    InterpretationVersionOut,
    PanelCreate,
    PanelOut,
    PanelPage,
    RatioHistoryOut,
    ReinterpretRequest,
    TrendOut,
)
from app.panels.views import ratio_out, stored_verdict
from app.patients.deps import PatientListing

router = api_router("panels")


@router.post(
    "/api/v1/panels",
    summary="Post a lab panel",
    response_model=PanelOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "description": "The same panel was already stored (nothing was written), or the "
            "post corrected the stored panel (a new version; the earlier one stays readable "
            "under `/interpretations`).",
            "model": PanelOut,
        },
        **IDEMPOTENCY_RESPONSES,
        409: problem_doc(
            "A different panel that is not a correction is already stored under this source + "
            "accession (the detail says how to send a correction), or a request with this "
            "Idempotency-Key is still in progress."
        ),
    },
    dependencies=[Depends(audited("create", "panel"))],
)
async def post_panel(
    request: Request,
    principal: CanWritePanels,
    idem: DeferredIdem,
    body: Annotated[
        PanelCreate, Body(openapi_examples={"mineral panel": {"value": PANEL_EXAMPLE}})
    ],
) -> Response:
    """Stores a patient's mineral panel and returns it interpreted.

    Each result's analyte is recognised (our code, LOINC, or a lab's name), its unit converted
    to the analyte's canonical unit, and it is flagged `L` / `N` / `H` / `LL` / `HH` (or `IND`
    when a comparator such as `<5` makes the flag undecidable) against the organization's active
    reference ranges for the patient's sex and age and the specimen. Molar ratios (Ca:Mg,
    Zn:Cu) are computed when both values are present. Critical results set `has_critical`.

    **Safe to retry.** `source` + `accession` identify the panel: posting the same panel again
    answers **200** with the stored panel and writes nothing.

    **Corrections.** Post the panel again under the same `source` + `accession` with:
    `status` `corrected` or `amended`; or `final` while the stored panel is `preliminary` (or
    a newer `preliminary`); or results whose own `status` is `corrected` / `amended` (a new
    value) or `entered-in-error` / `cancelled` (withdrawn: kept for the record, never
    critical, out of trends, ratios and plans). The answer is **200** with the corrected
    panel: results of the same analyte are updated (their ids stay), new analytes added, and
    a stored result the correction leaves out is **kept** as it was (only an explicit
    withdrawal status withdraws a result; nothing is ever deleted). The panel is
    re-interpreted against the active reference ranges (`has_critical`, ratios recomputed),
    the earlier version stays readable under `GET /api/v1/panels/{id}/interpretations`, and
    every draft or active plan resting on a changed or withdrawn result gets a
    `review_reason`. Anything else under a stored accession (e.g. `preliminary` after
    `final`, another patient, another specimen) answers **409** `accession-conflict`, and
    changes nothing.

    Refused with **422** and nothing stored: an unknown analyte or unit (the problem names the
    unit and the accepted ones), a negative, NaN or infinite value, a value outside the
    analyte's physically possible bounds, an unknown patient, a collection time in the future
    or before 1900.

    An `Idempotency-Key` additionally makes any retry return the first response byte for byte
    (marked `Idempotent-Replayed: true`)."""

    # PostgreSQL, a patient this process has seen: one statement, or None (nothing written).
    fast = await fast_post.try_post(request, principal, body, key=idem.key, settings=idem.settings)
    if fast is not None:
        return fast

    # The plain path, in the request's audited transaction (opened only now: the hot path
    # above needs none); it commits, audit row last, when the block ends.
    async with idem.transaction(principal) as plain:
        session = plain.session

        async def produce() -> StoredResponse:
            outcome = await corrections.ingest_or_correct(
                session,
                organization_id=principal.organization_id,
                data=body,
                source_format="json",
                via="the native API",
            )
            panel = outcome.panel
            hot.remember_patient(
                request.app.state.engine, principal.organization_id, panel.id, panel.patient_id
            )
            audit_target(
                request,
                resource_id=panel.id,
                patient_id=panel.patient_id,
                action="create" if outcome.created else "update" if outcome.corrected else "read",
                status_code=201 if outcome.created else 200,
            )
            return json_response(
                outcome.document.encode(),
                201 if outcome.created else 200,
                location=f"/api/v1/panels/{panel.id}",
            )

        # The patient lookup goes out with the Idempotency-Key claim (one statement).
        service.read_patient_with_claim(
            session, organization_id=principal.organization_id, data=body
        )
        # Not idem.created: a panel posted again answers 200 (stored or corrected), not 201.
        return await plain.run(produce)


@router.get(
    "/api/v1/panels/{panel_id}",
    summary="Read a panel",
    response_model=PanelOut,
    dependencies=[Depends(audited("read", "panel"))],
)
async def get_panel(panel_id: uuid.UUID, request: Request, principal: CanReadPanels) -> Response:
    """Returns the panel with every result as sent, in the canonical unit, its interpretation,
    the snapshot of the reference range applied, the lab's own range and flag (with any
    disagreement), and the panel's ratios."""
    # No session dependency: the read and its audit row are one statement (app.panels.hot).
    document = await hot.read_document(request, principal, panel_id)
    return Response(document, media_type="application/json")


@router.get(
    "/api/v1/patients/{patient_id}/panels",
    summary="List a patient's panels",
    dependencies=[Depends(audited("search", "panel"))],
)
async def list_patient_panels(
    principal: CanReadPanels,
    query: PatientListing,
    collected: Collected,
    analyte: Annotated[
        str | None,
        Query(max_length=100, description="Only panels with a result for this analyte."),
    ] = None,
    flag: Annotated[
        Literal["L", "N", "H", "LL", "HH", "IND", "critical"] | None,
        Query(description="Only panels with a result carrying this flag (`critical`: any LL/HH)."),
    ] = None,
) -> PanelPage:
    """A patient's panels, newest collection first, with their results. Keyset-paginated:
    follow `next_cursor` until it is null."""
    panels = await service.list_for_patient(
        query.session,
        **await query.patient(),
        **collected,
        analyte=analyte,
        flag=flag,
        **query.fetch,
    )
    return query.page(PanelPage, panels, lambda p: (p.collected_at, p.id))


@router.get(
    "/api/v1/patients/{patient_id}/analytes/{analyte}/history",
    summary="An analyte's history for trends",
    dependencies=[Depends(audited("read", "result"))],
)
async def analyte_history(
    # Declared (though `query` reads it) so the OpenAPI path parameters keep URL order:
    # generated clients take them positionally.
    patient_id: uuid.UUID,
    analyte: Annotated[str, Path(max_length=100, description="Analyte code, LOINC or name.")],
    principal: CanReadPanels,
    query: PatientTrend,
    collected: Collected,
    unit: Annotated[
        str | None,
        Query(max_length=30, description="Unit to report values in; default the canonical one."),
    ] = None,
) -> TrendOut:
    """Every result of one analyte for the patient, oldest first, converted to the canonical
    unit (or `unit`, e.g. `mg/dL`), with its interpretation: the series a trend chart needs.
    Each point carries the reference interval (`reference_low`/`reference_high`: the normal
    band) and the critical limits that applied to that result, from the range snapshot stored
    with it, in the same unit. `total` counts every matching result. Withdrawn results are
    left out. Ratios (`ca_mg_molar`, ...) are at `/ratios/{code}/history`."""
    trend = await trends.analyte_history(
        query.session,
        **await query.patient(),
        analyte=analyte,
        unit=unit,
        **collected,
        **query.paging,
    )
    return query.linked(trend)


@router.get(
    "/api/v1/patients/{patient_id}/ratios/{code}/history",
    summary="A mineral ratio's history for trends",
    dependencies=[Depends(audited("read", "panel"))],
    responses={404: problem_doc("No such patient, or a ratio code nothing defines.")},
)
async def ratio_history(
    patient_id: uuid.UUID,  # declared for the path parameters' order, as above
    code: Annotated[
        str,
        Path(
            max_length=50,
            pattern=r"^[a-z0-9_]+$",
            description="Ratio code as in a panel's `ratios` (e.g. `ca_mg_molar`).",
        ),
    ],
    principal: CanReadPanels,
    query: PatientTrend,
    collected: Collected,
) -> RatioHistoryOut:
    """One molar ratio (Ca:Mg, Zn:Cu) per panel of the patient, **newest first**, each with
    the ratio's reference interval (`low`/`high`) that applied to that panel and its
    interpretation; a panel whose ratio could not be computed (a comparator value) has a null
    `value` and a `note`. Cancelled panels are left out. `total` counts all pages. A code no
    panel carries is 200 with no items when the active range set defines it, else 404."""
    history = await trends.ratio_history(
        query.session, **await query.patient(), code=code, **collected, **query.paging
    )
    return query.linked(history)


@router.post(
    "/api/v1/panels/{panel_id}/reinterpret",
    summary="Re-interpret a panel with the active ranges",
    dependencies=[Depends(audited("reinterpret", "panel"))],
)
async def reinterpret_panel(
    panel_id: uuid.UUID,
    request: Request,
    session: AuditedSession,
    principal: CanReinterpretPanels,
    body: Annotated[
        ReinterpretRequest | None,
        Body(
            openapi_examples={
                "with a reason": {
                    "value": {"reason": "Clinic adopted its laboratory's 2027 ranges."}
                }
            }
        ),
    ] = None,
) -> PanelOut:
    """Interprets the stored values again against the organization's *currently active*
    reference-range set. Activating a new set never changes stored interpretations by itself;
    this explicit action does, and the previous interpretation stays readable under
    `/interpretations`."""
    audit_target(request, resource_id=panel_id)
    panel = await reinterpretation.reinterpret(
        session,
        organization_id=principal.organization_id,
        panel_id=panel_id,
        reason=body.reason if body else None,
    )
    audit_target(request, patient_id=panel.patient_id)
    return panel


@router.get(
    "/api/v1/panels/{panel_id}/interpretations",
    summary="A panel's interpretation history",
    dependencies=[Depends(audited("read", "panel"))],
)
async def panel_interpretations(
    panel_id: uuid.UUID, request: Request, session: AuditedSession, principal: CanReadPanels
) -> list[InterpretationVersionOut]:
    """Every interpretation of the panel, newest first: the current one and each one superseded
    by a re-interpretation or a correction, with the range set applied and the per-result
    status and verdict (a version superseded by a correction also keeps each result's value and
    unit as they were, and its `reason` names the correction)."""
    audit_target(request, resource_id=panel_id)
    current, older = await reinterpretation.interpretation_versions(
        session, organization_id=principal.organization_id, panel_id=panel_id
    )
    audit_target(request, patient_id=current.patient_id)
    versions = [
        InterpretationVersionOut(
            version=current.interpretation_version,
            current=True,
            range_set_id=uuid.UUID(str(current.range_set["id"])) if current.range_set else None,
            interpreted_at=current.interpreted_at,
            superseded_at=None,
            reason=None,
            results=[
                {
                    "result_id": str(r.id),
                    "analyte": r.analyte,
                    "status": r.status,
                    "value": r.reported.text,
                    "unit": r.reported.unit,
                    "interpretation": r.interpretation.code,
                    "critical": r.interpretation.critical,
                    "note": r.interpretation.note,
                    "reference_range": r.interpretation.reference_range.model_dump(mode="json")
                    if r.interpretation.reference_range
                    else None,
                }
                for r in current.results
            ],
            ratios=[r.model_dump(mode="json") for r in current.ratios],
        )
    ]
    versions.extend(
        InterpretationVersionOut(
            version=o.version,
            current=False,
            range_set_id=o.range_set_id,
            interpreted_at=o.interpreted_at,
            superseded_at=o.superseded_at,
            reason=o.reason,
            results=[stored_verdict(r) for r in o.results],
            ratios=[ratio_out(r).model_dump(mode="json") for r in o.ratios],
        )
        for o in older
    )
    return versions
