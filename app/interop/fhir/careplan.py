"""Treatment plans as FHIR R4 CarePlans: one activity per plan item.

Supplements become MedicationRequest-kind activities with their elemental daily amount,
diet items NutritionOrder, retests and referrals ServiceRequest (a retest's due date is the end
of its scheduled period); the other categories carry no kind. Each activity names the results
behind it (`reasonReference` to Observations) and the plan the panels it was drafted from
(`supportingInfo` to DiagnosticReports)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.careplan import CarePlan

from app.domain.plans.items import Category, PlanItem
from app.interop.fhir.terminology import PLAN_CATEGORY_SYSTEM, PLAN_RULE_SYSTEM, UCUM
from app.models.plan import TreatmentPlan

# Plan status → the status of its activities (CarePlan.activity.detail.status).
_ACTIVITY_STATUS = {
    "draft": "not-started",
    "active": "in-progress",
    "completed": "completed",
    "revoked": "cancelled",
    "entered-in-error": "entered-in-error",
}
_KIND = {
    Category.SUPPLEMENT: "MedicationRequest",
    Category.DIET: "NutritionOrder",
    Category.RETEST: "ServiceRequest",
    Category.REFERRAL: "ServiceRequest",
}


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, [], {})}


def _activity(item: PlanItem, plan_status: str, results: dict[str, str]) -> dict[str, Any]:
    coding = [{"system": PLAN_CATEGORY_SYSTEM, "code": item.category.value}]
    if item.rule_id:
        coding.append({"system": PLAN_RULE_SYSTEM, "code": item.rule_id})
    detail: dict[str, Any] = {
        "kind": _KIND.get(item.category),
        "code": {"coding": coding, "text": item.title},
        "status": _ACTIVITY_STATUS[plan_status],
        "description": item.instruction,
        "reasonCode": [{"text": item.rationale}],
        "reasonReference": [
            {"reference": f"Observation/{results[a]}"} for a in item.analytes if a in results
        ],
    }
    if item.supplement is not None:
        supplement = item.supplement
        detail["productCodeableConcept"] = {"text": supplement.form}
        detail["dailyAmount"] = {
            "value": supplement.daily_amount,
            "unit": "mg",
            "system": UCUM,
            "code": "mg",
        }
        duration = f", for {supplement.duration_days} days" if supplement.duration_days else ""
        detail["scheduledString"] = (
            f"{supplement.dose} mg {supplement.doses_per_day}x daily, {supplement.timing}{duration}"
        )
    elif item.retest is not None:
        detail["scheduledPeriod"] = {"end": item.retest.due_date.isoformat()}
    elif item.herbal is not None:
        detail["productCodeableConcept"] = {"text": item.herbal.name}
        detail["scheduledString"] = item.herbal.timing
    elif item.referral is not None:
        detail["performer"] = [{"display": item.referral.to}]
    return {"detail": _compact(detail)}


def care_plan_resource(plan: TreatmentPlan) -> CarePlan:
    document = plan.document
    basis = document.basis
    results = {r.analyte: r.result_id for r in basis.results}
    rule_set = document.rule_set
    notes: list[dict[str, object]] = [{"text": document.note}] if document.note else []
    for override in document.overrides:
        notes.append(
            {
                "text": f"Safety finding {override.code} overridden: {override.reason}",
                "time": override.at.isoformat(),
            }
        )
    return CarePlan.model_validate(
        _compact(
            {
                "resourceType": "CarePlan",
                "id": str(plan.id),
                "meta": {"versionId": str(plan.version), "lastUpdated": plan.updated_at},
                "status": plan.status,
                "intent": "plan",
                "title": "Mineral balance and sleep plan",
                "description": (
                    f"Drafted from plan rule set {rule_set.name} version {rule_set.version}."
                ),
                "subject": {"reference": f"Patient/{plan.patient_id}"},
                "created": plan.created_at,
                "period": _compact({"start": plan.activated_at, "end": plan.ended_at}) or None,
                "author": {"display": document.author_display or plan.author},
                "supportingInfo": [
                    {"reference": f"DiagnosticReport/{panel_id}"} for panel_id in basis.panel_ids
                ],
                "replaces": (
                    [{"reference": f"CarePlan/{plan.replaces_plan_id}"}]
                    if plan.replaces_plan_id
                    else None
                ),
                "activity": [_activity(item, plan.status, results) for item in document.items],
                "note": notes,
            }
        )
    )
