"""Route dependencies that load a plan or answer 404, naming it as the request's audit target
(so a refused read of another organization's plan is audited with the id that was asked for)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from app.audit.context import audit_target
from app.auth.deps import CanReadPlans, CanWritePlans
from app.auth.principal import Principal
from app.deps import WriteSession
from app.models.plan import TreatmentPlan
from app.plans import service


async def _load(
    request: Request, session: WriteSession, principal: Principal, plan_id: uuid.UUID
) -> TreatmentPlan:
    audit_target(request, resource_id=plan_id)
    plan = await service.get_or_raise(
        session, organization_id=principal.organization_id, plan_id=plan_id
    )
    audit_target(request, patient_id=plan.patient_id)
    return plan


async def valid_plan(
    plan_id: uuid.UUID, request: Request, session: WriteSession, principal: CanReadPlans
) -> TreatmentPlan:
    return await _load(request, session, principal, plan_id)


async def valid_plan_for_write(
    plan_id: uuid.UUID, request: Request, session: WriteSession, principal: CanWritePlans
) -> TreatmentPlan:
    return await _load(request, session, principal, plan_id)


ReadablePlan = Annotated[TreatmentPlan, Depends(valid_plan)]
WritablePlan = Annotated[TreatmentPlan, Depends(valid_plan_for_write)]
