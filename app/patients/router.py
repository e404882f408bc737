from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Query, status

from app.deps import OrganizationId, ReadSession, WriteSession
from app.domain.types import Sex
from app.errors import AppError
from app.pagination import Cursor, Limit, decode_cursor, encode_cursor
from app.patients import service
from app.patients.schemas import PATIENT_EXAMPLE, PatientCreate, PatientOut, PatientPage
from app.problems import PROBLEM_RESPONSES, problem_doc

router = APIRouter(prefix="/api/v1/patients", tags=["patients"], responses=PROBLEM_RESPONSES)


class InvalidIdentifierQueryError(AppError):
    status = 400
    type_slug = "invalid-query"
    title = "Invalid query parameter"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a patient",
    response_model=PatientOut,
    responses={409: problem_doc("An identifier is already registered to another patient.")},
)
async def create_patient(
    session: WriteSession,
    organization_id: OrganizationId,
    body: Annotated[PatientCreate, Body(openapi_examples={"adult": {"value": PATIENT_EXAMPLE}})],
) -> PatientOut:
    """Registers a patient with one or more external identifiers (e.g. the EHR's MRN).

    Each identifier (system + value) is unique within the organization: registering one that is
    already in use answers **409** `identifier-in-use` and stores nothing. Sex and birth date
    drive reference-range selection for every panel posted for this patient."""
    patient = await service.create(session, organization_id=organization_id, data=body)
    return PatientOut.model_validate(patient)


@router.get("/{patient_id}", summary="Read a patient", response_model=PatientOut)
async def get_patient(
    patient_id: uuid.UUID, session: ReadSession, organization_id: OrganizationId
) -> PatientOut:
    """Returns the patient with its identifiers. An unknown id answers **404**."""
    patient = await service.get_or_raise(
        session, organization_id=organization_id, patient_id=patient_id
    )
    return PatientOut.model_validate(patient)


@router.get("", summary="Search patients", response_model=PatientPage)
async def search_patients(
    session: ReadSession,
    organization_id: OrganizationId,
    limit: Limit = 50,
    cursor: Cursor = None,
    identifier: Annotated[
        str | None,
        Query(
            max_length=512,
            description="`system|value` for an exact identifier, or `system|` for any value in "
            "that system.",
            examples=["urn:oid:2.16.840.1.113883.19.5|MRN-0042"],
        ),
    ] = None,
    sex: Annotated[Sex | None, Query(description="Only patients with this recorded sex.")] = None,
    birth_date: Annotated[date | None, Query(description="Exact birth date.")] = None,
) -> PatientPage:
    """Lists the organization's patients, newest first, filtered by identifier, sex and birth
    date. Pages are keyset-based: follow `next_cursor` until it is null."""
    parsed: tuple[str, str | None] | None = None
    if identifier is not None:
        system, sep, value = identifier.partition("|")
        if not sep or not system:
            raise InvalidIdentifierQueryError("identifier must be written as system|value.")
        parsed = (system, value or None)
    patients = await service.search(
        session,
        organization_id=organization_id,
        identifier=parsed,
        sex=sex.value if sex else None,
        birth_date=birth_date,
        limit=limit + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    page = list(patients[:limit])
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(patients) > limit else None
    return PatientPage(
        items=[PatientOut.model_validate(p) for p in page], limit=limit, next_cursor=next_cursor
    )
