"""Route dependencies that load a patient by the path's `patient_id` or answer 404, naming it as
the request's audit target first (so a refused read of another organization's patient is
audited with the id that was asked for).

Declare them after the route's scoped principal: dependencies resolve in parameter order, so a
caller without the scope gets its 403 before any lookup.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, Request, Response

from app.audit.context import audit_target
from app.auth.deps import CurrentOrganizationId
from app.core.deps import AuditedSession
from app.kit.listing import OrganizationQuery
from app.kit.pagination import Cursor, Limit
from app.models.patient import Patient
from app.patient_context.service import get_patient_or_raise
from app.patients import service


async def registered_patient(
    patient_id: uuid.UUID,
    request: Request,
    session: AuditedSession,
    organization_id: CurrentOrganizationId,
) -> Patient:
    """The patient record itself (with its identifiers): the audit row's resource and patient."""
    audit_target(request, resource_id=patient_id, patient_id=patient_id)
    return await service.get_or_raise(
        session, organization_id=organization_id, patient_id=patient_id
    )


async def known_patient(
    patient_id: uuid.UUID,
    request: Request,
    session: AuditedSession,
    organization_id: CurrentOrganizationId,
) -> Patient:
    """The patient a nested route (`/patients/{patient_id}/...`) is about: the audit row's
    patient; the route names its own resource."""
    audit_target(request, patient_id=patient_id)
    return await get_patient_or_raise(
        session, organization_id=organization_id, patient_id=patient_id
    )


RegisteredPatient = Annotated[Patient, Depends(registered_patient)]
KnownPatient = Annotated[Patient, Depends(known_patient)]


class PatientScope(TypedDict):
    """The keys every patient-scoped service takes: `**await query.patient()`."""

    organization_id: uuid.UUID
    patient_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class PatientQuery(OrganizationQuery):
    """A list under `/patients/{patient_id}/...`: the patient's id, the request's session, and
    the page size and cursor. Nothing is looked up until the route asks for `patient()`, so a
    request refused for its query (422) names no patient in its audit row."""

    patient_id: uuid.UUID

    async def patient(self) -> PatientScope:
        """The keys a patient-scoped service takes (`**await query.patient()`), once the patient
        is named as the audit row's patient and found in the caller's organization (404 for
        an unknown id and for another organization's patient alike)."""
        await known_patient(self.patient_id, self.request, self.session, self.organization_id)
        return {"organization_id": self.organization_id, "patient_id": self.patient_id}


def patient_query(default_limit: int = 50) -> Callable[..., PatientQuery]:
    """The dependency of a patient's list, `limit` defaulting to `default_limit`."""

    def patient_query(
        patient_id: uuid.UUID,
        request: Request,
        response: Response,
        session: AuditedSession,
        organization_id: CurrentOrganizationId,
        limit: Limit = default_limit,
        cursor: Cursor = None,
    ) -> PatientQuery:
        return PatientQuery(request, response, limit, cursor, session, organization_id, patient_id)

    return patient_query


PatientListing = Annotated[PatientQuery, Depends(patient_query())]
"""A patient's list, 50 a page by default. Declare it after the route's scoped principal."""
