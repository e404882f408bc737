"""Every condition kind is handled everywhere: evaluation, description and rule-set checks.

mypy proves this statically (each `match` ends in `assert_never`); this test proves it at run
time and fails when a kind is added to the `Condition` union without a sample here.
"""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import BaseModel

from app.domain.plans.condition_checks import node_has_numbers, node_problem
from app.domain.plans.conditions import Condition, FactAtom, parse_condition
from app.domain.plans.evaluation import describe, evaluate
from tests.domain.plans import (
    ANALYTES,
    RATIOS,
    make_facts,
    make_patient,
    make_result,
    supplement_item,
)

# One valid sample of every kind, keyed by its single key.
SAMPLES: dict[str, dict[str, Any]] = {
    "all": {"all": [{"critical": True}]},
    "any": {"any": [{"critical": True}]},
    "not": {"not": {"critical": True}},
    "result": {"result": {"analyte": "magnesium", "interpretation": ["L"]}},
    "result_missing": {"result_missing": "ferritin"},
    "critical": {"critical": True},
    "ratio": {"ratio": {"code": "ca_mg_molar", "interpretation": ["H"]}},
    "sleep": {"sleep": {"category": ["moderate"]}},
    "patient": {"patient": {"pregnant": False}},
    "medication": {"medication": "levothyroxine"},
    "condition": {"condition": "chronic-kidney-disease"},
    "diet": {"diet": ["vegan"]},
    "caffeine_servings_above": {"caffeine_servings_above": 3},
    "alcohol_drinks_per_week_above": {"alcohol_drinks_per_week_above": 7},
    "item": {"item": {"mineral": "magnesium"}},
}


def _union_members(annotated: Any) -> set[type[BaseModel]]:
    """The model classes of the (possibly `Annotated`, tagged) union."""
    union = get_args(annotated)[0] if hasattr(annotated, "__metadata__") else annotated
    members: set[type[BaseModel]] = set()
    for member in get_args(union):
        model = get_args(member)[0] if hasattr(member, "__metadata__") else member
        members.add(model)
    return members


def test_every_kind_has_a_sample() -> None:
    parsed = {type(parse_condition(sample)) for sample in SAMPLES.values()}
    assert parsed == _union_members(Condition)


def test_fact_atoms_are_the_kinds_without_children_or_items() -> None:
    kinds = {type(parse_condition(SAMPLES[key])) for key in ("all", "any", "not", "item")}
    assert _union_members(FactAtom) == _union_members(Condition) - kinds


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_kind_evaluates_describes_and_validates(kind: str) -> None:
    condition = parse_condition(SAMPLES[kind])
    facts = make_facts(results=(make_result("magnesium", "0.55", "L"),))
    items = (supplement_item("mg-1", "magnesium", "200"),)
    match = evaluate(condition, facts, items)
    assert isinstance(match.ok, bool)
    assert all(isinstance(text, str) and text for text in describe(condition, facts))
    assert node_problem(condition, ANALYTES, RATIOS) is None
    assert isinstance(node_has_numbers(condition), bool)


def test_unknown_kind_is_rejected_with_the_list_of_kinds() -> None:
    with pytest.raises(ValueError, match="exactly one key") as caught:
        parse_condition({"weather": "sunny"})
    for kind in SAMPLES:
        assert kind in str(caught.value)


# What each kind holds and says for a patient with everything on record (clinician-facing text).
RECORDED = {
    "all": (False, ("no critical result",)),
    "any": (False, ("no critical result",)),
    "not": (True, ("no critical result",)),
    "result": (True, ("magnesium 0.55 mmol/L (L)",)),
    "result_missing": (True, ("ferritin: no result on record",)),
    "critical": (False, ("no critical result",)),
    "ratio": (False, ("Ca:Mg molar ratio: not available",)),
    "sleep": (True, ("Insomnia Severity Index 15 (moderate, 2026-02-27)",)),
    "patient": (False, ("pregnant",)),
    "medication": (True, ("taking levothyroxine",)),
    "condition": (True, ("condition: chronic-kidney-disease",)),
    "diet": (True, ("diet: vegan",)),
    "caffeine_servings_above": (True, ("caffeine 5 servings/day",)),
    "alcohol_drinks_per_week_above": (True, ("alcohol 10 drinks/week",)),
    "item": (True, ()),
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_kind_describes_what_it_looks_at(kind: str) -> None:
    patient = make_patient(
        pregnant=True,
        medications=("levothyroxine",),
        conditions=("chronic-kidney-disease",),
        diet="vegan",
        caffeine=5,
        alcohol=10,
    )
    facts = make_facts(patient=patient, isi=15, results=(make_result("magnesium", "0.55", "L"),))
    condition = parse_condition(SAMPLES[kind])
    match = evaluate(condition, facts, (supplement_item("mg-1", "magnesium", "200"),))
    assert (match.ok, describe(condition, facts)) == RECORDED[kind]
