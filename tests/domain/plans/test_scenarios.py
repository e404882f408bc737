"""Whole-plan scenarios on the shipped rule set: items, doses and safety findings."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from app.domain.plans.engine import Draft, draft
from app.domain.plans.items import Category, PlanItem, SafetyFinding
from app.domain.plans.rules import parse_rule_set_yaml
from app.domain.plans.safety import check, daily_totals, upper_limit
from tests.domain.plans import (
    DEFAULT_YAML,
    TODAY,
    default_rules,
    make_facts,
    make_patient,
    make_result,
    supplement_item,
)

LOW_MG = make_result("magnesium", "0.55", "L")


def supplements(result: Draft, mineral: str) -> list[PlanItem]:
    return [
        item
        for item in result.items
        if item.supplement is not None and item.supplement.mineral == mineral
    ]


def codes(findings: tuple[SafetyFinding, ...]) -> list[str]:
    return [finding.code for finding in findings]


def no_hard_stop(findings: tuple[SafetyFinding, ...]) -> bool:
    return not any(f.severity == "blocking" and not f.overridable for f in findings)


def test_low_magnesium_with_moderate_insomnia() -> None:
    facts = make_facts(results=(LOW_MG,), isi=18)
    result = draft(default_rules(), facts)
    [magnesium] = supplements(result, "magnesium")
    assert magnesium.supplement is not None
    assert magnesium.supplement.timing == "evening"
    assert magnesium.supplement.form == "magnesium glycinate"
    limit = upper_limit(default_rules(), "magnesium", facts.patient)
    assert limit is not None
    assert daily_totals(result.items)["magnesium"] == Decimal(200) <= limit.amount
    categories = {item.category for item in result.items}
    assert {Category.SLEEP_HYGIENE, Category.RELAXATION, Category.STRESS_MANAGEMENT} <= categories
    [retest] = [i for i in result.items if i.retest and "magnesium" in i.retest.analytes]
    assert retest.retest is not None
    assert retest.retest.due_date == TODAY + timedelta(days=70)
    assert magnesium.id == "magnesium-low.magnesium-glycinate-evening"
    assert magnesium.rule_id == "magnesium-low"
    assert "magnesium 0.55 mmol/L (L)" in magnesium.rationale
    assert "magnesium-low" in magnesium.rationale
    assert magnesium.source
    assert "LL" not in magnesium.instruction
    # magnesium items come before the sleep items (priority)
    ids = [item.id for item in result.items]
    assert ids.index(magnesium.id) < ids.index("insomnia-moderate-severe.sleep-hygiene")
    fired = {rule.rule_id: rule for rule in result.fired}
    assert fired["magnesium-low"].findings[0] == "magnesium 0.55 mmol/L (L)"
    assert no_hard_stop(check(default_rules(), facts, result.items))


def test_low_magnesium_with_egfr_25_gets_no_supplement_but_a_referral() -> None:
    facts = make_facts(results=(LOW_MG,), patient=make_patient(egfr="25"), isi=18)
    result = draft(default_rules(), facts)
    assert supplements(result, "magnesium") == []
    referrals = [i for i in result.items if i.category is Category.REFERRAL]
    assert [i.template_id for i in referrals] == ["magnesium-kidney-referral"]
    assert any(i.template_id == "magnesium-diet" for i in result.items)
    # a clinician adding magnesium by hand hits a hard stop (never overridable)
    edited = (*result.items, supplement_item("hand.mg", "magnesium", "100"))
    findings = check(default_rules(), facts, edited)
    [kidney] = [f for f in findings if f.code == "contraindication:magnesium-kidney"]
    assert kidney.severity == "blocking"
    assert not kidney.overridable
    assert kidney.item_ids == ("hand.mg",)


def test_magnesium_with_moderate_or_unknown_kidney_function_warns() -> None:
    item = supplement_item("hand.mg", "magnesium", "200")
    moderate = make_facts(patient=make_patient(egfr="45"))
    assert "caution:magnesium-kidney" in codes(check(default_rules(), moderate, (item,)))
    unknown = make_facts(patient=make_patient(egfr=None))
    assert "caution:magnesium-egfr-unknown" in codes(check(default_rules(), unknown, (item,)))


def test_low_zinc_stays_within_the_upper_limit_and_notes_copper() -> None:
    facts = make_facts(results=(make_result("zinc", "8.1", "L"),))
    result = draft(default_rules(), facts)
    [zinc] = supplements(result, "zinc")
    assert zinc.supplement is not None
    assert zinc.supplement.daily_amount <= Decimal(40)
    findings = check(default_rules(), facts, result.items)
    [copper] = [f for f in findings if f.code == "interaction:zinc-copper"]
    assert copper.severity == "warning"
    assert copper.item_ids == (zinc.id,)
    assert no_hard_stop(findings)
    assert any(i.retest and "copper" in i.retest.analytes for i in result.items)


def test_low_iron_and_ferritin_with_a_clinician_added_calcium() -> None:
    facts = make_facts(
        results=(make_result("iron", "6", "L"), make_result("ferritin", "9", "L")),
    )
    result = draft(default_rules(), facts)
    [iron] = supplements(result, "iron")
    assert iron.supplement is not None
    assert iron.supplement.daily_amount <= Decimal(45)
    assert any(i.template_id == "iron-vitamin-c-diet" for i in result.items)
    [retest] = [i for i in result.items if i.template_id == "retest-ferritin-iron"]
    assert retest.retest is not None
    assert set(retest.retest.analytes) == {"ferritin", "iron"}
    calcium = supplement_item("hand.calcium", "calcium", "500")
    findings = check(default_rules(), facts, (*result.items, calcium))
    [spacing] = [f for f in findings if f.code == "interaction:calcium-iron"]
    assert spacing.severity == "warning"
    assert set(spacing.item_ids) == {iron.id, "hand.calcium"}
    assert "2 hours" in spacing.message
    assert spacing.source


def test_low_iron_without_ferritin_asks_for_ferritin_first() -> None:
    facts = make_facts(results=(make_result("iron", "6", "L"),))
    result = draft(default_rules(), facts)
    assert supplements(result, "iron") == []
    assert any(i.template_id == "retest-ferritin-now" for i in result.items)
    findings = check(default_rules(), facts, (supplement_item("hand.fe", "iron", "30"),))
    assert "caution:iron-without-ferritin" in codes(findings)


def test_high_ferritin_gets_no_iron_and_hand_added_iron_is_blocked() -> None:
    facts = make_facts(results=(make_result("ferritin", "900", "H"),))
    result = draft(default_rules(), facts)
    assert supplements(result, "iron") == []
    assert any(i.template_id == "iron-overload-referral" for i in result.items)
    assert any(i.template_id == "iron-high-diet" for i in result.items)
    findings = check(default_rules(), facts, (*result.items, supplement_item("x", "iron", "30")))
    [block] = [f for f in findings if f.code == "contraindication:iron-overload"]
    assert block.severity == "blocking"
    assert block.item_ids == ("x",)
    assert findings[0].severity == "blocking"


def test_hemochromatosis_blocks_iron() -> None:
    facts = make_facts(patient=make_patient(conditions=("hemochromatosis",)))
    findings = check(default_rules(), facts, (supplement_item("x", "iron", "20"),))
    assert "contraindication:iron-overload" in codes(findings)


def test_low_calcium_with_low_magnesium_repletes_magnesium_first() -> None:
    facts = make_facts(results=(LOW_MG, make_result("calcium", "1.98", "L")))
    result = draft(default_rules(), facts)
    assert supplements(result, "calcium") == []
    assert len(supplements(result, "magnesium")) == 1
    [deferred] = [i for i in result.items if i.template_id == "retest-calcium-after-magnesium"]
    assert deferred.retest is not None
    assert set(deferred.retest.analytes) == {"calcium", "magnesium"}
    assert "PTH" in deferred.rationale
    magnesium_priority = max(i.priority for i in result.items if i.rule_id == "magnesium-low")
    calcium_priority = min(i.priority for i in result.items if "calcium" in (i.rule_id or ""))
    assert magnesium_priority < calcium_priority


def test_low_calcium_with_normal_magnesium_gets_calcium() -> None:
    facts = make_facts(
        results=(make_result("magnesium", "0.85", "N"), make_result("calcium", "1.98", "L"))
    )
    result = draft(default_rules(), facts)
    [calcium] = supplements(result, "calcium")
    assert calcium.supplement is not None
    assert calcium.supplement.dose == Decimal(500)


def test_high_calcium_refers_and_blocks_calcium() -> None:
    facts = make_facts(results=(make_result("calcium", "2.8", "H"),))
    result = draft(default_rules(), facts)
    assert supplements(result, "calcium") == []
    assert any(i.template_id == "calcium-high-referral" for i in result.items)
    findings = check(default_rules(), facts, (supplement_item("x", "calcium", "500"),))
    assert "contraindication:calcium-high" in codes(findings)


def test_critical_calcium_puts_an_urgent_referral_first() -> None:
    critical = make_result("calcium", "3.9", "HH", critical=True)
    facts = make_facts(results=(critical, LOW_MG), isi=25)
    result = draft(default_rules(), facts)
    first = result.items[0]
    assert first.referral is not None
    assert first.referral.urgent
    assert first.priority == 0
    assert "calcium 3.9 mmol/L (HH, critical)" in first.rationale
    assert no_hard_stop(check(default_rules(), facts, result.items))
    # removing the urgent referral by hand is a hard stop
    edited = result.items[1:]
    findings = check(default_rules(), facts, edited)
    assert findings[0].code == "critical-without-urgent-referral"
    assert findings[0].overridable is False


def test_severe_insomnia_refers_for_cbt_i_and_subthreshold_gets_hygiene() -> None:
    severe = draft(default_rules(), make_facts(isi=24))
    assert any(i.template_id == "cbti-referral" for i in severe.items)
    mild = draft(default_rules(), make_facts(isi=10))
    templates = {i.template_id for i in mild.items}
    assert "sleep-hygiene" in templates
    assert "cbti-referral" not in templates
    assert "valerian" not in templates


def test_caffeine_and_alcohol_items() -> None:
    facts = make_facts(patient=make_patient(caffeine=5, alcohol=10))
    templates = {i.template_id for i in draft(default_rules(), facts).items}
    assert {"caffeine-advice", "alcohol-advice"} <= templates
    moderate = make_facts(patient=make_patient(caffeine=3, alcohol=7))
    assert draft(default_rules(), moderate).items == ()


def test_sedative_hypnotic_excludes_valerian_and_chamomile_is_cautioned() -> None:
    facts = make_facts(patient=make_patient(medications=("sedative-hypnotic",)), isi=18)
    result = draft(default_rules(), facts)
    templates = {i.template_id for i in result.items}
    assert "valerian" not in templates
    assert "chamomile-tea" in templates
    assert "interaction:herbal-sedative" in codes(check(default_rules(), facts, result.items))


def test_pregnancy() -> None:
    patient = make_patient(pregnant=True, age_years=30)
    facts = make_facts(patient=patient, results=(LOW_MG,), isi=18)
    result = draft(default_rules(), facts)
    assert "valerian" not in {i.template_id for i in result.items}
    limit = upper_limit(default_rules(), "magnesium", patient)
    assert limit is not None
    assert limit.amount == Decimal(350)
    assert "pregnancy" in limit.applies_to
    assert no_hard_stop(check(default_rules(), facts, result.items))
    # hand-added valerian in pregnancy is cautioned
    assert "caution:valerian-pregnancy" in codes(
        check(default_rules(), facts, (*result.items, *_valerian(result, facts)))
    )
    # a clinic with a lower pregnancy limit sees the drafted dose blocked
    text = DEFAULT_YAML.read_text(encoding="utf-8").replace(
        "- {mineral: magnesium, amount: 350, age_min_years: 14, life_stage: pregnancy",
        "- {mineral: magnesium, amount: 150, age_min_years: 14, life_stage: pregnancy",
    )
    custom = parse_rule_set_yaml(text)
    custom_limit = upper_limit(custom, "magnesium", patient)
    assert custom_limit is not None
    assert custom_limit.amount == Decimal(150)
    findings = check(custom, facts, result.items)
    [block] = [f for f in findings if f.code == "upper-limit:magnesium"]
    assert block.overridable is False
    assert "150" in block.message
    assert "pregnancy" in block.message
    not_pregnant = make_patient(age_years=30)
    assert upper_limit(custom, "magnesium", not_pregnant).amount == Decimal(350)  # type: ignore[union-attr]


def _valerian(result: Draft, facts: object) -> tuple[PlanItem, ...]:
    non_pregnant = draft(default_rules(), make_facts(results=(LOW_MG,), isi=18))
    return tuple(i for i in non_pregnant.items if i.template_id == "valerian")


def test_minor_gets_no_adult_supplement_dose() -> None:
    facts = make_facts(patient=make_patient(age_years=12), results=(LOW_MG,))
    result = draft(default_rules(), facts)
    assert supplements(result, "magnesium") == []
    assert any(i.template_id == "supplement-dosing-review" for i in result.items)


def test_two_rules_proposing_one_template_make_one_item_naming_both() -> None:
    from app.domain.plans.facts import RatioFact

    # The ratio comes from the panel the magnesium and calcium results come from.
    ratio = RatioFact(
        code="ca_mg_molar", value=Decimal("4.5"), interpretation="H", panel_id="panel-1"
    )
    calcium = make_result("calcium", "2.4", "N")
    facts = make_facts(results=(LOW_MG, calcium), ratios=(ratio,))
    result = draft(default_rules(), facts)
    diet = [i for i in result.items if i.template_id == "magnesium-diet"]
    assert len(diet) == 1
    assert diet[0].id == "magnesium-low.magnesium-diet"
    assert "ca-mg-ratio-high" in diet[0].rationale
    assert len({i.id for i in result.items}) == len(result.items)
