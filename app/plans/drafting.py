"""Drafting a plan: choose the facts (panels, patient context, sleep), run the rule set, store
version 1. A generated plan is always a draft for a clinician to review."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.db import new_id, utcnow
from app.domain.plans import engine, safety
from app.domain.plans.context import usable_ratio
from app.domain.plans.document import (
    FiredRule,
    PlanBasis,
    PlanDocument,
    RegeneratedFrom,
    RuleSetRef,
    next_retest,
)
from app.domain.plans.facts import PatientFacts, PlanFacts
from app.models.patient import Patient
from app.models.plan import PlanRuleSet, TreatmentPlan
from app.patient_context import repository as context_repository
from app.patient_context import service as context_service
from app.patients import service as patients
from app.plan_rules import service as rule_sets
from app.plans import basis, repository
from app.plans.errors import NoResultsError, UnknownPanelsError
from app.plans.service import get_or_raise, version_row
from app.sleep import repository as sleep_repository
from app.sleep import service as sleep_service

# How far back the default panel choice looks, and how many panels it considers.
LOOKBACK_DAYS = 365
MAX_PANELS = 20


async def patient_facts(
    session: AsyncSession, *, patient: Patient, today: date
) -> tuple[PatientFacts, int | None]:
    context = await context_repository.current(
        session, organization_id=patient.organization_id, patient_id=patient.id
    )
    facts = context_service.patient_facts(patient, context, today=today)
    # Pregnancy not recorded stays unknown (None): the rule set's `pregnancy_unknown` policy
    # decides, cautiously, instead of reading it as "not pregnant".
    pregnant = context.pregnant if context is not None else None
    facts = replace(facts, pregnant=None if pregnant is None else bool(pregnant))
    return facts, (context.version if context is not None else None)


async def _facts(
    session: AsyncSession,
    *,
    patient: Patient,
    panel_ids: Sequence[uuid.UUID] | None,
    today: date,
) -> tuple[PlanFacts, int | None]:
    panels = await repository.panels_with_results(
        session,
        organization_id=patient.organization_id,
        patient_id=patient.id,
        panel_ids=panel_ids,
        collected_since=None if panel_ids else utcnow() - timedelta(days=LOOKBACK_DAYS),
        limit=MAX_PANELS,
    )
    if panel_ids:
        missing = sorted({str(i) for i in panel_ids} - {str(p.id) for p in panels})
        if missing:
            raise UnknownPanelsError(
                "These panels do not exist for this patient (or were cancelled).",
                errors=[{"field": "panel_ids", "message": f"unknown panel {m}"} for m in missing],
            )
    results, used = basis.latest_results(panels)
    if not results:
        raise NoResultsError(
            f"The patient has no lab results in the last {LOOKBACK_DAYS} days"
            if not panel_ids
            else "The chosen panels hold no results."
        )
    facts_of_patient, context_version = await patient_facts(session, patient=patient, today=today)
    sleep = await sleep_repository.latest(
        session, organization_id=patient.organization_id, patient_id=patient.id
    )
    facts = PlanFacts(
        patient=facts_of_patient,
        today=today,
        results=results,
        ratios=basis.latest_ratios(panels),
        sleep=sleep_service.sleep_fact(sleep) if sleep is not None else None,
        panel_ids=used,
    )
    return facts, context_version


def _rule_set_ref(rule_set: PlanRuleSet) -> RuleSetRef:
    return RuleSetRef(id=rule_set.id, name=rule_set.name, version=rule_set.version)


async def generate(
    session: AsyncSession,
    *,
    principal: Principal,
    patient_id: uuid.UUID,
    panel_ids: Sequence[uuid.UUID] | None,
    note: str | None,
    replaces: TreatmentPlan | None = None,
) -> TreatmentPlan:
    """Draft a plan from the active rule set and the chosen (default: latest) panels."""
    organization_id = principal.organization_id
    patient = await patients.get_or_raise(
        session, organization_id=organization_id, patient_id=patient_id
    )
    rule_set = await rule_sets.active_or_raise(session, organization_id=organization_id)
    rules = rule_set.document
    now = utcnow()
    facts, context_version = await _facts(
        session, patient=patient, panel_ids=panel_ids, today=now.date()
    )
    # Keep in the basis only ratios whose results were collected together (the rule set's
    # `ratio_window`): the plan shows exactly the ratios its rules could see.
    facts = replace(facts, ratios=tuple(r for r in facts.ratios if usable_ratio(rules, facts, r)))
    drafted = engine.draft(rules, facts)
    document = PlanDocument(
        rule_set=_rule_set_ref(rule_set),
        items=drafted.items,
        findings=safety.ordered([*safety.check(rules, facts, drafted.items), *drafted.omitted]),
        # What the engine left out and why (pregnancy, contradictions): shown with every
        # re-check of the plan.
        drafting_findings=drafted.omitted,
        overrides=(),
        fired_rules=tuple(
            FiredRule(rule_id=f.rule_id, description=f.description, findings=f.findings)
            for f in drafted.fired
        ),
        basis=PlanBasis.of(facts, context_version=context_version),
        note=note,
        author_display=principal.label,
        approver_display=None,
        regenerated_from=(
            RegeneratedFrom(plan_id=replaces.id, rule_set=replaces.document.rule_set)
            if replaces is not None
            else None
        ),
    )
    plan = TreatmentPlan(
        id=new_id(),
        organization_id=organization_id,
        patient_id=patient.id,
        status="draft",
        version=1,
        rule_set_id=rule_set.id,
        replaces_plan_id=replaces.id if replaces is not None else None,
        author=principal.id,
        approver=None,
        next_retest_date=next_retest(drafted.items),
        document=document,
        created_at=now,
        updated_at=now,
    )
    change = "regenerated" if replaces is not None else "generated"
    await repository.add(
        session,
        plan,
        version_row(
            plan,
            version=1,
            status="draft",
            change=change,
            reason=note,
            principal=principal,
            document=document,
        ),
    )
    return plan


async def regenerate(
    session: AsyncSession,
    *,
    principal: Principal,
    plan_id: uuid.UUID,
    panel_ids: Sequence[uuid.UUID] | None,
    note: str | None,
) -> TreatmentPlan:
    """A new draft from the active rule set and (default) the patient's latest results, so it
    sees results that arrived since the old plan; the plan it replaces is left as it is."""
    old = await get_or_raise(session, organization_id=principal.organization_id, plan_id=plan_id)
    return await generate(
        session,
        principal=principal,
        patient_id=old.patient_id,
        panel_ids=panel_ids or None,
        note=note,
        replaces=old,
    )
