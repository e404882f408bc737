from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from app.domain.plans.conditions import parse_condition
from app.domain.plans.evaluation import evaluate
from app.domain.plans.facts import PlanFacts, RatioFact
from app.domain.plans.items import Category, Herbal, PlanItem
from tests.domain.plans import make_facts, make_patient, make_result, supplement_item

LOW_MG = make_result("magnesium", "0.55", "L")


def holds(condition: dict[str, Any], facts: PlanFacts, items: tuple[PlanItem, ...] = ()) -> bool:
    return evaluate(parse_condition(condition), facts, items).ok


@pytest.mark.parametrize(
    ("interpretations", "expected"),
    [(["L", "LL"], True), (["H"], False), ("L", True)],
)
def test_result_interpretation_atom(interpretations: Any, expected: bool) -> None:
    facts = make_facts(results=(LOW_MG,))
    condition = {"result": {"analyte": "magnesium", "interpretation": interpretations}}
    assert holds(condition, facts) is expected


def test_result_atom_is_false_without_a_result() -> None:
    condition = {"result": {"analyte": "magnesium", "interpretation": ["L"]}}
    assert holds(condition, make_facts()) is False
    assert holds({"not": condition}, make_facts()) is True


@pytest.mark.parametrize(
    ("value", "comparator", "below", "expected"),
    [
        ("12", None, "30", True),
        ("30", None, "30", False),
        ("31", None, "30", False),
        ("5", "<", "30", True),  # "<5" is certainly below 30
        ("30", "<", "30", True),  # "<30" is below 30
        ("10", ">", "30", False),  # ">10" might be anything above 10
    ],
)
def test_result_below_threshold_respects_comparator(
    value: str, comparator: str | None, below: str, expected: bool
) -> None:
    ferritin = make_result("ferritin", value, None, comparator=comparator)
    condition = {"result": {"analyte": "ferritin", "below": below, "unit": "ug/L"}}
    assert holds(condition, make_facts(results=(ferritin,))) is expected


def test_result_above_threshold() -> None:
    ferritin = make_result("ferritin", "500", "H")
    condition = {"result": {"analyte": "ferritin", "above": 400, "unit": "ug/L"}}
    assert holds(condition, make_facts(results=(ferritin,)))
    lower = make_result("ferritin", "500", None, comparator="<")
    assert not holds(condition, make_facts(results=(lower,)))


def test_threshold_in_another_unit_never_holds() -> None:
    ferritin = make_result("ferritin", "12", "L", unit="ng/mL")
    condition = {"result": {"analyte": "ferritin", "below": 30, "unit": "ug/L"}}
    assert not holds(condition, make_facts(results=(ferritin,)))


def test_result_missing_and_critical_atoms() -> None:
    critical = make_result("calcium", "3.8", "HH", critical=True)
    facts = make_facts(results=(LOW_MG, critical))
    assert holds({"result_missing": "ferritin"}, facts)
    assert not holds({"result_missing": "magnesium"}, facts)
    assert holds({"critical": True}, facts)
    assert not holds({"critical": True}, make_facts(results=(LOW_MG,)))
    assert holds({"critical": False}, make_facts(results=(LOW_MG,)))


def test_ratio_atom() -> None:
    ratio = RatioFact(code="ca_mg_molar", value=Decimal("4.2"), interpretation="H", panel_id="p")
    facts = make_facts(ratios=(ratio,))
    assert holds({"ratio": {"code": "ca_mg_molar", "interpretation": ["H"]}}, facts)
    assert holds({"ratio": {"code": "ca_mg_molar", "above": 4}}, facts)
    assert not holds({"ratio": {"code": "zn_cu_molar", "interpretation": ["L", "H"]}}, facts)


def test_sleep_atoms_and_missing_sleep() -> None:
    facts = make_facts(isi=18)
    assert holds({"sleep": {"category": ["moderate", "severe"]}}, facts)
    assert holds({"sleep": {"total_at_least": 15}}, facts)
    assert not holds({"sleep": {"total_at_least": 22}}, facts)
    assert not holds({"sleep": {"total_at_least": 0}}, make_facts())


@pytest.mark.parametrize(
    ("test", "egfr", "expected"),
    [
        ({"egfr_below": 30}, "25", True),
        ({"egfr_below": 30}, "30", False),
        ({"egfr_below": 30}, None, False),
        ({"egfr_at_least": 30}, "30", True),
        ({"egfr_at_least": 30}, None, False),
        ({"egfr_missing": True}, None, True),
        ({"egfr_missing": True}, "45", False),
    ],
)
def test_egfr_atoms_treat_unknown_egfr_as_not_matching(
    test: dict[str, Any], egfr: str | None, expected: bool
) -> None:
    facts = make_facts(patient=make_patient(egfr=egfr))
    assert holds({"patient": test}, facts) is expected


def test_patient_atoms() -> None:
    pregnant = make_facts(patient=make_patient(pregnant=True, age_years=30, sex="female"))
    assert holds({"patient": {"pregnant": True}}, pregnant)
    assert not holds({"patient": {"lactating": True}}, pregnant)
    assert holds({"patient": {"age_at_least": 19, "sex": "female"}}, pregnant)
    assert not holds({"patient": {"age_at_least": 51}}, pregnant)
    unknown_age = make_facts(patient=make_patient(age_years=None))
    assert not holds({"patient": {"age_at_least": 19}}, unknown_age)
    assert not holds({"patient": {"age_below": 19}}, unknown_age)


def test_context_atoms() -> None:
    patient = make_patient(
        medications=("levothyroxine",),
        conditions=("hemochromatosis",),
        diet="vegan",
        caffeine=4,
        alcohol=7,
    )
    facts = make_facts(patient=patient)
    assert holds({"medication": "levothyroxine"}, facts)
    assert holds({"medication": ["tetracycline", "levothyroxine"]}, facts)
    assert not holds({"medication": "tetracycline"}, facts)
    assert holds({"condition": "hemochromatosis"}, facts)
    assert holds({"diet": ["vegetarian", "vegan"]}, facts)
    assert holds({"caffeine_servings_above": 3}, facts)
    assert not holds({"alcohol_drinks_per_week_above": 7}, facts)
    unknown = make_facts(patient=make_patient())
    assert not holds({"caffeine_servings_above": 0}, unknown)
    assert not holds({"diet": ["omnivore"]}, unknown)


def test_combinators_and_findings() -> None:
    facts = make_facts(results=(LOW_MG,), patient=make_patient(egfr="45"))
    condition = parse_condition(
        {
            "all": [
                {"result": {"analyte": "magnesium", "interpretation": ["L", "LL"]}},
                {"not": {"patient": {"egfr_below": 30}}},
                {"any": [{"medication": "tetracycline"}, {"patient": {"sex": "female"}}]},
            ]
        }
    )
    match = evaluate(condition, facts)
    assert match.ok
    assert match.findings == ("magnesium 0.55 mmol/L (L)", "eGFR 45 mL/min/1.73 m2", "sex female")
    assert not evaluate(parse_condition({"any": [{"critical": True}]}), facts).ok


def test_item_atoms_match_items_and_collect_their_ids() -> None:
    facts = make_facts()
    zinc = supplement_item("z1", "zinc", "25", duration_days=84)
    zinc_short = supplement_item("z2", "zinc", "10", duration_days=14)
    tea = PlanItem(
        id="tea",
        category=Category.HERBAL,
        title="Valerian",
        instruction="x",
        rationale="y",
        herbal=Herbal(name="Valerian root", sedative=True),
    )
    items = (zinc, zinc_short, tea)
    match = evaluate(
        parse_condition(
            {"item": {"mineral": "zinc", "daily_at_least": 25, "duration_days_over": 56}}
        ),
        facts,
        items,
    )
    assert match.ok
    assert match.item_ids == ("z1",)
    assert not holds({"item": {"mineral": "zinc", "daily_at_least": 36}}, facts, items)
    assert holds({"item": {"mineral": "zinc", "daily_at_least": 35}}, facts, items)  # summed
    assert holds({"item": {"herbal_sedative": True}}, facts, items)
    assert holds({"item": {"herbal_name": "valerian"}}, facts, items)
    assert not holds({"item": {"category": "referral"}}, facts, items)
    indefinite = supplement_item("z3", "zinc", "30")
    assert holds({"item": {"mineral": "zinc", "duration_days_over": 56}}, facts, (indefinite,))


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"resutl": {"analyte": "zinc"}}, ()),
        ({"all": [{"result": {"analyte": "zinc", "interpretation": ["X"]}}]}, ("all", "all", 0)),
        ({"result": {"analyte": "zinc", "below": 3}}, ("result",)),
        ({"patient": {}}, ("patient",)),
        ({"medication": "x", "diet": "vegan"}, ()),
        ({"sleep": {"category": ["awful"]}}, ("sleep",)),
    ],
)
def test_malformed_conditions_are_rejected(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_condition(data)
    assert caught.value.errors()[0]["loc"][: len(loc)] == loc
