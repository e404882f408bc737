from __future__ import annotations

from decimal import Decimal

import pytest

from app.domain.plans.safety import check, daily_totals, upper_limit
from tests.domain.plans import (
    default_rules,
    make_facts,
    make_patient,
    make_result,
    supplement_item,
    urgent_referral_item,
)


@pytest.mark.parametrize(
    ("mineral", "age", "sex", "amount", "applies"),
    [
        ("magnesium", 2, "male", "65", "1-3"),
        ("magnesium", 6, "male", "110", "4-8"),
        ("magnesium", 40, "female", "350", "9 y and older"),
        ("calcium", 16, "female", "3000", "9-18"),
        ("calcium", 30, "male", "2500", "19-50"),
        ("calcium", 51, "male", "2000", "51 y"),
        ("zinc", 10, "male", "23", "9-13"),
        ("zinc", 16, "male", "34", "14-18"),
        ("zinc", 19, "male", "40", "19 y"),
        ("iron", 13, "female", "40", "13 y"),
        ("iron", 14, "female", "45", "14 y"),
        ("copper", 12, "female", "5", "9-13"),
        ("copper", 17, "female", "8", "14-18"),
        ("copper", 70, "other", "10", "19 y"),
    ],
)
def test_upper_limits_by_age_band(
    mineral: str, age: int, sex: str, amount: str, applies: str
) -> None:
    limit = upper_limit(default_rules(), mineral, make_patient(age_years=age, sex=sex))
    assert limit is not None
    assert limit.amount == Decimal(amount)
    assert applies in limit.applies_to
    assert limit.unit == "mg"
    assert "ods.od.nih.gov" in limit.source


def test_pregnancy_and_lactation_rows_apply_and_say_so() -> None:
    pregnant = upper_limit(default_rules(), "calcium", make_patient(age_years=17, pregnant=True))
    assert pregnant is not None
    assert pregnant.amount == Decimal(3000)
    assert "pregnancy" in pregnant.applies_to
    lactating = upper_limit(default_rules(), "zinc", make_patient(age_years=30, lactating=True))
    assert lactating is not None
    assert "lactation" in lactating.applies_to


def test_unknown_age_uses_the_lowest_band() -> None:
    limit = upper_limit(default_rules(), "iron", make_patient(age_years=None))
    assert limit is not None
    assert limit.amount == Decimal(40)
    assert "age not on record" in limit.applies_to


def test_no_row_gives_none_and_an_overridable_block() -> None:
    infant = make_patient(age_years=0)
    assert upper_limit(default_rules(), "copper", infant) is None
    findings = check(
        default_rules(), make_facts(patient=infant), (supplement_item("c", "copper", "1"),)
    )
    assert [f.code for f in findings] == ["upper-limit-unknown:copper"]
    assert findings[0].overridable


def test_daily_totals_sum_dose_times_doses_per_day() -> None:
    items = (
        supplement_item("a", "magnesium", "100", doses_per_day=2),
        supplement_item("b", "magnesium", "150"),
        supplement_item("c", "zinc", "12.5", doses_per_day=2),
    )
    assert daily_totals(items) == {"magnesium": Decimal(350), "zinc": Decimal(25)}


def test_total_at_the_limit_passes_and_above_it_is_a_hard_stop() -> None:
    facts = make_facts()
    at_limit = (supplement_item("a", "magnesium", "175", doses_per_day=2),)
    assert check(default_rules(), facts, at_limit) == ()
    over = (*at_limit, supplement_item("b", "magnesium", "1"))
    [finding] = [
        f for f in check(default_rules(), facts, over) if f.code == "upper-limit:magnesium"
    ]
    assert finding.severity == "blocking"
    assert finding.overridable is False
    assert finding.item_ids == ("a", "b")
    assert "351 mg/day" in finding.message


@pytest.mark.parametrize(
    "medication", ["tetracycline", "fluoroquinolone", "levothyroxine", "bisphosphonate"]
)
def test_one_interaction_finding_per_mineral_and_medication(medication: str) -> None:
    facts = make_facts(patient=make_patient(medications=(medication, "proton-pump-inhibitor")))
    items = (supplement_item("z", "zinc", "10"), supplement_item("f", "iron", "20"))
    findings = check(default_rules(), facts, items)
    interaction_codes = sorted(f.code for f in findings if f.code.startswith("interaction:"))
    assert interaction_codes == [f"interaction:iron-{medication}", f"interaction:zinc-{medication}"]
    zinc = next(f for f in findings if f.code == f"interaction:zinc-{medication}")
    assert zinc.item_ids == ("z",)
    assert "hours" in zinc.message
    info = [f for f in findings if f.code == "caution:magnesium-loss-ppi"]
    assert info
    assert info[0].severity == "info"


def test_findings_are_ordered_blocking_first_and_deterministic() -> None:
    facts = make_facts(
        patient=make_patient(medications=("tetracycline", "loop-diuretic")),
        results=(make_result("calcium", "3.9", "HH", critical=True),),
    )
    items = (supplement_item("m", "magnesium", "400"), supplement_item("c", "calcium", "500"))
    findings = check(default_rules(), facts, items)
    ranks = [{"blocking": 0, "warning": 1, "info": 2}[f.severity] for f in findings]
    assert ranks == sorted(ranks)
    assert findings == check(default_rules(), facts, tuple(reversed(items)))
    assert {"critical-without-urgent-referral", "upper-limit:magnesium"} <= {
        f.code for f in findings
    }
    with_referral = check(default_rules(), facts, (*items, urgent_referral_item()))
    assert "critical-without-urgent-referral" not in {f.code for f in with_referral}
