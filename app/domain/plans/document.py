"""A plan version's document: what a treatment plan holds, as stored in its JSON column.

One frozen model validates every stored version on load and is the only thing written back,
so the document has one shape in the service, the API, the printable page and the FHIR
CarePlan. The stored JSON keeps the shape plans have always been written in: items and
findings without their null fields, decimals and datetimes as the text they were written as
(`isoformat()`, `str(Decimal)`), and the optional keys (`regenerated_from`,
`acknowledged_results`, `review_acknowledged`) only when they apply.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    WrapSerializer,
    model_serializer,
)

from app.domain.plans import safety
from app.domain.plans.facts import PatientFacts, PlanFacts, RatioFact, ResultFact, SleepFact
from app.domain.plans.items import PlanItem, SafetyFinding

# Stored as the text they were first written as, so a stored version reads back unchanged.
DecimalText = Annotated[
    Decimal, PlainSerializer(str, return_type=str), WithJsonSchema({"type": "string"})
]
StoredDateTime = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str)]


def _without_none(value: object) -> object:
    """`exclude_none` for an already serialized entry (nested dicts too)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _entries_without_none(value: object, handler: SerializerFunctionWrapHandler) -> object:
    serialized = handler(value)
    return [_without_none(entry) for entry in serialized]


# Items and findings are stored without their null fields (as `model_dump(exclude_none=True)`).
StoredItems = Annotated[tuple[PlanItem, ...], WrapSerializer(_entries_without_none)]
StoredFindings = Annotated[tuple[SafetyFinding, ...], WrapSerializer(_entries_without_none)]


class DocumentModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _fact_fields(fact_type: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(fact_type)]


def _copied(source: object, names: Iterable[str], **replaced: object) -> dict[str, Any]:
    """The fields a basis model shares by name with the fact it stores (copied as they are,
    so a field added to both is carried without a line here), then the ones that change
    type or default (`replaced`)."""
    return {name: getattr(source, name) for name in names} | replaced


class RuleSetRef(DocumentModel):
    """The rule set (and its version) a plan was drafted from."""

    id: uuid.UUID
    name: str
    version: int


class RegeneratedFrom(DocumentModel):
    plan_id: uuid.UUID
    rule_set: RuleSetRef


class Override(DocumentModel):
    """A clinician accepted the risk of an overridable blocking finding."""

    code: str
    reason: str
    by: str
    by_display: str | None = None
    at: StoredDateTime


class FiredRule(DocumentModel):
    rule_id: str
    description: str
    findings: tuple[str, ...] = ()


class AcknowledgedResult(DocumentModel):
    """A result that arrived after drafting, reviewed and accepted at activation."""

    result_id: str
    analyte: str
    reported: str | None = None
    collected_at: StoredDateTime
    by: str
    by_display: str | None = None
    at: StoredDateTime


class ReviewAcknowledged(DocumentModel):
    """A review mark (a result the plan rests on was revised) accepted at activation."""

    reason: str
    by: str
    by_display: str | None = None
    at: StoredDateTime


class BasisPatient(DocumentModel):
    sex: str
    age_years: int | None = None
    pregnant: bool | None = None
    lactating: bool = False
    egfr: DecimalText | None = None
    egfr_measured_on: date | None = None
    medications: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    diet: str | None = None
    caffeine_servings_per_day: int | None = None
    alcohol_drinks_per_week: int | None = None
    pregnancy_assumed: bool = False

    @classmethod
    def of(cls, facts: PatientFacts) -> BasisPatient:
        return cls(
            **_copied(
                facts,
                cls.model_fields,
                medications=tuple(sorted(facts.medications)),
                conditions=tuple(sorted(facts.conditions)),
            )
        )

    def facts(self) -> PatientFacts:
        # `pregnancy_assumed` is not read back: `context.effective()` derives it again.
        names = [name for name in _fact_fields(PatientFacts) if name != "pregnancy_assumed"]
        return PatientFacts(
            **_copied(
                self,
                names,
                medications=frozenset(self.medications),
                conditions=frozenset(self.conditions),
            )
        )


class BasisResult(DocumentModel):
    analyte: str
    value: DecimalText
    unit: str
    interpretation: str | None = None
    critical: bool = False
    panel_id: str
    result_id: str
    collected_at: StoredDateTime
    comparator: str | None = None
    reported: str | None = None
    possibly_critical: bool = False
    status: str = "final"

    def fact(self) -> ResultFact:
        return ResultFact(**_copied(self, _fact_fields(ResultFact), status=self.status or "final"))


class BasisRatio(DocumentModel):
    code: str
    value: DecimalText | None = None
    interpretation: str | None = None
    panel_id: str
    # None in plans stored before the ratio's collection time was kept.
    collected_at: StoredDateTime | None = None

    def fact(self) -> RatioFact:
        return RatioFact(**_copied(self, _fact_fields(RatioFact)))


class BasisSleep(DocumentModel):
    total: int
    category: str
    assessed_on: date


class PlanBasis(DocumentModel):
    """The facts a plan was drafted from, frozen with it so it can always be explained and
    re-checked exactly (re-checks refresh only `patient` and `context_version`)."""

    today: date
    panel_ids: tuple[str, ...] = ()
    context_version: int | None = None
    patient: BasisPatient
    results: tuple[BasisResult, ...] = ()
    ratios: tuple[BasisRatio, ...] = ()
    sleep: BasisSleep | None = None

    @classmethod
    def of(cls, facts: PlanFacts, *, context_version: int | None) -> PlanBasis:
        sleep = facts.sleep
        return cls(
            today=facts.today,
            panel_ids=facts.panel_ids,
            context_version=context_version,
            patient=BasisPatient.of(facts.patient),
            # The facts dataclasses have the stored field names: read them as attributes.
            results=tuple(
                BasisResult.model_validate(r, from_attributes=True) for r in facts.results
            ),
            ratios=tuple(BasisRatio.model_validate(r, from_attributes=True) for r in facts.ratios),
            sleep=(
                BasisSleep.model_validate(sleep, from_attributes=True)
                if sleep is not None
                else None
            ),
        )

    def facts(self, *, patient: PatientFacts | None = None) -> PlanFacts:
        """The stored facts; `patient` replaces the stored patient context."""
        sleep = self.sleep
        return PlanFacts(
            patient=patient or self.patient.facts(),
            today=self.today,
            results=tuple(result.fact() for result in self.results),
            ratios=tuple(ratio.fact() for ratio in self.ratios),
            sleep=(
                SleepFact(total=sleep.total, category=sleep.category, assessed_on=sleep.assessed_on)
                if sleep is not None
                else None
            ),
            panel_ids=self.panel_ids,
        )

    def with_patient(self, patient: PatientFacts, *, context_version: int | None) -> PlanBasis:
        """The same labs with the patient's current context (what a re-check sees)."""
        return self.model_copy(
            update={"patient": BasisPatient.of(patient), "context_version": context_version}
        )

    def rests_on(self) -> tuple[set[str], set[str]]:
        """The result ids the plan uses, and the panels its ratios come from."""
        return {r.result_id for r in self.results}, {r.panel_id for r in self.ratios}


# Keys written only when they apply (absent, never null or empty, in stored documents).
_WHEN_SET = ("regenerated_from", "acknowledged_results", "review_acknowledged")


class PlanDocument(DocumentModel):
    """Everything a plan version holds besides its status and audit columns."""

    rule_set: RuleSetRef
    items: StoredItems = ()
    findings: StoredFindings = ()
    # What the engine left out and why (pregnancy, contradictions): shown with every re-check.
    drafting_findings: StoredFindings = ()
    overrides: tuple[Override, ...] = ()
    fired_rules: tuple[FiredRule, ...] = ()
    basis: PlanBasis
    note: str | None = None
    author_display: str | None = None
    approver_display: str | None = None
    regenerated_from: RegeneratedFrom | None = None
    acknowledged_results: tuple[AcknowledgedResult, ...] = ()
    review_acknowledged: ReviewAcknowledged | None = None

    @model_serializer(mode="wrap")
    def _stored_shape(self, handler: SerializerFunctionWrapHandler) -> object:
        serialized = handler(self)
        if isinstance(serialized, dict):
            for key in _WHEN_SET:
                if serialized.get(key) in (None, [], ()):
                    serialized.pop(key, None)
        return serialized

    def open_findings(self) -> list[SafetyFinding]:
        return open_findings(self.findings, self.overrides)

    def acknowledged_ids(self) -> set[str]:
        return {entry.result_id for entry in self.acknowledged_results}

    def next_retest(self) -> date | None:
        return next_retest(self.items)


def next_retest(items: Sequence[PlanItem]) -> date | None:
    dates = [item.retest.due_date for item in items if item.retest is not None]
    return min(dates) if dates else None


def open_findings(
    findings: Sequence[SafetyFinding], overrides: Sequence[Override]
) -> list[SafetyFinding]:
    """Blocking findings no (allowed) override resolves: hard stops always stay."""
    return safety.unresolved(findings, [{"code": override.code} for override in overrides])
