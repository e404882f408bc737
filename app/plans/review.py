"""Re-running the safety engine on a plan's items (on edit and activation), with the
patient's current context, and accepting clinicians' overrides of blocking findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.db import utcnow
from app.core.errors import NotFoundError
from app.domain.plans import safety
from app.domain.plans.document import Override, PlanBasis, open_findings
from app.domain.plans.items import PlanItem, SafetyFinding
from app.domain.plans.rules import RuleSetDocument
from app.models.plan import TreatmentPlan
from app.patients import service as patients
from app.plan_rules import repository as rule_set_repository
from app.plans.drafting import patient_facts
from app.plans.errors import InvalidOverrideError
from app.plans.schemas import OverrideIn


async def _rules_for(session: AsyncSession, plan: TreatmentPlan) -> RuleSetDocument:
    rule_set = await rule_set_repository.get(
        session, organization_id=plan.organization_id, rule_set_id=plan.rule_set_id
    )
    if rule_set is None:  # pragma: no cover - a foreign key keeps it
        raise NotFoundError("The plan's rule set is missing.")
    return rule_set.document


async def _recheck(
    session: AsyncSession, plan: TreatmentPlan, items: Sequence[PlanItem]
) -> tuple[list[SafetyFinding], PlanBasis]:
    """Safety findings for `items`, with the patient's current context and the plan's labs."""
    patient = await patients.get_or_raise(
        session, organization_id=plan.organization_id, patient_id=plan.patient_id
    )
    stored = plan.document.basis
    current, context_version = await patient_facts(session, patient=patient, today=utcnow().date())
    facts = stored.facts(patient=current)
    rules = await _rules_for(session, plan)
    drafting = plan.document.drafting_findings
    findings = list(safety.ordered([*safety.check(rules, facts, items), *drafting]))
    return findings, stored.with_patient(current, context_version=context_version)


@dataclass(frozen=True, slots=True)
class SafetyReview:
    """The safety engine's verdict on a plan's items, with the overrides that still apply."""

    findings: list[SafetyFinding]
    overrides: tuple[Override, ...]
    basis: PlanBasis
    open_findings: list[SafetyFinding]


def _refuse(
    refused: Sequence[tuple[int, OverrideIn]], hard: dict[str, SafetyFinding]
) -> InvalidOverrideError:
    messages = [
        (
            f"{o.code!r} is a hard stop and can never be overridden: {hard[o.code].message}"
            if o.code in hard
            else f"{o.code!r} is not a current blocking finding that allows an override"
        )
        for _, o in refused
    ]
    return InvalidOverrideError(
        "Only current blocking findings that allow an override can be overridden; "
        + " ".join(messages),
        errors=[
            {"field": f"overrides[{i}].code", "message": message}
            for (i, _), message in zip(refused, messages, strict=True)
        ],
    )


async def review(
    session: AsyncSession,
    *,
    plan: TreatmentPlan,
    items: Sequence[PlanItem],
    new_overrides: Sequence[OverrideIn],
    principal: Principal,
    extra: Sequence[SafetyFinding] = (),
) -> SafetyReview:
    """Re-run the safety engine, accept the new overrides (only for current blocking findings
    that allow one), keep the earlier overrides still relevant, and say what stays open.
    `extra`: other current findings (activation's re-check), named when refusing overrides."""
    findings, refreshed = await _recheck(session, plan, items)
    allowed = {f.code for f in findings if f.severity == "blocking" and f.overridable}
    refused = [(i, o) for i, o in enumerate(new_overrides) if o.code not in allowed]
    if refused:
        hard = {
            f.code: f for f in [*findings, *extra] if f.severity == "blocking" and not f.overridable
        }
        raise _refuse(refused, hard)
    now = utcnow()
    kept = {o.code: o for o in plan.document.overrides if o.code in allowed}
    for override in new_overrides:
        kept[override.code] = Override(
            code=override.code,
            reason=override.reason,
            by=principal.id,
            by_display=principal.label,
            at=now,
        )
    overrides = tuple(sorted(kept.values(), key=lambda o: o.code))
    return SafetyReview(findings, overrides, refreshed, open_findings(findings, overrides))
