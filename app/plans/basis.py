"""The facts a plan is drafted from: chosen from stored records, frozen into the plan document.

A plan keeps the lab results, ratios, sleep score and patient context it was drafted from, so
it can always be explained and re-checked exactly; re-checks on edit refresh only the patient
context (a new medication or eGFR must reach the safety engine)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from app.domain.plans.facts import PatientFacts, PlanFacts, RatioFact, ResultFact, SleepFact
from app.models.panel import Panel, Result

# Result statuses that withdraw a result: kept for the record, never a basis for a plan.
WITHDRAWN_RESULT_STATUSES = frozenset({"cancelled", "entered-in-error"})


def result_fact(result: Result, panel: Panel) -> ResultFact:
    """A stored result as the plan rules see it."""
    return ResultFact(
        analyte=result.analyte,
        value=result.canonical_value,
        unit=result.canonical_unit,
        interpretation=result.interpretation,
        critical=result.critical,
        panel_id=str(panel.id),
        result_id=str(result.id),
        collected_at=panel.collected_at,
        comparator=result.comparator,
        reported=f"{result.value_text} {result.unit}",
        possibly_critical=bool(getattr(result, "possibly_critical", False)),
        status=getattr(result, "status", None) or "final",
    )


def latest_results(panels: Sequence[Panel]) -> tuple[tuple[ResultFact, ...], tuple[str, ...]]:
    """The most recent non-withdrawn result of each analyte across `panels` (newest first),
    and the panels they came from in the order given."""
    chosen: dict[str, ResultFact] = {}
    for panel in panels:
        for result in panel.results:
            if result.analyte in chosen or result.status in WITHDRAWN_RESULT_STATUSES:
                continue
            chosen[result.analyte] = result_fact(result, panel)
    used = {fact.panel_id for fact in chosen.values()}
    return tuple(chosen.values()), tuple(str(p.id) for p in panels if str(p.id) in used)


def latest_ratios(panels: Sequence[Panel]) -> tuple[RatioFact, ...]:
    chosen: dict[str, RatioFact] = {}
    for panel in panels:
        for ratio in panel.ratios or ():
            code = ratio.get("code")
            if not code or code in chosen or ratio.get("value") is None:
                continue
            chosen[code] = RatioFact(
                code=code,
                value=Decimal(str(ratio["value"])),
                interpretation=ratio.get("interpretation"),
                panel_id=str(panel.id),
                collected_at=panel.collected_at,
            )
    return tuple(chosen.values())


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(value)
    return value


def _as_json(value: Any) -> dict[str, Any]:
    """A facts dataclass as JSON-ready text (decimals and dates as strings)."""
    return {f.name: _text(getattr(value, f.name)) for f in fields(value)}


def to_json(facts: PlanFacts, *, context_version: int | None) -> dict[str, Any]:
    return {
        "today": facts.today.isoformat(),
        "panel_ids": list(facts.panel_ids),
        "context_version": context_version,
        "patient": _as_json(facts.patient),
        "results": [_as_json(result) for result in facts.results],
        "ratios": [_as_json(ratio) for ratio in facts.ratios],
        "sleep": _as_json(facts.sleep) if facts.sleep else None,
    }


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(value)


def patient_from_json(data: dict[str, Any]) -> PatientFacts:
    return PatientFacts(
        sex=data["sex"],
        age_years=data.get("age_years"),
        # None (not recorded) stays None: the rule set's pregnancy policy decides.
        pregnant=None if data.get("pregnant") is None else bool(data["pregnant"]),
        lactating=bool(data.get("lactating")),
        egfr=_decimal(data.get("egfr")),
        egfr_measured_on=_date(data.get("egfr_measured_on")),
        medications=frozenset(data.get("medications") or ()),
        conditions=frozenset(data.get("conditions") or ()),
        diet=data.get("diet"),
        caffeine_servings_per_day=data.get("caffeine_servings_per_day"),
        alcohol_drinks_per_week=data.get("alcohol_drinks_per_week"),
    )


def from_json(data: dict[str, Any], *, patient: PatientFacts | None = None) -> PlanFacts:
    """The facts stored with a plan; `patient` replaces the stored patient context."""
    sleep = data.get("sleep")
    return PlanFacts(
        patient=patient or patient_from_json(data["patient"]),
        today=date.fromisoformat(data["today"]),
        results=tuple(
            ResultFact(
                analyte=r["analyte"],
                value=Decimal(r["value"]),
                unit=r["unit"],
                interpretation=r.get("interpretation"),
                critical=bool(r.get("critical")),
                panel_id=r["panel_id"],
                result_id=r["result_id"],
                collected_at=datetime.fromisoformat(r["collected_at"]),
                comparator=r.get("comparator"),
                reported=r.get("reported"),
                possibly_critical=bool(r.get("possibly_critical")),
                status=r.get("status") or "final",
            )
            for r in data.get("results") or ()
        ),
        ratios=tuple(
            RatioFact(
                code=r["code"],
                value=_decimal(r.get("value")),
                interpretation=r.get("interpretation"),
                panel_id=r["panel_id"],
                collected_at=(
                    datetime.fromisoformat(r["collected_at"]) if r.get("collected_at") else None
                ),
            )
            for r in data.get("ratios") or ()
        ),
        sleep=(
            SleepFact(
                total=int(sleep["total"]),
                category=sleep["category"],
                assessed_on=date.fromisoformat(sleep["assessed_on"]),
            )
            if sleep
            else None
        ),
        panel_ids=tuple(data.get("panel_ids") or ()),
    )
