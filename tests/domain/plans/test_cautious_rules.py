"""The cautious choices of the engine, the safety checks and the shipped rule set: possibly
critical results, contradictions, unrecorded pregnancy, kidney context, hard stops, ratios only
from results collected together, and activation's re-check against newer results."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from app.domain.plans import freshness
from app.domain.plans.engine import draft
from app.domain.plans.facts import RatioFact, ResultFact
from app.domain.plans.items import Category, Herbal, MineralEffect, PlanItem, SafetyFinding
from app.domain.plans.rules import RuleSetFormatError, validate_rule_set
from app.domain.plans.safety import check, upper_limit
from tests.domain.plans import (
    ANALYTES,
    RATIOS,
    TODAY,
    default_rules,
    make_facts,
    make_patient,
    make_result,
    supplement_item,
)


def _template_ids(items: tuple[PlanItem, ...]) -> set[str]:
    return {item.template_id for item in items if item.template_id}


def _codes(findings: Sequence[SafetyFinding]) -> set[str]:
    return {f.code for f in findings}


def _possibly(result: ResultFact) -> ResultFact:
    return dataclasses.replace(result, possibly_critical=True)


def test_a_possibly_critical_comparator_value_puts_the_urgent_referral_first() -> None:
    magnesium = _possibly(make_result("magnesium", "0.5", "L", comparator="<"))
    result = draft(default_rules(), make_facts(results=(magnesium,)))
    first = result.items[0]
    assert first.referral is not None
    assert first.referral.urgent
    assert "possibly critical" in first.rationale
    # Removing the referral by hand is a hard stop.
    rest = tuple(i for i in result.items if i.referral is None or not i.referral.urgent)
    [finding] = [
        f
        for f in check(default_rules(), make_facts(results=(magnesium,)), rest)
        if f.code == "critical-without-urgent-referral"
    ]
    assert not finding.overridable
    assert "possibly critical" in finding.message


def test_low_total_calcium_with_high_ionized_calcium_never_drafts_calcium() -> None:
    facts = make_facts(
        results=(
            make_result("calcium", "1.9", "L"),
            make_result("calcium-ionized", "1.45", "H"),
            make_result("magnesium", "0.85", "N"),
        )
    )
    result = draft(default_rules(), facts)
    ids = _template_ids(result.items)
    assert "calcium-high-referral" in ids
    assert "calcium-citrate" not in ids
    assert "calcium-diet" not in ids
    dropped = [f for f in result.omitted if f.code == "contradiction-resolved:calcium"]
    assert {item for f in dropped for item in f.item_ids} >= {
        "calcium-low-supplement.calcium-citrate",
        "calcium-high.calcium-high-referral",
    }
    assert all("restriction wins" in f.message for f in dropped)


def test_an_old_ratio_never_speaks_for_a_current_high_magnesium() -> None:
    now = datetime(2026, 3, 1, 8, 0)
    high = dataclasses.replace(make_result("magnesium", "1.3", "H"), panel_id="new")
    calcium = dataclasses.replace(
        make_result("calcium", "2.4", "N"), panel_id="old", collected_at=now - timedelta(days=200)
    )
    old_ratio = RatioFact(
        code="ca_mg_molar",
        value=Decimal("4.5"),
        interpretation="H",
        panel_id="old",
        collected_at=now - timedelta(days=200),
    )
    result = draft(default_rules(), make_facts(results=(high, calcium), ratios=(old_ratio,)))
    ids = _template_ids(result.items)
    assert "stop-magnesium" in ids
    assert "magnesium-diet" not in ids
    assert "ca-mg-ratio-high" not in {rule.rule_id for rule in result.fired}


def test_a_ratio_from_results_collected_within_the_window_is_used() -> None:
    now = datetime(2026, 3, 1, 8, 0)
    magnesium = dataclasses.replace(make_result("magnesium", "0.8", "N"), panel_id="a")
    calcium = dataclasses.replace(
        make_result("calcium", "2.4", "N"), panel_id="b", collected_at=now - timedelta(hours=3)
    )
    ratio = RatioFact(
        code="ca_mg_molar", value=Decimal("4.5"), interpretation="H", panel_id="b", collected_at=now
    )
    result = draft(default_rules(), make_facts(results=(magnesium, calcium), ratios=(ratio,)))
    assert "ca-mg-ratio-high" in {rule.rule_id for rule in result.fired}


def test_unrecorded_pregnancy_in_the_band_keeps_sedative_herbs_out() -> None:
    for pregnant in (None, True):
        patient = make_patient(sex="female", age_years=28)
        patient = dataclasses.replace(patient, pregnant=pregnant)
        result = draft(default_rules(), make_facts(patient=patient, isi=18))
        ids = _template_ids(result.items)
        assert "valerian" not in ids
        assert "chamomile-tea" not in ids
        assert "pregnancy-omitted:chamomile-tea" in _codes(result.omitted)
    unknown = dataclasses.replace(make_patient(sex="female", age_years=28), pregnant=None)
    [omitted] = [
        f
        for f in draft(default_rules(), make_facts(patient=unknown, isi=18)).omitted
        if f.code == "pregnancy-omitted:chamomile-tea"
    ]
    assert "not recorded" in omitted.message


def test_outside_the_band_or_recorded_not_pregnant_gets_the_herbal_options() -> None:
    for sex, age, pregnant in (("female", 60, None), ("male", 28, None), ("female", 28, False)):
        patient = dataclasses.replace(make_patient(sex=sex, age_years=age), pregnant=pregnant)
        ids = _template_ids(draft(default_rules(), make_facts(patient=patient, isi=18)).items)
        assert {"valerian", "chamomile-tea"} <= ids, (sex, age, pregnant)


def test_a_hand_added_sedative_herb_for_a_possibly_pregnant_patient_blocks() -> None:
    patient = dataclasses.replace(make_patient(sex="female", age_years=30), pregnant=None)
    herb = PlanItem(
        id="hand.herb",
        category=Category.HERBAL,
        title="Lemon balm",
        instruction="One cup in the evening.",
        rationale="Added by hand.",
        herbal=Herbal(name="lemon balm", sedative=True),
    )
    findings = check(default_rules(), make_facts(patient=patient), (herb,))
    [block] = [f for f in findings if f.code == "contraindication:herbal-pregnancy"]
    assert block.severity == "blocking"
    assert "possibly pregnant" in block.message


def test_possibly_pregnant_patients_get_the_lower_of_pregnancy_and_general_limits() -> None:
    patient = dataclasses.replace(make_patient(sex="female", age_years=30), pregnant=None)
    limit = upper_limit(default_rules(), "calcium", patient)
    assert limit is not None
    assert limit.amount == Decimal(2500)
    assert "pregnancy not recorded" in limit.applies_to


def test_kidney_disease_without_an_egfr_counts_as_impaired_kidney_function() -> None:
    patient = make_patient(egfr=None, conditions=("chronic-kidney-disease",))
    facts = make_facts(patient=patient, results=(make_result("magnesium", "0.55", "L"),))
    result = draft(default_rules(), facts)
    assert not [i for i in result.items if i.supplement is not None]
    assert "magnesium-kidney-referral" in _template_ids(result.items)
    findings = check(
        default_rules(), facts, (*result.items, supplement_item("h", "magnesium", "100"))
    )
    [stop] = [f for f in findings if f.code == "contraindication:magnesium-kidney"]
    assert not stop.overridable


def test_an_egfr_older_than_a_year_asks_for_a_new_one() -> None:
    old = dataclasses.replace(make_patient(egfr="70"), egfr_measured_on=TODAY - timedelta(days=800))
    recent = dataclasses.replace(
        make_patient(egfr="70"), egfr_measured_on=TODAY - timedelta(days=30)
    )
    [stale] = [
        f
        for f in check(default_rules(), make_facts(patient=old), ())
        if f.code == "caution:egfr-stale"
    ]
    assert stale.severity == "warning"
    assert "measured on" in stale.message
    assert "caution:egfr-stale" not in _codes(
        check(default_rules(), make_facts(patient=recent), ())
    )


def test_the_shipped_hard_stops_can_never_be_overridden() -> None:
    cases = [
        (
            make_facts(patient=make_patient(egfr="25")),
            "magnesium",
            "contraindication:magnesium-kidney",
        ),
        (
            make_facts(patient=make_patient(conditions=("hemochromatosis",))),
            "iron",
            "contraindication:iron-overload",
        ),
        (
            make_facts(results=(make_result("ferritin", "600", "H"),)),
            "iron",
            "contraindication:iron-overload",
        ),
        (
            make_facts(results=(make_result("calcium-ionized", "1.45", "H"),)),
            "calcium",
            "contraindication:calcium-high",
        ),
        (
            make_facts(results=(make_result("calcium", "2.8", "H"),)),
            "calcium",
            "contraindication:calcium-high",
        ),
    ]
    for facts, mineral, code in cases:
        findings = check(default_rules(), facts, (supplement_item("h", mineral, "10"),))
        [finding] = [f for f in findings if f.code == code]
        assert finding.severity == "blocking", code
        assert not finding.overridable, code
    assert set(default_rules().hard_stops()) >= {
        "contraindication:magnesium-kidney",
        "contraindication:iron-overload",
        "contraindication:calcium-high",
    }


def test_a_hand_edit_that_contradicts_a_restriction_is_a_hard_stop() -> None:
    facts = make_facts(results=(make_result("magnesium", "1.3", "H"),))
    drafted = draft(default_rules(), facts).items
    diet = PlanItem(
        id="hand.diet",
        category=Category.DIET,
        title="Nuts and seeds",
        instruction="A handful a day.",
        rationale="By hand.",
        effects=(MineralEffect(mineral="magnesium", effect="increases"),),
    )
    findings = check(default_rules(), facts, (*drafted, diet))
    [finding] = [f for f in findings if f.code == "contradiction:magnesium"]
    assert finding.severity == "blocking"
    assert not finding.overridable
    assert "hand.diet" in finding.item_ids


def _fact(analyte: str, interpretation: str, hours: int, **extra: object) -> ResultFact:
    base = make_result(analyte, "1", interpretation)
    return dataclasses.replace(
        base,
        result_id=f"{analyte}-{hours}",
        collected_at=base.collected_at + timedelta(hours=hours),
        **extra,  # type: ignore[arg-type]
    )


def test_a_new_critical_result_blocks_and_cannot_be_acknowledged() -> None:
    facts = make_facts(results=(make_result("magnesium", "0.55", "L"),))
    new = _fact("magnesium", "HH", 24, critical=True)
    findings = freshness.check(facts, (), [new], acknowledged={new.result_id})
    codes = _codes(findings)
    assert freshness.NEW_CRITICAL in codes
    assert freshness.acknowledgeable(findings) == set()
    possibly = _fact("calcium", "L", 24, possibly_critical=True)
    assert freshness.NEW_CRITICAL in _codes(freshness.check(facts, (), [possibly]))


def test_a_newer_result_for_a_relied_analyte_blocks_until_acknowledged() -> None:
    facts = make_facts(results=(make_result("magnesium", "0.55", "L"),))
    newer = _fact("magnesium", "N", 24)
    late_older = _fact("magnesium", "N", -24)
    unrelated = _fact("zinc", "N", 24)
    findings = freshness.check(facts, (), [newer, late_older, unrelated])
    assert _codes(findings) == {"newer-result:magnesium"}
    assert freshness.acknowledgeable(findings) == {newer.result_id}
    assert freshness.check(facts, (), [newer], acknowledged={newer.result_id}) == []
    review = freshness.check(facts, (), [], review_reason="A result was withdrawn.")
    assert _codes(review) == {freshness.UNDER_REVIEW}


def test_the_shipped_rule_set_passes_the_import_checks_and_new_fields_are_validated() -> None:
    rules = default_rules()
    assert rules.problems(analytes=ANALYTES, ratios=RATIOS) == []
    assert rules.pregnancy_unknown.age_min_years == 12
    assert rules.pregnancy_unknown.age_max_years == 56
    assert "clinic choice" in rules.pregnancy_unknown.source.lower()
    assert rules.ratio_window.hours == 24
    assert "clinic choice" in rules.ratio_window.source.lower()

    data = rules.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["safety_rules"][0] = {
        **data["safety_rules"][0],
        "severity": "warning",
        "overridable": False,
    }
    supplement = next(i for i, t in enumerate(data["templates"]) if t.get("supplement"))
    mineral = data["templates"][supplement]["supplement"]["mineral"]
    data["templates"][supplement]["effects"] = [{"mineral": mineral, "effect": "restricts"}]
    broken = validate_rule_set(data)
    fields = {p["field"] for p in broken.problems(analytes=ANALYTES, ratios=RATIOS)}
    assert "safety_rules[0].overridable" in fields
    assert f"templates[{supplement}].effects[0]" in fields

    bad_band = {**data, "pregnancy_unknown": {"age_min_years": 50, "age_max_years": 12}}
    with pytest.raises(RuleSetFormatError, match="pregnancy_unknown"):
        validate_rule_set(bad_band)
