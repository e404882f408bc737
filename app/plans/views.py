"""Plans as the API shows them: summaries, full plans grouped by category, printable pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from app.domain.plans.items import Category, PlanItem, SafetyFinding
from app.models.patient import Patient
from app.models.plan import TreatmentPlan
from app.plans.printable import PrintablePlan
from app.plans.schemas import FiredRuleOut, ItemGroup, OverrideOut, PlanOut, PlanSummary

# The summary fields read from the plan row as they are (the rest come from its document).
_SUMMARY_COLUMNS = (
    "id",
    "patient_id",
    "status",
    "version",
    "author",
    "approver",
    "created_at",
    "updated_at",
    "activated_at",
    "next_retest_date",
    "review_reason",
)


def plan_summary(plan: TreatmentPlan) -> PlanSummary:
    document = plan.document
    return PlanSummary(
        **{column: getattr(plan, column) for column in _SUMMARY_COLUMNS},
        rule_set=document.rule_set,
        item_count=len(document.items),
        blocking_findings=len(document.open_findings()),
    )


def groups(items: Sequence[PlanItem]) -> list[ItemGroup]:
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
    summary = plan_summary(plan)
    return PlanOut(
        **dict(summary),
        source_panel_ids=[uuid.UUID(panel_id) for panel_id in document.basis.panel_ids],
        replaces_plan_id=plan.replaces_plan_id,
        regenerated_from=document.regenerated_from,
        can_activate=summary.blocking_findings == 0 and not blockers,
        activation_blockers=list(blockers),
        groups=groups(document.items),
        findings=list(document.findings),
        overrides=[OverrideOut.model_validate(o, from_attributes=True) for o in document.overrides],
        fired_rules=[
            FiredRuleOut.model_validate(f, from_attributes=True) for f in document.fired_rules
        ],
        basis=document.basis,
        note=document.note,
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
        approved_by=plan.document.approver_display,
        items=list(plan.document.items),
        findings=list(plan.document.findings),
        clinic_name=clinic_name,
        clinic_contact=clinic_contact,
    )
