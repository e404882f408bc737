"""Moving a plan through its statuses, and the activation gate.

Activation re-runs the safety engine with the patient's current context and re-checks the
plan against the present (results that arrived since drafting, a review mark); it is refused
while a blocking finding is unresolved, and records who approved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.db import utcnow
from app.domain.plans import freshness
from app.domain.plans.document import AcknowledgedResult, PlanDocument, ReviewAcknowledged
from app.domain.plans.facts import PlanFacts, ResultFact
from app.domain.plans.items import PlanItem, SafetyFinding
from app.models.plan import TreatmentPlan
from app.plans import basis, repository
from app.plans.errors import (
    BlockingFindingsError,
    CannotAcknowledgeError,
    IllegalTransitionError,
    InvalidOverrideError,
    ReasonRequiredError,
)
from app.plans.repository import PlanChanges
from app.plans.review import review
from app.plans.schemas import StatusChange
from app.plans.service import apply_change, article, dump_findings

# Allowed status changes (FHIR CarePlan request statuses). Anything else is a 409.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "revoked", "entered-in-error"}),
    "active": frozenset({"completed", "revoked", "entered-in-error"}),
    "completed": frozenset({"entered-in-error"}),
    "revoked": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
}
NEEDS_REASON = frozenset({"revoked", "entered-in-error"})


def _check_request(plan: TreatmentPlan, request: StatusChange) -> None:
    status, reason = request.status, request.reason
    if status not in TRANSITIONS[plan.status]:
        allowed = sorted(TRANSITIONS[plan.status]) or ["none"]
        raise IllegalTransitionError(
            f"{article(plan.status)} plan cannot become {status}; allowed: {', '.join(allowed)}.",
            current_status=plan.status,
        )
    if status in NEEDS_REASON and not reason:
        raise ReasonRequiredError(
            f"Say why the plan is {status}.",
            errors=[{"field": "reason", "message": f"required for {status}"}],
        )
    if request.overrides and status != "active":
        raise InvalidOverrideError("Overrides are given when activating a plan.")
    if (request.acknowledge_results or request.acknowledge_review) and status != "active":
        raise CannotAcknowledgeError("Results and reviews are acknowledged when activating.")


async def change_status(
    session: AsyncSession,
    *,
    principal: Principal,
    plan: TreatmentPlan,
    expected_version: int,
    request: StatusChange,
) -> TreatmentPlan:
    _check_request(plan, request)
    status = request.status
    now = utcnow()
    document = plan.document
    values: PlanChanges = {"ended_at": now}
    if status == "active":
        document, values = await _activate(
            session, plan=plan, principal=principal, request=request, now=now
        )
    return await apply_change(
        session,
        plan=plan,
        expected_version=expected_version,
        principal=principal,
        status=status,
        change=f"status:{status}",
        reason=request.reason,
        document=document,
        values=values,
    )


def _blocking_error(
    open_findings: Sequence[SafetyFinding], present: Sequence[SafetyFinding]
) -> BlockingFindingsError:
    hints = []
    if any(f.overridable for f in open_findings):
        hints.append("override the overridable ones with a reason")
    if present:
        hints.append(
            "results arrived or changed since drafting: regenerate the plan, or "
            "acknowledge newer results where the finding allows it"
        )
    return BlockingFindingsError(
        f"{len(open_findings)} blocking safety finding(s) must be resolved first"
        + (f" ({'; '.join(hints)})." if hints else "."),
        findings=dump_findings(open_findings),
    )


async def _activate(
    session: AsyncSession,
    *,
    plan: TreatmentPlan,
    principal: Principal,
    request: StatusChange,
    now: datetime,
) -> tuple[PlanDocument, PlanChanges]:
    """The activated document and column changes, or 409 while anything blocks."""
    items = plan.document.items
    present = await _present(session, plan=plan, items=items, request=request, principal=principal)
    verdict = await review(
        session,
        plan=plan,
        items=items,
        new_overrides=request.overrides,
        principal=principal,
        extra=present.findings,
    )
    open_findings = [*verdict.open_findings, *present.findings]
    if open_findings:
        raise _blocking_error(open_findings, present.findings)
    values: PlanChanges = {"approver": principal.id, "activated_at": now}
    update: dict[str, object] = {
        "findings": tuple(verdict.findings),
        "overrides": verdict.overrides,
        "basis": verdict.basis,
        "approver_display": principal.label,
        "acknowledged_results": present.acknowledged,
    }
    if present.review_acknowledged is not None:
        update["review_acknowledged"] = present.review_acknowledged
        values["review_reason"] = None
    return plan.document.model_copy(update=update), values


@dataclass(frozen=True, slots=True)
class PresentCheck:
    """Activation's re-check against results that arrived after drafting."""

    findings: list[SafetyFinding]  # still blocking
    acknowledged: tuple[AcknowledgedResult, ...]  # every acknowledgement, earlier ones included
    review_acknowledged: ReviewAcknowledged | None


async def arrived_results(
    session: AsyncSession, *, plan: TreatmentPlan, facts: PlanFacts
) -> list[ResultFact]:
    """The patient's results not in the plan's basis, collected after it or stored after the
    plan was drafted (withdrawn results and cancelled panels left out)."""
    in_basis = {result.result_id for result in facts.results}
    latest = max((result.collected_at for result in facts.results), default=None)
    rows = await repository.results_since(
        session,
        organization_id=plan.organization_id,
        patient_id=plan.patient_id,
        collected_after=latest,
        received_after=plan.created_at,
    )
    return [
        basis.result_fact(result, panel) for result, panel in rows if str(result.id) not in in_basis
    ]


async def activation_blockers(session: AsyncSession, *, plan: TreatmentPlan) -> list[SafetyFinding]:
    """What activation would refuse today beyond the plan's own findings: results that
    arrived since drafting (new criticals, newer results not yet acknowledged) and a review
    mark. Empty for a plan that is no longer a draft."""
    if plan.status != "draft":
        return []
    facts = plan.document.basis.facts()
    arrived = await arrived_results(session, plan=plan, facts=facts)
    return freshness.check(
        facts,
        plan.document.items,
        arrived,
        acknowledged=plan.document.acknowledged_ids(),
        review_reason=plan.review_reason,
    )


def _refused_acknowledgement(rid: str, result: ResultFact | None) -> dict[str, str]:
    if result is not None and result.needs_urgent_action:
        message = (
            f"result {rid} is critical or possibly critical: it cannot be acknowledged; "
            "regenerate the plan"
        )
    else:
        message = f"result {rid} is not a newer result this plan's findings name"
    return {"field": "acknowledge_results", "message": message}


async def _present(
    session: AsyncSession,
    *,
    plan: TreatmentPlan,
    items: Sequence[PlanItem],
    request: StatusChange,
    principal: Principal,
) -> PresentCheck:
    """Re-check the plan against the present: new critical results (only a new draft
    resolves them), newer results for analytes it relies on (regenerate or acknowledge), and a
    review mark (a result it rests on was withdrawn or corrected)."""
    facts = plan.document.basis.facts()
    arrived = await arrived_results(session, plan=plan, facts=facts)
    earlier = plan.document.acknowledged_results
    earlier_ids = plan.document.acknowledged_ids()
    review_reason = plan.review_reason
    before = freshness.check(facts, items, arrived, acknowledged=earlier_ids)
    allowed = freshness.acknowledgeable(before)
    by_id = {result.result_id: result for result in arrived}
    wanted = [str(result_id) for result_id in dict.fromkeys(request.acknowledge_results)]
    refused = [rid for rid in wanted if rid not in allowed and rid not in earlier_ids]
    if refused:
        raise CannotAcknowledgeError(
            "Only newer, non-critical results named in a `newer-result` finding can be "
            "acknowledged; a new critical result needs a regenerated plan.",
            errors=[_refused_acknowledgement(rid, by_id.get(rid)) for rid in refused],
        )
    at = utcnow()
    acknowledged = earlier + tuple(
        AcknowledgedResult(
            result_id=rid,
            analyte=by_id[rid].analyte,
            reported=by_id[rid].reported,
            collected_at=by_id[rid].collected_at,
            by=principal.id,
            by_display=principal.label,
            at=at,
        )
        for rid in wanted
        if rid not in earlier_ids
    )
    review_acknowledged = None
    if request.acknowledge_review and review_reason:
        review_acknowledged = ReviewAcknowledged(
            reason=review_reason, by=principal.id, by_display=principal.label, at=at
        )
    findings = freshness.check(
        facts,
        items,
        arrived,
        acknowledged={entry.result_id for entry in acknowledged},
        review_reason=None if review_acknowledged is not None else review_reason,
    )
    return PresentCheck(findings, acknowledged, review_acknowledged)
