from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import Body, Depends, Query, Request, Response, status

from app.audit.context import audit_target, audited
from app.auth.deps import CanReadPatients, CanWritePatients
from app.core.deps import AuditedSession
from app.domain.types import Sex
from app.idempotency.deps import IDEMPOTENCY_RESPONSES
from app.idempotency.http import Idem
from app.identifier_systems import system_uri
from app.kit.concurrency import require_if_match, version_etag
from app.kit.listing import OrganizationListing, by_creation
from app.kit.problems import problem_doc
from app.kit.query_params import InvalidQueryError
from app.kit.routing import api_router
from app.models.patient import Patient
from app.patients import service
from app.patients.deps import RegisteredPatient
from app.patients.schemas import (
    PATIENT_EXAMPLE,
    PatientCreate,
    PatientOut,
    PatientPage,
    PatientUpdate,
)

router = api_router("patients", "/api/v1/patients")


class InvalidIdentifierQueryError(InvalidQueryError):
    pass


def _etag(patient: Patient) -> str:
    return version_etag("patient", patient.id, patient.version)


def _out_etag(out: PatientOut) -> str:
    return version_etag("patient", out.id, out.version)


def _patient_response(patient: Patient, response: Response) -> PatientOut:
    response.headers["ETag"] = _etag(patient)
    return PatientOut.model_validate(patient)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a patient",
    response_model=PatientOut,
    dependencies=[Depends(audited("create", "patient"))],
    responses={
        **IDEMPOTENCY_RESPONSES,
        409: problem_doc(
            "An identifier is already registered to another patient, or a request with this "
            "Idempotency-Key is still in progress."
        ),
    },
)
async def create_patient(
    request: Request,
    session: AuditedSession,
    principal: CanWritePatients,
    idem: Idem,
    body: Annotated[PatientCreate, Body(openapi_examples={"adult": {"value": PATIENT_EXAMPLE}})],
) -> Response:
    """Registers a patient with one or more external identifiers (e.g. the EHR's MRN).

    Each identifier (system + value) is unique within the organization: registering one that is
    already in use answers **409** `identifier-in-use` and stores nothing; the problem names
    the patient holding it (`patient_id`, and its URL in `Location`). Sex and birth date
    drive reference-range selection for every panel posted for this patient. Send an
    `Idempotency-Key` to make retries safe."""

    async def produce() -> PatientOut:
        patient = await service.create(
            session, organization_id=principal.organization_id, data=body
        )
        audit_target(request, resource_id=patient.id, patient_id=patient.id)
        return PatientOut.model_validate(patient)

    return await idem.created(
        produce, location=lambda out: f"/api/v1/patients/{out.id}", etag=_out_etag
    )


@router.get(
    "/{patient_id}", summary="Read a patient", dependencies=[Depends(audited("read", "patient"))]
)
async def get_patient(
    response: Response, principal: CanReadPatients, patient: RegisteredPatient
) -> PatientOut:
    """Returns the patient with its identifiers and an `ETag` for updates. An unknown id (or
    another organization's) answers **404**."""
    return _patient_response(patient, response)


@router.patch(
    "/{patient_id}",
    summary="Correct a patient's sex, birth date or name",
    dependencies=[Depends(audited("update", "patient"))],
    responses={
        412: problem_doc("The patient changed since your If-Match ETag was read."),
        428: problem_doc("If-Match is missing."),
    },
)
async def update_patient(
    request: Request,
    response: Response,
    session: AuditedSession,
    principal: CanWritePatients,
    current: RegisteredPatient,
    body: Annotated[
        PatientUpdate, Body(openapi_examples={"correct sex": {"value": {"sex": "male"}}})
    ],
) -> PatientOut:
    """Corrects the sex or birth date used for reference-range selection. Panels already
    stored keep their interpretation until re-interpreted.

    Updates need `If-Match: <ETag>` from your last read: **428** without it, **412** when the
    patient changed since (nothing is modified)."""
    require_if_match(request, _etag(current))
    patient = await service.update(
        session,
        organization_id=principal.organization_id,
        patient_id=current.id,
        expected_version=current.version,
        data=body,
    )
    return _patient_response(patient, response)


@router.get("", summary="Search patients", dependencies=[Depends(audited("search", "patient"))])
async def search_patients(
    principal: CanReadPatients,
    query: OrganizationListing,
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
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="Case-insensitive prefix of the family name or of any given name.",
            examples=["smi"],
        ),
    ] = None,
    family: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Case-insensitive family-name prefix."),
    ] = None,
    given: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="Case-insensitive given-name prefix."),
    ] = None,
) -> PatientPage:
    """Lists the organization's patients, newest first, filtered by identifier, sex, birth
    date and name (prefixes, case-insensitive; filters combine). Pages are keyset-based:
    follow `next_cursor` until it is null. The audit trail records every patient a page
    returned (one event each; one without a patient when the page is empty)."""
    parsed: tuple[str, str | None] | None = None
    if identifier is not None:
        system, sep, value = identifier.partition("|")
        if not sep or not system:
            raise InvalidIdentifierQueryError("identifier must be written as system|value.")
        parsed = (system_uri(system), value or None)
    patients = await service.search(
        query.session,
        organization_id=query.organization_id,
        identifier=parsed,
        sex=sex.value if sex else None,
        birth_date=birth_date,
        name=name.strip() or None if name else None,
        family=family.strip() or None if family else None,
        given=given.strip() or None if given else None,
        **query.fetch,
    )
    page = query.keyset(patients, by_creation)
    audit_target(query.request, patient_ids=[patient.id for patient in page.rows])
    return page.page(PatientPage, PatientOut.model_validate)
