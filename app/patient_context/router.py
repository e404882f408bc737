from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Depends, Path, Request, Response

from app.audit.context import audit_target, audited
from app.auth.deps import CanReadPlans, CanWritePlans
from app.core.deps import AuditedSession
from app.kit.concurrency import PreconditionFailedError, require_if_match
from app.kit.pagination import decode_tagged, encode_tagged
from app.kit.problems import problem_doc
from app.kit.routing import api_router
from app.models.patient_context import PatientContext
from app.patient_context import repository, service
from app.patient_context.schemas import (
    CONTEXT_EXAMPLE,
    PatientContextOut,
    PatientContextPage,
    PatientContextWrite,
)
from app.patients.deps import KnownPatient, PatientListing

router = api_router("patient context", "/api/v1/patients/{patient_id}/context")

RESOURCE = "patient_context"
MAX_VERSION = 2_147_483_647  # the column is a 32-bit integer on PostgreSQL


def _location(patient_id: uuid.UUID, version: int) -> str:
    return f"/api/v1/patients/{patient_id}/context/versions/{version}"


def _with_etag(context: PatientContext, response: Response) -> PatientContextOut:
    response.headers["ETag"] = service.context_etag(context)
    return service.context_out(context)


def _encode_cursor(version: int) -> str:
    return encode_tagged("v", version)


def _decode_cursor(cursor: str) -> int:
    return decode_tagged(cursor, "v", high=MAX_VERSION + 1)


@router.put(
    "",
    summary="Record the patient's clinical context (a new version)",
    dependencies=[Depends(audited("update", RESOURCE))],
    responses={
        201: {
            "description": "The first version was recorded.",
            "model": PatientContextOut,
            "headers": {
                "ETag": {"description": "The version's ETag.", "schema": {"type": "string"}},
                "Location": {"description": "The version's URL.", "schema": {"type": "string"}},
            },
        },
        412: problem_doc(
            "The context changed since your If-Match ETag was read (or If-Match was sent for "
            "a patient without a context yet)."
        ),
        422: problem_doc(
            "The request failed validation, or contradicts the patient record (pregnant for "
            "a patient recorded as male: `context-inconsistent`)."
        ),
        428: problem_doc("A context exists and If-Match is missing."),
    },
)
async def put_context(
    request: Request,
    response: Response,
    session: AuditedSession,
    principal: CanWritePlans,
    patient: KnownPatient,
    body: Annotated[
        PatientContextWrite, Body(openapi_examples={"context": {"value": CONTEXT_EXAMPLE}})
    ],
) -> PatientContextOut:
    """Records the patient's clinical context as the plan rules will read it: pregnancy,
    breastfeeding, the latest eGFR, relevant medication classes and conditions, diet, caffeine
    and alcohol. Send the whole context: every write appends a new version (fields left out
    are recorded as unknown or none) and earlier versions stay readable.

    The first write needs no If-Match and answers **201**. Once a context exists, send
    `If-Match: <ETag>` from your last read: **428** without it, **412** when someone recorded a
    newer version since (nothing is stored); success answers **200** with the new ETag.
    Medication classes, conditions and diets come back with their display and standard codes
    (WHO ATC, SNOMED CT, LOINC for eGFR)."""
    current = await repository.current(
        session, organization_id=principal.organization_id, patient_id=patient.id
    )
    if current is None:
        if request.headers.get("if-match") is not None:
            raise PreconditionFailedError(
                "No context has been recorded for this patient yet: send the first version "
                "without If-Match."
            )
    else:
        require_if_match(request, service.context_etag(current))
    context = await service.record(
        session, patient=patient, current=current, data=body, recorded_by=principal.id
    )
    created = current is None
    audit_target(
        request,
        resource_id=context.id,
        action="create" if created else None,
        status_code=201 if created else None,
    )
    if created:
        response.status_code = 201
        response.headers["Location"] = _location(patient.id, context.version)
    return _with_etag(context, response)


@router.get(
    "",
    summary="Read the patient's current clinical context",
    dependencies=[Depends(audited("read", RESOURCE))],
    responses={
        404: problem_doc(
            "No such patient in your organization, or no context recorded yet "
            "(`context-not-recorded`)."
        )
    },
)
async def get_context(
    patient_id: uuid.UUID,
    request: Request,
    response: Response,
    session: AuditedSession,
    principal: CanReadPlans,
    _patient: KnownPatient,
) -> PatientContextOut:
    """Returns the newest version of the patient's clinical context, with an `ETag` to send as
    `If-Match` when recording the next one. A patient without a context answers **404**
    `context-not-recorded`; an unknown patient (or another organization's) answers **404**
    `not-found`."""
    context = await service.current_or_raise(
        session, organization_id=principal.organization_id, patient_id=patient_id
    )
    audit_target(request, resource_id=context.id)
    return _with_etag(context, response)


@router.get(
    "/versions",
    summary="List the versions of the patient's clinical context",
    dependencies=[Depends(audited("search", RESOURCE))],
)
async def list_context_versions(
    principal: CanReadPlans, query: PatientListing
) -> PatientContextPage:
    """Every recorded version of the patient's clinical context, newest first. Pages are
    keyset-based: follow `next_cursor` until it is null. A patient without a context has an
    empty list."""
    rows = await service.versions(
        query.session,
        **await query.patient(),
        limit=query.limit + 1,
        before_version=_decode_cursor(query.cursor) if query.cursor else None,
    )
    return query.page(
        PatientContextPage,
        rows,
        item=service.context_out,
        cursor_of=lambda c: _encode_cursor(c.version),
    )


@router.get(
    "/versions/{version}",
    summary="Read one version of the patient's clinical context",
    dependencies=[Depends(audited("read", RESOURCE))],
)
async def get_context_version(
    patient_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION, description="The version number.")],
    request: Request,
    session: AuditedSession,
    principal: CanReadPlans,
    _patient: KnownPatient,
) -> PatientContextOut:
    """Returns one recorded version of the patient's clinical context, as it was recorded (for
    example the one a treatment plan was drafted against). An unknown version answers
    **404**."""
    context = await service.version_or_raise(
        session, organization_id=principal.organization_id, patient_id=patient_id, version=version
    )
    audit_target(request, resource_id=context.id)
    return service.context_out(context)
