from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from app.domain.plans.document import PlanBasis, PlanDocument, RegeneratedFrom, RuleSetRef
from app.domain.plans.items import (
    Category,
    Herbal,
    MineralEffect,
    PlanItem,
    Referral,
    Retest,
    SafetyFinding,
    Supplement,
    Text,
)
from app.kit.pagination import Page
from app.kit.schemas_common import IdentifierOut, InputModel, OutputModel

PlanStatus = Literal["draft", "active", "completed", "revoked", "entered-in-error"]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]

# Which detail each category carries (and no other).
_DETAIL_FOR = {
    Category.SUPPLEMENT: "supplement",
    Category.HERBAL: "herbal",
    Category.RETEST: "retest",
    Category.REFERRAL: "referral",
}


def _panel_ids(description: str) -> Any:
    """The panels a plan is drafted from: up to 20, or none given for the default."""
    return Field(default=None, min_length=1, max_length=20, description=description)


class PlanCreate(InputModel):
    panel_ids: list[uuid.UUID] | None = _panel_ids(
        "Panels to draft from; the latest result of each analyte among them is "
        "used. Default: the patient's panels of the last 365 days."
    )
    note: Reason | None = Field(default=None, description="Why the plan is drafted.")


class PlanItemIn(InputModel):
    """An item as a clinician writes it. Rule provenance (`rule_id`, `template_id`) is kept by
    the server for items that already exist (same `id`); new ids are the clinician's own."""

    id: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")]
    category: Category
    title: Annotated[str, Field(min_length=1, max_length=200)]
    instruction: Text = Field(description="For the patient, in plain language.")
    rationale: Text = Field(description="For the clinician: why this item is in the plan.")
    analytes: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(
        default_factory=list, max_length=10
    )
    priority: int = Field(default=100, ge=0, le=1000, description="Lower comes first.")
    supplement: Supplement | None = None
    herbal: Herbal | None = None
    retest: Retest | None = None
    referral: Referral | None = None
    source: Annotated[str, Field(max_length=1000)] | None = None
    effects: list[MineralEffect] = Field(
        default_factory=list,
        max_length=10,
        description="For a new item: what it does to mineral intake (`increases`, "
        "`no-supplements`, `restricts`). An existing item keeps the effects it was drafted "
        "with. A plan whose items contradict each other about one mineral cannot be activated.",
    )

    @model_validator(mode="after")
    def _detail_matches_category(self) -> PlanItemIn:
        wanted = _DETAIL_FOR.get(self.category)
        for name in ("supplement", "herbal", "retest", "referral"):
            present = getattr(self, name) is not None
            if name == wanted and not present:
                raise ValueError(f"a {self.category.value} item needs `{name}`")
            if name != wanted and present:
                raise ValueError(f"`{name}` belongs only on {name} items")
        return self


class OverrideIn(InputModel):
    code: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="The code of a blocking finding that allows an override."
    )
    reason: Reason = Field(description="Why the clinician accepts the risk (recorded).")


class ItemsUpdate(InputModel):
    items: list[PlanItemIn] = Field(max_length=100)
    overrides: list[OverrideIn] = Field(default_factory=list, max_length=50)
    reason: Reason | None = Field(default=None, description="Why the plan was edited.")

    @model_validator(mode="after")
    def _distinct_ids(self) -> ItemsUpdate:
        ids = [item.id for item in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids must be distinct")
        return self


class StatusChange(InputModel):
    status: PlanStatus
    reason: Reason | None = Field(
        default=None, description="Required for `revoked` and `entered-in-error`."
    )
    overrides: list[OverrideIn] = Field(
        default_factory=list,
        max_length=50,
        description="When activating: overrides for blocking findings that allow one.",
    )
    acknowledge_results: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=50,
        description="When activating: ids of results that arrived after the plan was drafted "
        "(named in `newer-result:<analyte>` findings) that the clinician has reviewed and "
        "accepts; recorded in the plan version. A critical or possibly critical result cannot "
        "be acknowledged: regenerate the plan.",
    )
    acknowledge_review: bool = Field(
        default=False,
        description="When activating a plan marked for review (a result it rests on was "
        "withdrawn or corrected): the clinician has reviewed it; recorded in the plan version.",
    )


class RegenerateIn(InputModel):
    panel_ids: list[uuid.UUID] | None = _panel_ids(
        "Panels to draft from; default: the patient's latest panels (as for a new "
        "plan), so a regenerated plan sees results that arrived since."
    )
    note: Reason | None = None


class ItemGroup(OutputModel):
    category: Category
    items: list[PlanItem]


class OverrideOut(OutputModel):
    code: str
    reason: str
    by: str
    by_display: str | None = None
    at: datetime


class FiredRuleOut(OutputModel):
    rule_id: str
    description: str
    findings: list[str]


class PlanSummary(OutputModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    status: PlanStatus
    version: int
    rule_set: RuleSetRef
    author: str
    approver: str | None
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    next_retest_date: date | None
    item_count: int
    blocking_findings: int = Field(description="Blocking findings not resolved by an override.")
    review_reason: str | None = Field(
        default=None,
        description="Set when a result the plan rests on was later withdrawn or corrected: "
        "names the analyte and what happened. The plan must be reviewed (regenerated, or "
        "acknowledged) before it is activated.",
    )


class PlanOut(PlanSummary):
    source_panel_ids: list[uuid.UUID]
    replaces_plan_id: uuid.UUID | None
    regenerated_from: RegeneratedFrom | None = Field(
        default=None,
        description="For a regenerated plan: the plan it replaces and the rule set that one "
        "was drafted from (compare with `rule_set`).",
    )
    can_activate: bool = Field(
        description="No blocking finding is left unresolved and nothing that arrived since "
        "drafting (see `activation_blockers`) stands in the way."
    )
    activation_blockers: list[SafetyFinding] = Field(
        default_factory=list,
        description="For a draft read on its own: what activation would refuse today beyond "
        "`findings`: a newer critical result (regenerate), a newer result for an analyte the "
        "plan relies on (regenerate or acknowledge), a result it rests on withdrawn or "
        "corrected (`review_reason`).",
    )
    groups: list[ItemGroup] = Field(description="Items grouped by category, in plan order.")
    findings: list[SafetyFinding]
    overrides: list[OverrideOut]
    fired_rules: list[FiredRuleOut]
    basis: PlanBasis = Field(
        description="The facts the plan was drafted from: results, ratios, sleep score, "
        "patient context."
    )
    note: str | None


class PlanPage(Page[PlanSummary]):
    pass


class PlanVersionOut(OutputModel):
    version: int
    status: PlanStatus
    change: str = Field(
        description="`generated`, `regenerated`, `items-edited` or `status:<new status>`."
    )
    reason: str | None
    changed_by: str
    changed_at: datetime


class PlanVersionDetailOut(PlanVersionOut):
    plan_id: uuid.UUID
    document: PlanDocument


class PlanVersionList(OutputModel):
    plan_id: uuid.UUID
    items: list[PlanVersionOut]


class PlanDiffOut(OutputModel):
    plan_id: uuid.UUID
    from_version: int
    to_version: int
    status: dict[str, str] | None
    items_added: list[dict[str, object]]
    items_removed: list[dict[str, object]]
    items_changed: list[dict[str, object]]
    findings_added: list[dict[str, object]]
    findings_resolved: list[dict[str, object]]
    overrides_added: list[dict[str, object]]


class WorklistPatient(OutputModel):
    """Who a worklist row is about, so a row needs no extra call."""

    patient_identifier: IdentifierOut | None = Field(
        default=None,
        description="The patient's first MRN (identifier type `MR`), else its first identifier.",
    )
    patient_name: str | None = Field(
        default=None, description="The patient's name as a page shows it, when one is recorded."
    )


class RetestDue(WorklistPatient):
    plan_id: uuid.UUID
    patient_id: uuid.UUID
    item_id: str
    title: str
    analytes: list[str]
    due_date: date
    overdue: bool


class DraftDue(PlanSummary, WorklistPatient):
    pass


class WorklistSection(OutputModel):
    total: int = Field(description="How many entries the section has in all (all pages).")
    truncated: bool = Field(description="True when more entries follow this page.")
    next_cursor: str | None = Field(
        default=None,
        description="Pass as this section's cursor (`drafts_cursor`, `retests_cursor`) for its "
        "next page; null on its last page.",
    )


class DraftsSection(WorklistSection):
    items: list[DraftDue]


class RetestsSection(WorklistSection):
    items: list[RetestDue]


class WorklistOut(OutputModel):
    as_of: date
    due_by: date
    drafts: DraftsSection = Field(description="Drafts awaiting review, the oldest first.")
    retests_due: RetestsSection = Field(
        description="Retests of active plans due by `due_by`, the earliest first."
    )
