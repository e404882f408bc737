"""Clinical-safety properties of the engine and safety checks, over generated patients (with and
without an age, 0-100 y, every sex, pregnancy recorded or not, kidney context) and generated
results (critical, possibly critical, flagged critical by the lab):

- every critical or possibly critical result puts an urgent referral first in the drafted plan;
- no drafted plan, and no plan the activation gate lets through whatever is overridden, exceeds
  an upper limit or goes against a hard stop;
- no such plan holds contradictory items about one mineral;
- a patient who is or may be pregnant never gets an item the data marks unsafe in pregnancy.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from app.domain.plans.context import effective_patient
from app.domain.plans.engine import draft
from app.domain.plans.facts import (
    CONDITIONS,
    MEDICATION_CLASSES,
    PatientFacts,
    PlanFacts,
    ResultFact,
)
from app.domain.plans.items import PlanItem, conflicts, restrictions_of
from app.domain.plans.safety import check, daily_totals, unresolved, upper_limit
from tests.domain.plans import CANONICAL_UNITS, TODAY, default_rules, make_result
from tests.domain.plans.test_properties import PROPERTY_SETTINGS, hand_supplement, ratios, sleeps

SEXES = ("female", "male", "other", "unknown")


@st.composite
def patients(draw: st.DrawFn) -> PatientFacts:
    egfr = draw(st.one_of(st.none(), st.integers(min_value=5, max_value=130).map(Decimal)))
    measured = TODAY - timedelta(days=draw(st.integers(0, 2000))) if egfr is not None else None
    return PatientFacts(
        sex=draw(st.sampled_from(SEXES)),
        age_years=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=100))),
        pregnant=draw(st.sampled_from([True, False, None])),
        lactating=draw(st.booleans()),
        egfr=egfr,
        egfr_measured_on=measured,
        medications=draw(st.frozensets(st.sampled_from(MEDICATION_CLASSES))),
        conditions=draw(st.frozensets(st.sampled_from(CONDITIONS))),
    )


@st.composite
def results(draw: st.DrawFn) -> tuple[ResultFact, ...]:
    analytes = draw(st.sets(st.sampled_from(sorted(CANONICAL_UNITS))))
    facts = []
    for analyte in sorted(analytes):
        interpretation = draw(st.sampled_from(["L", "N", "H", "LL", "HH", "IND", None]))
        kind = draw(st.sampled_from(["plain", "ours", "lab-flag", "comparator"]))
        value = str(draw(st.decimals(min_value=0, max_value=1000, places=2)))
        if kind == "ours":
            # Beyond our critical limit: LL/HH and critical.
            interpretation = draw(st.sampled_from(["LL", "HH"]))
            facts.append(make_result(analyte, value, interpretation, critical=True))
        elif kind == "lab-flag":
            # The lab flagged it critical (LL/HH/AA) whatever our interpretation says.
            facts.append(make_result(analyte, value, interpretation, critical=True))
        elif kind == "comparator":
            comparator = draw(st.sampled_from(["<", ">"]))
            result = make_result(analyte, value, interpretation, comparator=comparator)
            facts.append(dataclasses.replace(result, possibly_critical=True))
        else:
            facts.append(make_result(analyte, value, interpretation))
    return tuple(facts)


plan_facts = st.builds(
    PlanFacts,
    patient=patients(),
    today=st.just(TODAY),
    results=results(),
    ratios=ratios,
    sleep=sleeps(),
)


def _interpretation(facts: PlanFacts, analyte: str) -> str | None:
    result = facts.result(analyte)
    return result.interpretation if result is not None else None


def _supplements(items: tuple[PlanItem, ...], mineral: str) -> list[PlanItem]:
    return [i for i in items if i.supplement is not None and i.supplement.mineral == mineral]


def assert_safe(facts: PlanFacts, items: tuple[PlanItem, ...]) -> None:
    """What no plan that may be activated can hold, checked from the facts, not the findings."""
    rules = default_rules()
    patient = facts.patient
    # Upper limits.
    for mineral, total in daily_totals(items).items():
        limit = upper_limit(rules, mineral, patient)
        if limit is not None:
            assert total <= limit.amount, (mineral, total, limit)
    # Critical referral.
    if any(r.critical or r.possibly_critical for r in facts.results):
        assert any(i.referral is not None and i.referral.urgent for i in items)
    # Hard stops of the shipped rule set.
    kidney = (patient.egfr is not None and patient.egfr < 30) or (
        "chronic-kidney-disease" in patient.conditions
    )
    if kidney:
        assert not _supplements(items, "magnesium")
    if _interpretation(facts, "ferritin") in ("H", "HH") or "hemochromatosis" in (
        patient.conditions
    ):
        assert not _supplements(items, "iron")
    if {_interpretation(facts, "calcium"), _interpretation(facts, "calcium-ionized")} & {
        "H",
        "HH",
    }:
        assert not _supplements(items, "calcium")
    if _interpretation(facts, "magnesium") in ("H", "HH"):
        assert not _supplements(items, "magnesium")
    # No contradictions about one mineral.
    for item in items:
        for restriction in restrictions_of(item):
            assert not [i for i in items if i.id != item.id and conflicts(restriction, i)]


@PROPERTY_SETTINGS
@given(plan_facts)
def test_every_critical_or_possibly_critical_result_puts_an_urgent_referral_first(
    facts: PlanFacts,
) -> None:
    result = draft(default_rules(), facts)
    if any(r.critical or r.possibly_critical for r in facts.results):
        first = result.items[0]
        assert first.referral is not None
        assert first.referral.urgent
        listed = [r for r in facts.results if r.possibly_critical and not r.critical]
        if listed:
            assert "possibly critical" in first.rationale


@PROPERTY_SETTINGS
@given(plan_facts)
def test_a_drafted_plan_is_safe_and_has_no_hard_stop(facts: PlanFacts) -> None:
    rules = default_rules()
    result = draft(rules, facts)
    assert_safe(facts, result.items)
    findings = check(rules, facts, result.items)
    assert [f for f in findings if f.severity == "blocking" and not f.overridable] == []
    if effective_patient(rules, facts.patient).pregnant:
        assert not [
            i
            for i in result.items
            if i.herbal and (i.herbal.sedative or i.herbal.avoid_in_pregnancy)
        ]


@st.composite
def edited_plans(draw: st.DrawFn) -> tuple[PlanFacts, tuple[PlanItem, ...]]:
    """A draft, then hand edits: drop items, add supplements, copy items of another plan."""
    facts = draw(plan_facts)
    items = list(draft(default_rules(), facts).items)
    items = [item for item in items if draw(st.booleans())]
    other = draw(plan_facts)
    items.extend(
        item
        for item in draft(default_rules(), other).items
        if item.id not in {i.id for i in items} and draw(st.booleans())
    )
    items.extend(draw(hand_supplement(index)) for index in range(draw(st.integers(0, 3))))
    return facts, tuple(items)


@PROPERTY_SETTINGS
@given(edited_plans(), st.data())
def test_a_plan_the_gate_lets_through_is_safe_whatever_is_overridden(
    plan: tuple[PlanFacts, tuple[PlanItem, ...]], data: st.DataObject
) -> None:
    facts, items = plan
    findings = check(default_rules(), facts, items)
    codes = sorted({f.code for f in findings})
    chosen = data.draw(st.sets(st.sampled_from(codes)) if codes else st.just(set()))
    if unresolved(findings, [{"code": code, "reason": "judgement"} for code in chosen]):
        return
    assert_safe(facts, items)


def test_the_generators_reach_unrecorded_pregnancy_and_stale_egfr() -> None:
    patient = PatientFacts(sex="female", age_years=28, pregnant=None)
    assert effective_patient(default_rules(), patient).pregnancy_assumed
    assert date(2026, 3, 2) == TODAY
