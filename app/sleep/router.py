from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Depends, Request, Response, status

from app.audit.context import audit_target, audited
from app.auth.deps import CanReadPlans, CanWritePlans
from app.core.deps import AuditedSession
from app.idempotency.deps import IDEMPOTENCY_RESPONSES
from app.idempotency.http import Idem
from app.kit.listing import Days
from app.kit.problems import problem_doc
from app.kit.routing import api_router
from app.patient_context.service import get_patient_or_raise
from app.patients.deps import PatientListing
from app.sleep import service
from app.sleep.schemas import (
    ASSESSMENT_EXAMPLE,
    SleepAssessmentCreate,
    SleepAssessmentOut,
    SleepAssessmentPage,
)

router = api_router("sleep assessments", "/api/v1/patients/{patient_id}/sleep-assessments")

RESOURCE = "sleep_assessment"


def _location(patient_id: uuid.UUID, assessment_id: uuid.UUID) -> str:
    return f"/api/v1/patients/{patient_id}/sleep-assessments/{assessment_id}"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Record an Insomnia Severity Index questionnaire",
    response_model=SleepAssessmentOut,
    dependencies=[Depends(audited("create", RESOURCE))],
    responses={
        **IDEMPOTENCY_RESPONSES,
        409: problem_doc("A request with this Idempotency-Key is still in progress."),
        422: problem_doc(
            "The request failed validation (each bad answer is named, e.g. `body.items[3]`), "
            "or assessed_on is before the patient's birth date (`assessed-before-birth`)."
        ),
    },
)
async def create_sleep_assessment(
    patient_id: uuid.UUID,
    request: Request,
    session: AuditedSession,
    principal: CanWritePlans,
    idem: Idem,
    body: Annotated[
        SleepAssessmentCreate, Body(openapi_examples={"ISI": {"value": ASSESSMENT_EXAMPLE}})
    ],
) -> Response:
    """Records the patient's answers to the 7 items of the Insomnia Severity Index (each 0-4,
    in questionnaire order). The server computes the total (0-28) and its category: 0-7
    `none`, 8-14 `subthreshold`, 15-21 `moderate`, 22-28 `severe` (Bastien, Vallieres & Morin,
    Sleep Med 2001;2:297-307). The latest assessment feeds treatment-plan drafting.

    Send an `Idempotency-Key` to make retries safe: a retry replays the first response."""
    audit_target(request, patient_id=patient_id)

    async def produce() -> SleepAssessmentOut:
        patient = await get_patient_or_raise(
            session, organization_id=principal.organization_id, patient_id=patient_id
        )
        assessment = await service.create(
            session, patient=patient, data=body, recorded_by=principal.id
        )
        audit_target(request, resource_id=assessment.id)
        return service.assessment_out(assessment)

    return await idem.created(produce, location=lambda out: _location(patient_id, out.id))


@router.get(
    "",
    summary="List a patient's sleep assessments",
    dependencies=[Depends(audited("search", RESOURCE))],
    responses={400: problem_doc("Bad cursor, or `from` after `to`.")},
)
async def list_sleep_assessments(
    principal: CanReadPlans, query: PatientListing, days: Days
) -> SleepAssessmentPage:
    """The patient's sleep assessments, newest `assessed_on` first, optionally limited to the
    days `from`..`to` (both inclusive). Pages are keyset-based: follow `next_cursor` until it
    is null."""
    rows = await service.search(query.session, **await query.patient(), **days, **query.fetch)
    return query.page(
        SleepAssessmentPage, rows, lambda a: (a.timeline_at, a.id), service.assessment_out
    )


@router.get(
    "/{assessment_id}",
    summary="Read one sleep assessment",
    dependencies=[Depends(audited("read", RESOURCE))],
)
async def get_sleep_assessment(
    patient_id: uuid.UUID,
    assessment_id: uuid.UUID,
    request: Request,
    session: AuditedSession,
    principal: CanReadPlans,
) -> SleepAssessmentOut:
    """Returns one recorded sleep assessment with its answers, total and category. An unknown
    id (or another organization's) answers **404**."""
    audit_target(request, resource_id=assessment_id, patient_id=patient_id)
    await get_patient_or_raise(
        session, organization_id=principal.organization_id, patient_id=patient_id
    )
    assessment = await service.get_or_raise(
        session,
        organization_id=principal.organization_id,
        patient_id=patient_id,
        assessment_id=assessment_id,
    )
    return service.assessment_out(assessment)
