"""Plans as the API shows them: summaries, full plans grouped by category, printable pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain.plans.items import Category, PlanItem, SafetyFinding
from app.models.patient import Patient
from app.models.plan import TreatmentPlan
from app.plans.printable import PrintablePlan
from app.plans.schemas import ItemGroup, PlanOut, PlanSummary, RuleSetRef
from app.plans.service import findings_of, items_of, unresolved


def _summary_fields(
    plan: TreatmentPlan, findings: list[SafetyFinding] | None = None
) -> dict[str, Any]:
    """The summary of a plan; pass its parsed `findings` when the caller already has them."""
    if findings is None:
        findings = findings_of(plan.document)
    return {
        "id": plan.id,
        "patient_id": plan.patient_id,
        "status": plan.status,
        "version": plan.version,
        "rule_set": RuleSetRef.model_validate(plan.document["rule_set"]),
        "author": plan.author,
        "approver": plan.approver,
        "created_at": plan.created_at,
        "updated_at": plan.updated_at,
        "activated_at": plan.activated_at,
        "next_retest_date": plan.next_retest_date,
        "item_count": len(plan.document.get("items", ())),
        "blocking_findings": len(unresolved(findings, plan.document.get("overrides", ()))),
        "review_reason": plan.review_reason,
    }


def plan_summary(plan: TreatmentPlan) -> PlanSummary:
    return PlanSummary(**_summary_fields(plan))


def groups(items: list[PlanItem]) -> list[ItemGroup]:
    """Items by category: categories in the order of the plan's first item of each (so an
    urgent referral's group leads), items in plan order within a group."""
    order: list[Category] = []
    for item in items:
        if item.category not in order:
            order.append(item.category)
    return [
        ItemGroup(category=category, items=[i for i in items if i.category == category])
        for category in order
    ]


def plan_out(plan: TreatmentPlan, blockers: Sequence[SafetyFinding] = ()) -> PlanOut:
    """The plan; ``blockers``: what activation would refuse today beyond its own findings
    (results that arrived since drafting, a review mark), from ``service.activation_blockers``."""
    document = plan.document
    items = items_of(document)
    findings = findings_of(document)
    fields = _summary_fields(plan, findings)
    return PlanOut(
        **fields,
        source_panel_ids=document["basis"]["panel_ids"],
        replaces_plan_id=plan.replaces_plan_id,
        regenerated_from=document.get("regenerated_from"),
        can_activate=fields["blocking_findings"] == 0 and not blockers,
        activation_blockers=list(blockers),
        groups=groups(items),
        findings=findings,
        overrides=document.get("overrides", []),
        fired_rules=document.get("fired_rules", []),
        basis=document["basis"],
        note=document.get("note"),
    )


def printable(
    plan: TreatmentPlan,
    patient: Patient,
    *,
    clinic_name: str | None = None,
    clinic_contact: str | None = None,
) -> PrintablePlan:
    """The patient's page: their name (else their first identifier), the clinic from the
    settings, and the plan as approved."""
    identifiers = patient.identifiers
    name = patient.name
    return PrintablePlan(
        patient_label=name.text if name else (identifiers[0].value if identifiers else ""),
        birth_date=patient.birth_date,
        status=plan.status,
        version=plan.version,
        created_at=plan.created_at,
        activated_at=plan.activated_at,
        approved_by=plan.document.get("approver_display"),
        items=items_of(plan.document),
        findings=findings_of(plan.document),
        clinic_name=clinic_name,
        clinic_contact=clinic_contact,
    )
