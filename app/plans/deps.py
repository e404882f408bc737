"""Route dependencies that load a plan or answer 404, naming it as the request's audit target
(so a refused read of another organization's plan is audited with the id that was asked for),
and the two shapes every plan write takes: an edit under `If-Match` (`PlanChange`) and a new
draft under `Idempotency-Key` (`PlanDrafting`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from app.audit.context import audit_target
from app.auth.deps import CanReadPlans, CanWritePlans
from app.auth.principal import Principal
from app.core.deps import AuditedSession
from app.idempotency.http import Idem
from app.kit.concurrency import require_if_match, version_etag
from app.models.plan import TreatmentPlan
from app.plans import service, views
from app.plans.schemas import PlanCreate, PlanOut, RegenerateIn


async def _load(
    request: Request, session: AuditedSession, principal: Principal, plan_id: uuid.UUID
) -> TreatmentPlan:
    audit_target(request, resource_id=plan_id)
    plan = await service.get_or_raise(
        session, organization_id=principal.organization_id, plan_id=plan_id
    )
    audit_target(request, patient_id=plan.patient_id)
    return plan


async def valid_plan(
    plan_id: uuid.UUID, request: Request, session: AuditedSession, principal: CanReadPlans
) -> TreatmentPlan:
    return await _load(request, session, principal, plan_id)


async def valid_plan_for_write(
    plan_id: uuid.UUID, request: Request, session: AuditedSession, principal: CanWritePlans
) -> TreatmentPlan:
    return await _load(request, session, principal, plan_id)


ReadablePlan = Annotated[TreatmentPlan, Depends(valid_plan)]
WritablePlan = Annotated[TreatmentPlan, Depends(valid_plan_for_write)]


def plan_etag(plan: TreatmentPlan) -> str:
    return version_etag("plan", plan.id, plan.version)


def plan_response(plan: TreatmentPlan, response: Response) -> PlanOut:
    response.headers["ETag"] = plan_etag(plan)
    return views.plan_out(plan)


class PlanChange:
    """What an edit of a plan needs: the plan (loaded for writing), who changes it, and the
    request and response for `If-Match` and the new `ETag`."""

    def __init__(
        self,
        request: Request,
        response: Response,
        session: AuditedSession,
        principal: CanWritePlans,
        plan: WritablePlan,
    ) -> None:
        self.request, self.response = request, response
        self.session, self.principal, self.plan = session, principal, plan

    async def apply(
        self, change: Callable[..., Awaitable[TreatmentPlan]], **changes: Any
    ) -> PlanOut:
        """Checks `If-Match` first, then makes the change at the version the client saw."""
        require_if_match(self.request, plan_etag(self.plan))
        updated = await change(
            self.session,
            principal=self.principal,
            plan=self.plan,
            expected_version=self.plan.version,
            **changes,
        )
        return plan_response(updated, self.response)


PlanChangeDep = Annotated[PlanChange, Depends()]


class PlanDrafting:
    """What drafting a plan needs: who drafts it, and the `Idempotency-Key` under which the
    201 is stored so a retry replays it."""

    def __init__(
        self, request: Request, session: AuditedSession, principal: CanWritePlans, idem: Idem
    ) -> None:
        self.request, self.session, self.principal, self.idem = request, session, principal, idem

    async def created(
        self,
        draft: Callable[..., Awaitable[TreatmentPlan]],
        body: PlanCreate | RegenerateIn,
        **what: Any,
    ) -> Response:
        async def produce() -> PlanOut:
            plan = await draft(
                self.session,
                principal=self.principal,
                panel_ids=body.panel_ids,
                note=body.note,
                **what,
            )
            audit_target(self.request, resource_id=plan.id, patient_id=plan.patient_id)
            return views.plan_out(plan)

        return await self.idem.created(produce, location=_location, etag=_out_etag)


PlanDraftingDep = Annotated[PlanDrafting, Depends()]


def _location(out: PlanOut) -> str:
    return f"/api/v1/plans/{out.id}"


def _out_etag(out: PlanOut) -> str:
    return version_etag("plan", out.id, out.version)
