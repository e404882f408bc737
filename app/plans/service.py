"""Treatment plans: draft from rules, edit, move through statuses; every change is a version.

A generated plan is always a draft for a clinician to review: activation needs every blocking
safety finding resolved or (where allowed) overridden with a reason, and records who approved.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.concurrency import PreconditionFailedError
from app.db import utcnow
from app.domain.plans import engine, freshness, safety
from app.domain.plans.context import usable_ratio
from app.domain.plans.facts import PatientFacts, PlanFacts, ResultFact
from app.domain.plans.items import PlanItem, SafetyFinding
from app.domain.plans.rules import RuleSetDocument
from app.errors import ConflictError, NotFoundError, UnprocessableError
from app.models.patient import Patient
from app.models.plan import PlanRuleSet, TreatmentPlan, TreatmentPlanVersion
from app.pagination import decode_cursor, decode_keyset, encode_cursor, encode_keyset
from app.patient_context import repository as context_repository
from app.patient_context import service as context_service
from app.patients import service as patients
from app.plan_rules import repository as rule_set_repository
from app.plan_rules import service as rule_sets
from app.plans import basis, repository
from app.plans.schemas import (
    DraftDue,
    DraftsSection,
    OverrideIn,
    PlanItemIn,
    RetestDue,
    RetestsSection,
    WorklistOut,
)
from app.results.labels import patient_labels
from app.schemas_common import IdentifierOut
from app.sleep import repository as sleep_repository
from app.sleep import service as sleep_service

# Allowed status changes (FHIR CarePlan request statuses). Anything else is a 409.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "revoked", "entered-in-error"}),
    "active": frozenset({"completed", "revoked", "entered-in-error"}),
    "completed": frozenset({"entered-in-error"}),
    "revoked": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
}
NEEDS_REASON = frozenset({"revoked", "entered-in-error"})
EDITABLE = frozenset({"draft", "active"})
# How far back the default panel choice looks, and how many panels it considers.
LOOKBACK_DAYS = 365
MAX_PANELS = 20


class IllegalTransitionError(ConflictError):
    type_slug = "illegal-status-transition"
    title = "This status change is not allowed"


class PlanNotEditableError(ConflictError):
    type_slug = "plan-not-editable"
    title = "The plan can no longer be edited"


class BlockingFindingsError(ConflictError):
    type_slug = "blocking-findings"
    title = "Blocking safety findings are unresolved"


class NoResultsError(UnprocessableError):
    type_slug = "no-results"
    title = "No lab results to draft a plan from"


class UnknownPanelsError(UnprocessableError):
    type_slug = "unknown-panels"
    title = "Some panels are not this patient's"


class InvalidOverrideError(UnprocessableError):
    type_slug = "invalid-override"
    title = "An override does not match an overridable blocking finding"


class CannotAcknowledgeError(UnprocessableError):
    type_slug = "cannot-acknowledge"
    title = "These results cannot be acknowledged"


class ReasonRequiredError(UnprocessableError):
    type_slug = "reason-required"
    title = "A reason is required"


async def get_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID
) -> TreatmentPlan:
    plan = await repository.get(session, organization_id=organization_id, plan_id=plan_id)
    if plan is None:
        raise NotFoundError("No treatment plan with this id.")
    return plan


async def _patient_facts(
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
    patient_facts, context_version = await _patient_facts(session, patient=patient, today=today)
    sleep = await sleep_repository.latest(
        session, organization_id=patient.organization_id, patient_id=patient.id
    )
    facts = PlanFacts(
        patient=patient_facts,
        today=today,
        results=results,
        ratios=basis.latest_ratios(panels),
        sleep=sleep_service.sleep_fact(sleep) if sleep is not None else None,
        panel_ids=used,
    )
    return facts, context_version


def _rule_set_ref(rule_set: PlanRuleSet) -> dict[str, Any]:
    return {"id": str(rule_set.id), "name": rule_set.name, "version": rule_set.version}


unresolved = safety.unresolved  # blocking findings no (allowed) override resolves


def _next_retest(items: Sequence[PlanItem]) -> date | None:
    dates = [item.retest.due_date for item in items if item.retest is not None]
    return min(dates) if dates else None


def _dump(models: Sequence[PlanItem | SafetyFinding]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json", exclude_none=True) for m in models]


def items_of(document: dict[str, Any]) -> list[PlanItem]:
    return [PlanItem.model_validate(item) for item in document.get("items", ())]


def findings_of(document: dict[str, Any]) -> list[SafetyFinding]:
    return [SafetyFinding.model_validate(f) for f in document.get("findings", ())]


def drafting_findings_of(document: dict[str, Any]) -> list[SafetyFinding]:
    return [SafetyFinding.model_validate(f) for f in document.get("drafting_findings", ())]


def _version_row(
    plan: TreatmentPlan,
    *,
    version: int,
    status: str,
    change: str,
    reason: str | None,
    principal: Principal,
    document: dict[str, Any],
) -> TreatmentPlanVersion:
    return TreatmentPlanVersion(
        id=uuid.uuid4(),
        organization_id=plan.organization_id,
        plan_id=plan.id,
        version=version,
        status=status,
        change=change,
        reason=reason,
        changed_by=principal.id,
        changed_at=utcnow(),
        document=document,
    )


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
    rules = rule_sets.document_of(rule_set)
    now = utcnow()
    facts, context_version = await _facts(
        session, patient=patient, panel_ids=panel_ids, today=now.date()
    )
    # Keep in the basis only ratios whose results were collected together (the rule set's
    # `ratio_window`): the plan shows exactly the ratios its rules could see.
    facts = replace(facts, ratios=tuple(r for r in facts.ratios if usable_ratio(rules, facts, r)))
    drafted = engine.draft(rules, facts)
    findings = safety.ordered([*safety.check(rules, facts, drafted.items), *drafted.omitted])
    document: dict[str, Any] = {
        "rule_set": _rule_set_ref(rule_set),
        "items": _dump(drafted.items),
        "findings": _dump(findings),
        # What the engine left out and why (pregnancy, contradictions): shown with every
        # re-check of the plan.
        "drafting_findings": _dump(drafted.omitted),
        "overrides": [],
        "fired_rules": [
            {"rule_id": f.rule_id, "description": f.description, "findings": list(f.findings)}
            for f in drafted.fired
        ],
        "basis": basis.to_json(facts, context_version=context_version),
        "note": note,
        "author_display": principal.label,
        "approver_display": None,
    }
    if replaces is not None:
        previous = replaces.document["rule_set"]
        document["regenerated_from"] = {"plan_id": str(replaces.id), "rule_set": previous}
    plan = TreatmentPlan(
        id=uuid.uuid4(),
        organization_id=organization_id,
        patient_id=patient.id,
        status="draft",
        version=1,
        rule_set_id=rule_set.id,
        replaces_plan_id=replaces.id if replaces is not None else None,
        author=principal.id,
        approver=None,
        next_retest_date=_next_retest(drafted.items),
        document=document,
        created_at=now,
        updated_at=now,
    )
    change = "regenerated" if replaces is not None else "generated"
    await repository.add(
        session,
        plan,
        _version_row(
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


async def _rules_for(session: AsyncSession, plan: TreatmentPlan) -> RuleSetDocument:
    rule_set = await rule_set_repository.get(
        session, organization_id=plan.organization_id, rule_set_id=plan.rule_set_id
    )
    if rule_set is None:  # pragma: no cover - a foreign key keeps it
        raise NotFoundError("The plan's rule set is missing.")
    return rule_sets.document_of(rule_set)


async def _recheck(
    session: AsyncSession, plan: TreatmentPlan, items: Sequence[PlanItem]
) -> tuple[list[SafetyFinding], dict[str, Any]]:
    """Safety findings for `items`, with the patient's current context and the plan's labs."""
    patient = await patients.get_or_raise(
        session, organization_id=plan.organization_id, patient_id=plan.patient_id
    )
    stored = plan.document["basis"]
    patient_facts, context_version = await _patient_facts(
        session, patient=patient, today=utcnow().date()
    )
    facts = basis.from_json(stored, patient=patient_facts)
    rules = await _rules_for(session, plan)
    findings = list(
        safety.ordered([*safety.check(rules, facts, items), *drafting_findings_of(plan.document)])
    )
    refreshed = {
        **stored,
        "patient": basis.to_json(facts, context_version=context_version)["patient"],
        "context_version": context_version,
    }
    return findings, refreshed


@dataclass(frozen=True, slots=True)
class SafetyReview:
    """The safety engine's verdict on a plan's items, with the overrides that still apply."""

    findings: list[SafetyFinding]
    overrides: list[dict[str, Any]]
    basis: dict[str, Any]
    open_findings: list[SafetyFinding]


async def _review(
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
        messages = [
            (
                f"{o.code!r} is a hard stop and can never be overridden: {hard[o.code].message}"
                if o.code in hard
                else f"{o.code!r} is not a current blocking finding that allows an override"
            )
            for _, o in refused
        ]
        raise InvalidOverrideError(
            "Only current blocking findings that allow an override can be overridden; "
            + " ".join(messages),
            errors=[
                {"field": f"overrides[{i}].code", "message": message}
                for (i, _), message in zip(refused, messages, strict=True)
            ],
        )
    now = utcnow().isoformat()
    kept = {o["code"]: o for o in plan.document.get("overrides", ()) if o["code"] in allowed}
    for override in new_overrides:
        kept[override.code] = {
            "code": override.code,
            "reason": override.reason,
            "by": principal.id,
            "by_display": principal.label,
            "at": now,
        }
    overrides = sorted(kept.values(), key=lambda o: o["code"])
    return SafetyReview(findings, overrides, refreshed, unresolved(findings, overrides))


def _a(status: str) -> str:
    """`A draft` / `An active`: the status with its article, for messages."""
    return f"{'An' if status[0] in 'aeiou' else 'A'} {status}"


def merge_items(current: Sequence[PlanItem], edits: Sequence[PlanItemIn]) -> list[PlanItem]:
    """The clinician's list, keeping server-owned provenance (rule, template, source) of items
    that already existed; new items are the clinician's own."""
    by_id = {item.id: item for item in current}
    merged = []
    for edit in edits:
        old = by_id.get(edit.id)
        data = edit.model_dump()
        if old is not None:
            data.update(rule_id=old.rule_id, template_id=old.template_id)
            data["source"] = data.get("source") or old.source
            # A drafted restriction ("stop extra magnesium") cannot be edited away silently.
            data["effects"] = [
                effect.model_dump() for effect in dict.fromkeys([*old.effects, *edit.effects])
            ]
        merged.append(PlanItem.model_validate(data))
    return merged


async def _apply(
    session: AsyncSession,
    *,
    plan: TreatmentPlan,
    expected_version: int,
    principal: Principal,
    status: str,
    change: str,
    reason: str | None,
    document: dict[str, Any],
    values: dict[str, Any],
) -> TreatmentPlan:
    version = _version_row(
        plan,
        version=expected_version + 1,
        status=status,
        change=change,
        reason=reason,
        principal=principal,
        document=document,
    )
    won = await repository.update_if_version(
        session,
        plan_id=plan.id,
        expected_version=expected_version,
        values={"status": status, "document": document, "updated_at": utcnow(), **values},
        version=version,
    )
    if not won:
        raise PreconditionFailedError(
            "The plan was changed by someone else; read it again and reapply your change."
        )
    organization_id, plan_id = plan.organization_id, plan.id
    session.expire_all()
    return await get_or_raise(session, organization_id=organization_id, plan_id=plan_id)


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
        raise PlanNotEditableError(f"{_a(plan.status)} plan cannot be edited.")
    merged = merge_items(items_of(plan.document), items)
    review = await _review(
        session, plan=plan, items=merged, new_overrides=overrides, principal=principal
    )
    if plan.status == "active" and review.open_findings:
        raise BlockingFindingsError(
            "This edit would leave blocking safety findings in an active plan.",
            findings=_dump(review.open_findings),
        )
    document = {
        **plan.document,
        "items": _dump(merged),
        "findings": _dump(review.findings),
        "overrides": review.overrides,
        "basis": review.basis,
    }
    return await _apply(
        session,
        plan=plan,
        expected_version=expected_version,
        principal=principal,
        status=plan.status,
        change="items-edited",
        reason=reason,
        document=document,
        values={"next_retest_date": _next_retest(merged)},
    )


async def change_status(
    session: AsyncSession,
    *,
    principal: Principal,
    plan: TreatmentPlan,
    expected_version: int,
    status: str,
    reason: str | None,
    overrides: Sequence[OverrideIn],
    acknowledge_results: Sequence[uuid.UUID] = (),
    acknowledge_review: bool = False,
) -> TreatmentPlan:
    if status not in TRANSITIONS[plan.status]:
        allowed = sorted(TRANSITIONS[plan.status]) or ["none"]
        raise IllegalTransitionError(
            f"{_a(plan.status)} plan cannot become {status}; allowed: {', '.join(allowed)}.",
            current_status=plan.status,
        )
    if status in NEEDS_REASON and not reason:
        raise ReasonRequiredError(
            f"Say why the plan is {status}.",
            errors=[{"field": "reason", "message": f"required for {status}"}],
        )
    if overrides and status != "active":
        raise InvalidOverrideError("Overrides are given when activating a plan.")
    if (acknowledge_results or acknowledge_review) and status != "active":
        raise CannotAcknowledgeError("Results and reviews are acknowledged when activating.")
    document = dict(plan.document)
    values: dict[str, Any] = {}
    now = utcnow()
    if status == "active":
        items = items_of(plan.document)
        present = await _present(
            session,
            plan=plan,
            items=items,
            acknowledge_results=acknowledge_results,
            acknowledge_review=acknowledge_review,
            principal=principal,
        )
        review = await _review(
            session,
            plan=plan,
            items=items,
            new_overrides=overrides,
            principal=principal,
            extra=present.findings,
        )
        open_findings = [*review.open_findings, *present.findings]
        if open_findings:
            hints = []
            if any(f.overridable for f in open_findings):
                hints.append("override the overridable ones with a reason")
            if present.findings:
                hints.append(
                    "results arrived or changed since drafting: regenerate the plan, or "
                    "acknowledge newer results where the finding allows it"
                )
            raise BlockingFindingsError(
                f"{len(open_findings)} blocking safety finding(s) must be resolved first"
                + (f" ({'; '.join(hints)})." if hints else "."),
                findings=_dump(open_findings),
            )
        document.update(
            findings=_dump(review.findings),
            overrides=review.overrides,
            basis=review.basis,
            approver_display=principal.label,
        )
        if present.acknowledged:
            document["acknowledged_results"] = present.acknowledged
        if present.review_acknowledged is not None:
            document["review_acknowledged"] = present.review_acknowledged
            values["review_reason"] = None
        values.update(approver=principal.id, activated_at=now)
    else:
        values["ended_at"] = now
    return await _apply(
        session,
        plan=plan,
        expected_version=expected_version,
        principal=principal,
        status=status,
        change=f"status:{status}",
        reason=reason,
        document=document,
        values=values,
    )


@dataclass(frozen=True, slots=True)
class PresentCheck:
    """Activation's re-check against results that arrived after drafting."""

    findings: list[SafetyFinding]  # still blocking
    acknowledged: list[dict[str, Any]]  # every acknowledgement, earlier ones included
    review_acknowledged: dict[str, Any] | None


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
        withdrawn=sorted(basis.WITHDRAWN_RESULT_STATUSES),
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
    facts = basis.from_json(plan.document["basis"])
    arrived = await arrived_results(session, plan=plan, facts=facts)
    acknowledged = {entry["result_id"] for entry in plan.document.get("acknowledged_results", ())}
    items = items_of(plan.document)
    return freshness.check(
        facts, items, arrived, acknowledged=acknowledged, review_reason=plan.review_reason
    )


async def _present(
    session: AsyncSession,
    *,
    plan: TreatmentPlan,
    items: Sequence[PlanItem],
    acknowledge_results: Sequence[uuid.UUID],
    acknowledge_review: bool,
    principal: Principal,
) -> PresentCheck:
    """Re-check the plan against the present: new critical results (only a new draft
    resolves them), newer results for analytes it relies on (regenerate or acknowledge), and a
    review mark (a result it rests on was withdrawn or corrected)."""
    facts = basis.from_json(plan.document["basis"])
    arrived = await arrived_results(session, plan=plan, facts=facts)
    earlier = list(plan.document.get("acknowledged_results", ()))
    earlier_ids = {entry["result_id"] for entry in earlier}
    review_reason = plan.review_reason
    before = freshness.check(facts, items, arrived, acknowledged=earlier_ids)
    allowed = freshness.acknowledgeable(before)
    by_id = {result.result_id: result for result in arrived}
    wanted = [str(result_id) for result_id in dict.fromkeys(acknowledge_results)]
    refused = [rid for rid in wanted if rid not in allowed and rid not in earlier_ids]
    if refused:
        errors = []
        for rid in refused:
            result = by_id.get(rid)
            if result is not None and result.needs_urgent_action:
                message = (
                    f"result {rid} is critical or possibly critical: it cannot be acknowledged; "
                    "regenerate the plan"
                )
            else:
                message = f"result {rid} is not a newer result this plan's findings name"
            errors.append({"field": "acknowledge_results", "message": message})
        raise CannotAcknowledgeError(
            "Only newer, non-critical results named in a `newer-result` finding can be "
            "acknowledged; a new critical result needs a regenerated plan.",
            errors=errors,
        )
    at = utcnow().isoformat()
    acknowledged = earlier + [
        {
            "result_id": rid,
            "analyte": by_id[rid].analyte,
            "reported": by_id[rid].reported,
            "collected_at": by_id[rid].collected_at.isoformat(),
            "by": principal.id,
            "by_display": principal.label,
            "at": at,
        }
        for rid in wanted
        if rid not in earlier_ids
    ]
    review_acknowledged = None
    if acknowledge_review and review_reason:
        review_acknowledged = {
            "reason": review_reason,
            "by": principal.id,
            "by_display": principal.label,
            "at": at,
        }
    findings = freshness.check(
        facts,
        items,
        arrived,
        acknowledged={entry["result_id"] for entry in acknowledged},
        review_reason=None if review_acknowledged is not None else review_reason,
    )
    return PresentCheck(findings, acknowledged, review_acknowledged)


async def versions(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID
) -> Sequence[TreatmentPlanVersion]:
    await get_or_raise(session, organization_id=organization_id, plan_id=plan_id)
    return await repository.versions(session, organization_id=organization_id, plan_id=plan_id)


async def version_or_raise(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID, version: int
) -> TreatmentPlanVersion:
    row = await repository.get_version(
        session, organization_id=organization_id, plan_id=plan_id, version=version
    )
    if row is None:
        await get_or_raise(session, organization_id=organization_id, plan_id=plan_id)
        raise NotFoundError(f"The plan has no version {version}.")
    return row


# --- the clinician worklist --------------------------------------------------------------------


async def worklist(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    due_within_days: int,
    limit: int,
    drafts_cursor: str | None,
    retests_cursor: str | None,
) -> WorklistOut:
    """Drafts awaiting review (oldest first) and the retests due in active plans (earliest
    first), each section with its own total (drafts: plans; retests: retest items, not plans)
    and cursor, each row naming its patient (first MRN, and name where recorded)."""
    from app.plans import views as plan_views  # views imports this module

    today = utcnow().date()
    due_by = today + timedelta(days=due_within_days)
    drafts, drafts_total = await repository.drafts(
        session,
        organization_id=organization_id,
        limit=limit + 1,
        after=decode_cursor(drafts_cursor) if drafts_cursor else None,
    )
    draft_page = list(drafts[:limit])
    drafts_next = (
        encode_cursor(draft_page[-1].created_at, draft_page[-1].id) if len(drafts) > limit else None
    )
    due: list[tuple[date, str, str, TreatmentPlan, PlanItem]] = []
    for plan in await repository.retests_due(
        session, organization_id=organization_id, due_by=due_by
    ):
        for item in items_of(plan.document):
            if item.retest is not None and item.retest.due_date <= due_by:
                due.append((item.retest.due_date, str(plan.id), item.id, plan, item))
    due.sort(key=lambda entry: entry[:3])
    retests_total = len(due)
    if retests_cursor:
        day, plan_id, item_id = decode_keyset(retests_cursor, 3)
        key = (day, plan_id, item_id)
        due = [entry for entry in due if (entry[0].isoformat(), entry[1], entry[2]) > key]
    retest_page = due[:limit]
    retests_next = (
        encode_keyset(retest_page[-1][0].isoformat(), retest_page[-1][1], retest_page[-1][2])
        if len(due) > limit
        else None
    )
    labels = await patient_labels(
        session,
        organization_id=organization_id,
        patient_ids=[p.patient_id for p in draft_page] + [e[3].patient_id for e in retest_page],
    )

    def who(patient_id: uuid.UUID) -> dict[str, Any]:
        label = labels.get(patient_id)
        if label is None:
            return {}
        identifier = (
            IdentifierOut(system=label.identifier_system, value=label.identifier_value)
            if label.identifier_system is not None and label.identifier_value is not None
            else None
        )
        return {"patient_identifier": identifier, "patient_name": label.name}

    return WorklistOut(
        as_of=today,
        due_by=due_by,
        drafts=DraftsSection(
            total=drafts_total,
            truncated=drafts_next is not None,
            next_cursor=drafts_next,
            items=[
                DraftDue(**plan_views.plan_summary(p).model_dump(), **who(p.patient_id))
                for p in draft_page
            ],
        ),
        retests_due=RetestsSection(
            total=retests_total,
            truncated=retests_next is not None,
            next_cursor=retests_next,
            items=[
                RetestDue(
                    plan_id=plan.id,
                    patient_id=plan.patient_id,
                    item_id=item.id,
                    title=item.title,
                    analytes=list(item.retest.analytes),
                    due_date=day,
                    overdue=day < today,
                    **who(plan.patient_id),
                )
                for day, _, _, plan, item in retest_page
                if item.retest is not None
            ],
        ),
    )
