"""Builders shared by the plan domain tests (plain keyword-only functions)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from app.domain.plans.facts import (
    PatientFacts,
    PlanFacts,
    RatioFact,
    ResultFact,
    SleepFact,
)
from app.domain.plans.items import Category, PlanItem, Referral, Supplement
from app.domain.plans.rules import RuleSetDocument, read_default_rule_set

TODAY = date(2026, 3, 2)
DEFAULT_YAML = Path(__file__).parents[3] / "app" / "data" / "plan_rules" / "default.yaml"
ANALYTES = {
    "magnesium",
    "magnesium-rbc",
    "calcium",
    "calcium-ionized",
    "zinc",
    "iron",
    "ferritin",
    "copper",
}
RATIOS = {"ca_mg_molar", "zn_cu_molar"}
CANONICAL_UNITS = {
    "magnesium": "mmol/L",
    "magnesium-rbc": "mmol/L",
    "calcium": "mmol/L",
    "calcium-ionized": "mmol/L",
    "zinc": "umol/L",
    "iron": "umol/L",
    "copper": "umol/L",
    "ferritin": "ug/L",
}

_DEFAULT: RuleSetDocument | None = None


def default_rules() -> RuleSetDocument:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = read_default_rule_set()
    return _DEFAULT


def make_patient(
    *,
    sex: str = "female",
    age_years: int | None = 40,
    pregnant: bool = False,
    lactating: bool = False,
    egfr: str | None = "90",
    medications: tuple[str, ...] = (),
    conditions: tuple[str, ...] = (),
    diet: str | None = None,
    caffeine: int | None = None,
    alcohol: int | None = None,
) -> PatientFacts:
    return PatientFacts(
        sex=sex,
        age_years=age_years,
        pregnant=pregnant,
        lactating=lactating,
        egfr=Decimal(egfr) if egfr is not None else None,
        medications=frozenset(medications),
        conditions=frozenset(conditions),
        diet=diet,
        caffeine_servings_per_day=caffeine,
        alcohol_drinks_per_week=alcohol,
    )


def make_result(
    analyte: str,
    value: str,
    interpretation: str | None,
    *,
    critical: bool = False,
    comparator: str | None = None,
    unit: str | None = None,
) -> ResultFact:
    return ResultFact(
        analyte=analyte,
        value=Decimal(value),
        unit=unit or CANONICAL_UNITS[analyte],
        interpretation=interpretation,
        critical=critical,
        panel_id="panel-1",
        result_id=f"result-{analyte}",
        collected_at=datetime(2026, 3, 1, 8, 0),
        comparator=comparator,
    )


def make_facts(
    *,
    patient: PatientFacts | None = None,
    results: tuple[ResultFact, ...] = (),
    ratios: tuple[RatioFact, ...] = (),
    isi: int | None = None,
) -> PlanFacts:
    sleep = None
    if isi is not None:
        category = (
            "none"
            if isi < 8
            else "subthreshold"
            if isi < 15
            else "moderate"
            if isi < 22
            else "severe"
        )
        sleep = SleepFact(total=isi, category=category, assessed_on=date(2026, 2, 27))
    return PlanFacts(
        patient=patient or make_patient(),
        today=TODAY,
        results=results,
        ratios=ratios,
        sleep=sleep,
        panel_ids=("panel-1",),
    )


def supplement_item(
    item_id: str,
    mineral: str,
    dose: str,
    *,
    doses_per_day: int = 1,
    duration_days: int | None = None,
) -> PlanItem:
    """A clinician-added supplement item (no rule id)."""
    return PlanItem(
        id=item_id,
        category=Category.SUPPLEMENT,
        title=f"{mineral} supplement",
        instruction="Take as directed.",
        rationale="Added by the clinician.",
        supplement=Supplement(
            mineral=mineral,
            form=f"{mineral} (clinician choice)",
            dose=Decimal(dose),
            doses_per_day=doses_per_day,
            timing="any",
            duration_days=duration_days,
        ),
    )


def urgent_referral_item(item_id: str = "hand.urgent") -> PlanItem:
    return PlanItem(
        id=item_id,
        category=Category.REFERRAL,
        title="Urgent review",
        instruction="Contact the clinic today.",
        rationale="Added by the clinician.",
        priority=0,
        referral=Referral(to="emergency care", urgent=True),
    )
