"""OpenAPI documentation of the plan routes: request examples and documented responses."""

from __future__ import annotations

from fastapi.openapi.models import Example

from app.idempotency.deps import IDEMPOTENCY_RESPONSES
from app.kit.problems import problem_doc

# OpenAPI `responses` entries (status → response object).
Responses = dict[int | str, dict[str, object]]

CREATE_RESPONSES: Responses = {
    **IDEMPOTENCY_RESPONSES,
    409: problem_doc(
        "No plan rule set is active, or a request with this Idempotency-Key is still in progress."
    ),
}
# A change to a plan: conditional (If-Match) and refused in some statuses.
CHANGE_RESPONSES: Responses = {
    412: problem_doc("The plan changed since your If-Match ETag was read."),
    428: problem_doc("If-Match is missing."),
    409: problem_doc(
        "Not allowed in the plan's status (`illegal-status-transition`, `plan-not-editable`) "
        "or blocking safety findings are unresolved (`blocking-findings`, listed in `findings`)."
    ),
}

ITEM_EXAMPLE = {
    "id": "clinician.walk",
    "category": "stress-management",
    "title": "Evening walk",
    "instruction": "Take a 20-minute walk after dinner, most days of the week.",
    "rationale": "Patient prefers activity-based stress relief; added at review.",
    "priority": 120,
}
SUPPLEMENT_EXAMPLE = {
    "id": "clinician.magnesium",
    "category": "supplement",
    "title": "Magnesium glycinate",
    "instruction": "Take one capsule with water in the evening.",
    "rationale": "Low serum magnesium; evening dose for sleep.",
    "analytes": ["magnesium"],
    "supplement": {
        "mineral": "magnesium",
        "form": "magnesium glycinate",
        "dose": 200,
        "doses_per_day": 1,
        "timing": "evening",
        "duration_days": 84,
    },
}

CREATE_EXAMPLES: dict[str, Example] = {
    "latest panels": {"value": {"note": "Initial plan after first visit"}},
    "chosen panels": {"value": {"panel_ids": ["0f8c6f7e-3a8e-4d0b-9a54-6a2f0d8b1c11"]}},
}
ITEMS_EXAMPLES: dict[str, Example] = {
    "add items": {
        "value": {
            "items": [SUPPLEMENT_EXAMPLE, ITEM_EXAMPLE],
            "reason": "Reviewed with the patient",
        }
    }
}
STATUS_EXAMPLES: dict[str, Example] = {
    "activate": {"value": {"status": "active"}},
    "activate with override": {
        "value": {
            "status": "active",
            "overrides": [
                {
                    "code": "contraindication:magnesium-kidney",
                    "reason": "Nephrology agreed to a low dose; weekly monitoring.",
                }
            ],
        }
    },
    "revoke": {"value": {"status": "revoked", "reason": "Patient declined"}},
}
REGENERATE_EXAMPLES: dict[str, Example] = {
    "same panels": {"value": {"note": "New rule set released"}}
}
