"""Evaluating conditions (see `conditions.py`) against facts and plan items, with readable findings.

`evaluate()` returns a `Match`: whether the condition holds, the findings behind it as text for
clinicians (`magnesium 0.55 mmol/L (L)`) and, for item atoms, the ids of the items it matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import assert_never

from app.domain.plans.conditions import (
    RATIO_DISPLAY,
    AlcoholAtom,
    AllOf,
    AnyOf,
    CaffeineAtom,
    Condition,
    ConditionAtom,
    CriticalAtom,
    DietAtom,
    FactAtom,
    ItemAtom,
    ItemTest,
    MedicationAtom,
    Not,
    PatientAtom,
    PatientTest,
    RatioAtom,
    RatioTest,
    ResultAtom,
    ResultMissingAtom,
    ResultTest,
    SleepAtom,
    SleepTest,
)
from app.domain.plans.facts import PatientFacts, PlanFacts, ResultFact
from app.domain.plans.items import Herbal, PlanItem, Supplement

# --- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """Whether a condition holds, the readable findings behind it and the items it matched."""

    ok: bool
    findings: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()


_FALSE = Match(ok=False)


def evaluate(condition: Condition, facts: PlanFacts, items: Sequence[PlanItem] = ()) -> Match:
    """Evaluate a condition against the facts (and, for item atoms, a plan's items)."""
    match condition:
        case AllOf():
            matches = [evaluate(child, facts, items) for child in condition.all]
            return _merge(matches) if all(match.ok for match in matches) else _FALSE
        case AnyOf():
            true = [m for m in (evaluate(child, facts, items) for child in condition.any) if m.ok]
            return _merge(true) if true else _FALSE
        case Not():
            if evaluate(condition.negated, facts, items).ok:
                return _FALSE
            return Match(ok=True, findings=describe(condition.negated, facts))
        case ItemAtom():
            return _item_match(condition.item, items)
        case _:
            # Every other kind is a fact atom; `_atom_holds` matches them exhaustively.
            ok = _atom_holds(condition, facts)
            return Match(ok=True, findings=describe(condition, facts)) if ok else _FALSE


def _merge(matches: Sequence[Match]) -> Match:
    return Match(
        ok=True,
        findings=_unique(finding for match in matches for finding in match.findings),
        item_ids=_unique(item_id for match in matches for item_id in match.item_ids),
    )


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _atom_holds(atom: FactAtom, facts: PlanFacts) -> bool:
    patient = facts.patient
    match atom:
        case ResultAtom():
            return _result_holds(atom.result, facts.result(atom.result.analyte))
        case ResultMissingAtom():
            return facts.result(atom.result_missing) is None
        case CriticalAtom():
            # A possibly critical result (a comparator value that may be beyond a critical
            # limit) counts as critical here: the urgent referral comes first.
            return any(result.needs_urgent_action for result in facts.results) is atom.critical
        case RatioAtom():
            return _ratio_holds(atom.ratio, facts)
        case SleepAtom():
            return _sleep_holds(atom.sleep, facts)
        case PatientAtom():
            return _patient_holds(atom.patient, facts)
        case MedicationAtom():
            return any(code in patient.medications for code in atom.medication)
        case ConditionAtom():
            return any(code in patient.conditions for code in atom.condition)
        case DietAtom():
            return patient.diet is not None and patient.diet in atom.diet
        case CaffeineAtom():
            servings = patient.caffeine_servings_per_day
            return servings is not None and servings > atom.caffeine_servings_above
        case AlcoholAtom():
            drinks = patient.alcohol_drinks_per_week
            return drinks is not None and drinks > atom.alcohol_drinks_per_week_above
        case _:
            assert_never(atom)


def _result_holds(test: ResultTest, result: ResultFact | None) -> bool:
    if result is None:
        return False
    if test.interpretation is not None and result.interpretation not in test.interpretation:
        return False
    if test.below is None and test.above is None:
        return True
    if result.unit != test.unit:
        # A threshold in another unit cannot be compared safely: the atom does not hold.
        return False
    comparator = result.comparator or "="
    if test.below is not None:
        # "<5" means the true value is below 5: it is below X only if 5 <= X.
        if comparator in (">", ">="):
            return False
        if comparator == "<":
            if not result.value <= test.below:
                return False
        elif not result.value < test.below:
            return False
    if test.above is not None:
        if comparator in ("<", "<="):
            return False
        if comparator == ">":
            if not result.value >= test.above:
                return False
        elif not result.value > test.above:
            return False
    return True


def _ratio_holds(test: RatioTest, facts: PlanFacts) -> bool:
    ratio = facts.ratio(test.code)
    if ratio is None:
        return False
    if test.interpretation is not None and ratio.interpretation not in test.interpretation:
        return False
    if test.below is not None and (ratio.value is None or not ratio.value < test.below):
        return False
    return test.above is None or (ratio.value is not None and ratio.value > test.above)


def _sleep_holds(test: SleepTest, facts: PlanFacts) -> bool:
    sleep = facts.sleep
    if sleep is None:
        return False
    if test.category is not None and sleep.category not in test.category:
        return False
    if test.total_at_least is not None and sleep.total < test.total_at_least:
        return False
    return test.total_below is None or sleep.total < test.total_below


def _patient_holds(test: PatientTest, facts: PlanFacts) -> bool:
    patient = facts.patient
    return (
        _life_stage_holds(test, patient)
        and _egfr_holds(test, facts)
        and _age_holds(test, patient.age_years)
        and (test.sex is None or patient.sex in test.sex)
    )


def _life_stage_holds(test: PatientTest, patient: PatientFacts) -> bool:
    if test.pregnant is not None and patient.pregnant is not test.pregnant:
        return False
    return test.lactating is None or patient.lactating is test.lactating


def _egfr_holds(test: PatientTest, facts: PlanFacts) -> bool:
    egfr = facts.patient.egfr
    if test.egfr_missing is not None and (egfr is None) is not test.egfr_missing:
        return False
    if test.egfr_below is not None and (egfr is None or egfr >= test.egfr_below):
        return False
    if test.egfr_at_least is not None and (egfr is None or egfr < test.egfr_at_least):
        return False
    return test.egfr_older_than_days is None or _egfr_older_than(test.egfr_older_than_days, facts)


def _egfr_older_than(days: int, facts: PlanFacts) -> bool:
    # The context API always dates an eGFR; an undated one (older stored facts) is not judged.
    measured = facts.patient.egfr_measured_on
    if facts.patient.egfr is None or measured is None:
        return False
    return (facts.today - measured).days > days


def _age_holds(test: PatientTest, age: int | None) -> bool:
    if test.age_at_least is not None and (age is None or age < test.age_at_least):
        return False
    return test.age_below is None or (age is not None and age < test.age_below)


def _item_match(test: ItemTest, items: Sequence[PlanItem]) -> Match:
    matching = [item for item in items if _item_selected(test, item)]
    if not matching:
        return _FALSE
    if test.daily_at_least is not None or test.daily_above is not None:
        total = sum(
            (item.supplement.daily_amount for item in matching if item.supplement is not None),
            Decimal(0),
        )
        if test.daily_at_least is not None and total < test.daily_at_least:
            return _FALSE
        if test.daily_above is not None and total <= test.daily_above:
            return _FALSE
    return Match(
        ok=True,
        findings=tuple(f"{item.title} ({item.id})" for item in matching),
        item_ids=tuple(item.id for item in matching),
    )


def _item_selected(test: ItemTest, item: PlanItem) -> bool:
    referral = item.referral
    return (
        (test.category is None or item.category == test.category)
        and _supplement_selected(test, item.supplement)
        and _herbal_selected(test, item.herbal)
        and (
            test.urgent_referral is None
            or (referral is not None and referral.urgent is test.urgent_referral)
        )
    )


def _supplement_selected(test: ItemTest, supplement: Supplement | None) -> bool:
    if test.mineral is not None and (supplement is None or supplement.mineral != test.mineral):
        return False
    if test.duration_days_over is not None:
        if supplement is None:
            return False
        duration = supplement.duration_days
        # An item without a duration (until review) counts as over.
        if duration is not None and duration <= test.duration_days_over:
            return False
    if test.daily_at_least is not None or test.daily_above is not None:
        return supplement is not None
    return True


def _herbal_selected(test: ItemTest, herbal: Herbal | None) -> bool:
    if test.herbal_sedative is not None and (
        herbal is None or herbal.sedative is not test.herbal_sedative
    ):
        return False
    if test.herbal_name is not None and (
        herbal is None or test.herbal_name.casefold() not in herbal.name.casefold()
    ):
        return False
    return test.unsafe_in_pregnancy is None or (
        herbal is not None
        and (herbal.sedative or herbal.avoid_in_pregnancy) is test.unsafe_in_pregnancy
    )


# --- readable findings --------------------------------------------------------------------------


def describe_result(result: ResultFact) -> str:
    """`magnesium 0.55 mmol/L (L)`; `calcium 13.5 mg/dL (HH, critical)`: the value as the lab
    sent it when known, else in the canonical unit."""
    value = result.reported or f"{result.comparator or ''}{result.value} {result.unit}"
    flag = result.interpretation or "no range applied"
    if result.critical:
        flag += ", critical"
    elif result.possibly_critical:
        flag += ", possibly critical"
    return f"{result.analyte} {value} ({flag})"


def describe(condition: Condition, facts: PlanFacts) -> tuple[str, ...]:
    """The facts a condition looks at, as readable text (whether or not it holds)."""
    patient = facts.patient
    match condition:
        case AllOf():
            return _describe_children(condition.all, facts)
        case AnyOf():
            return _describe_children(condition.any, facts)
        case Not():
            return describe(condition.negated, facts)
        case ResultAtom():
            return (_describe_analyte(condition.result.analyte, facts),)
        case ResultMissingAtom():
            return (_describe_analyte(condition.result_missing, facts),)
        case CriticalAtom():
            return _describe_critical(facts)
        case RatioAtom():
            return (_describe_ratio(condition.ratio.code, facts),)
        case SleepAtom():
            return (_describe_sleep(facts),)
        case PatientAtom():
            return _describe_patient(condition.patient, facts)
        case MedicationAtom():
            return _describe_medications(condition.medication, patient)
        case ConditionAtom():
            return _describe_conditions(condition.condition, patient)
        case DietAtom():
            return (f"diet: {patient.diet or 'not on record'}",)
        case CaffeineAtom():
            return (_describe_caffeine(patient),)
        case AlcoholAtom():
            return (_describe_alcohol(patient),)
        case ItemAtom():
            # Item atoms describe the items they matched (see `_item_match`), not facts.
            return ()
        case _:
            assert_never(condition)


def _describe_children(children: Sequence[Condition], facts: PlanFacts) -> tuple[str, ...]:
    return _unique(text for child in children for text in describe(child, facts))


def _describe_analyte(analyte: str, facts: PlanFacts) -> str:
    result = facts.result(analyte)
    return describe_result(result) if result else f"{analyte}: no result on record"


def _describe_critical(facts: PlanFacts) -> tuple[str, ...]:
    critical = [describe_result(r) for r in facts.results if r.needs_urgent_action]
    return tuple(critical) or ("no critical result",)


def _describe_medications(codes: Sequence[str], patient: PatientFacts) -> tuple[str, ...]:
    taking = [code for code in codes if code in patient.medications]
    return tuple(f"taking {code}" for code in taking) or (f"not taking {', '.join(codes)}",)


def _describe_conditions(codes: Sequence[str], patient: PatientFacts) -> tuple[str, ...]:
    present = [code for code in codes if code in patient.conditions]
    return tuple(f"condition: {code}" for code in present) or (f"no {', '.join(codes)} on record",)


def _describe_caffeine(patient: PatientFacts) -> str:
    servings = patient.caffeine_servings_per_day
    if servings is None:
        return "caffeine intake not on record"
    return f"caffeine {servings} servings/day"


def _describe_alcohol(patient: PatientFacts) -> str:
    drinks = patient.alcohol_drinks_per_week
    return f"alcohol {drinks} drinks/week" if drinks is not None else "alcohol not on record"


def _describe_ratio(code: str, facts: PlanFacts) -> str:
    ratio = facts.ratio(code)
    name = RATIO_DISPLAY.get(code, code)
    if ratio is None or ratio.value is None:
        return f"{name}: not available"
    return f"{name} {ratio.value} ({ratio.interpretation or 'no range applied'})"


def _describe_sleep(facts: PlanFacts) -> str:
    sleep = facts.sleep
    if sleep is None:
        return "Insomnia Severity Index: not on record"
    return f"Insomnia Severity Index {sleep.total} ({sleep.category}, {sleep.assessed_on})"


def _describe_patient(test: PatientTest, facts: PlanFacts) -> tuple[str, ...]:
    patient = facts.patient
    texts: list[str] = []
    if test.pregnant is not None:
        if patient.pregnancy_assumed:
            texts.append("possibly pregnant (pregnancy not recorded)")
        elif patient.pregnant is None:
            texts.append("pregnancy not recorded")
        else:
            texts.append("pregnant" if patient.pregnant else "not pregnant")
    if test.lactating is not None:
        texts.append("lactating" if patient.lactating else "not lactating")
    if test.egfr_below is not None or test.egfr_at_least is not None or test.egfr_missing:
        texts.append(
            f"eGFR {patient.egfr} mL/min/1.73 m2"
            if patient.egfr is not None
            else "eGFR not on record"
        )
    measured = patient.egfr_measured_on
    if test.egfr_older_than_days is not None and patient.egfr is not None and measured:
        texts.append(f"eGFR {patient.egfr} mL/min/1.73 m2 measured on {measured.isoformat()}")
    if test.age_at_least is not None or test.age_below is not None:
        texts.append(
            f"age {patient.age_years} y" if patient.age_years is not None else "age unknown"
        )
    if test.sex is not None:
        texts.append(f"sex {patient.sex}")
    return tuple(texts)
