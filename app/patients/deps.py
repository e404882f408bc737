"""Route dependencies that load a patient by the path's `patient_id` or answer 404, naming it as
the request's audit target first (so a refused read of another organization's patient is
audited with the id that was asked for).

Declare them after the route's scoped principal: dependencies resolve in parameter order, so a
caller without the scope gets its 403 before any lookup.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from app.audit.context import audit_target
from app.auth.deps import CurrentOrganizationId
from app.core.deps import AuditedSession
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
