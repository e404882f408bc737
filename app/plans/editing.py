"""Editing a plan's items: the clinician's list replaces the plan's, the safety engine runs
again, and an active plan only takes an edit that leaves nothing blocking unresolved."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.domain.plans.document import next_retest
from app.models.plan import TreatmentPlan
from app.plans.errors import BlockingFindingsError, PlanNotEditableError
from app.plans.review import review
from app.plans.schemas import OverrideIn, PlanItemIn
from app.plans.service import EDITABLE, apply_change, article, dump_findings, merge_items


async def edit_items(
    session: AsyncSession,
    *,
    principal: Principal,
    plan: TreatmentPlan,
    expected_version: int,
    items: Sequence[PlanItemIn],
    overrides: Sequence[OverrideIn],
    reason: str | None,
) -> TreatmentPlan:
    """Replace the plan's items; the safety engine runs again. An active plan only accepts an
    edit that leaves no blocking finding unresolved."""
    if plan.status not in EDITABLE:
        raise PlanNotEditableError(f"{article(plan.status)} plan cannot be edited.")
    merged = merge_items(plan.document.items, items)
    verdict = await review(
        session, plan=plan, items=merged, new_overrides=overrides, principal=principal
    )
    if plan.status == "active" and verdict.open_findings:
        raise BlockingFindingsError(
            "This edit would leave blocking safety findings in an active plan.",
            findings=dump_findings(verdict.open_findings),
        )
    document = plan.document.model_copy(
        update={
            "items": tuple(merged),
            "findings": tuple(verdict.findings),
            "overrides": verdict.overrides,
            "basis": verdict.basis,
        }
    )
    return await apply_change(
        session,
        plan=plan,
        expected_version=expected_version,
        principal=principal,
        status=plan.status,
        change="items-edited",
        reason=reason,
        document=document,
        values={"next_retest_date": next_retest(merged)},
    )
