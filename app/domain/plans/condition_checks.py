"""What the rule-set checks need to know about each condition kind (see `rules.py`).

Both checks `match` over every kind with `assert_never`, so a new kind that is not handled here
fails mypy (and `tests/domain/plans/test_condition_kinds.py`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import assert_never

from app.domain.plans.conditions import (
    AlcoholAtom,
    AllOf,
    AnyOf,
    CaffeineAtom,
    Condition,
    ConditionAtom,
    CriticalAtom,
    DietAtom,
    ItemAtom,
    MedicationAtom,
    Not,
    PatientAtom,
    RatioAtom,
    ResultAtom,
    ResultMissingAtom,
    SleepAtom,
    walk,
)
from app.domain.plans.facts import CONDITIONS, DIET_PATTERNS, MEDICATION_CLASSES


def condition_problems(
    where: str, condition: Condition, analytes: set[str], ratios: set[str]
) -> list[dict[str, str]]:
    """Unknown codes anywhere in a condition tree, one problem per offending node."""
    messages = (node_problem(node, analytes, ratios) for node in walk(condition))
    return [{"field": where, "message": message} for message in messages if message is not None]


def node_problem(node: Condition, analytes: set[str], ratios: set[str]) -> str | None:
    """What is wrong with one node by itself (its children are checked on their own)."""
    match node:
        case ResultAtom():
            return _unknown_analyte(node.result.analyte, analytes)
        case ResultMissingAtom():
            return _unknown_analyte(node.result_missing, analytes)
        case RatioAtom():
            code = node.ratio.code
            return None if code in ratios else f"unknown ratio code {code!r}"
        case MedicationAtom():
            return _unknown_codes("medication class", node.medication, MEDICATION_CLASSES)
        case ConditionAtom():
            return _unknown_codes("condition", node.condition, CONDITIONS)
        case DietAtom():
            return _unknown_codes("diet pattern", node.diet, DIET_PATTERNS)
        case (
            AllOf()
            | AnyOf()
            | Not()
            | CriticalAtom()
            | SleepAtom()
            | PatientAtom()
            | CaffeineAtom()
            | AlcoholAtom()
            | ItemAtom()
        ):
            # Nothing outside the document to check: the schema already bounds their values.
            return None
        case _:
            assert_never(node)


def has_numbers(condition: Condition) -> bool:
    """Whether any node states a numeric threshold (a generation rule then needs a source)."""
    return any(node_has_numbers(node) for node in walk(condition))


def node_has_numbers(node: Condition) -> bool:
    match node:
        case ResultAtom():
            return node.result.below is not None or node.result.above is not None
        case RatioAtom():
            return node.ratio.below is not None or node.ratio.above is not None
        case SleepAtom():
            return node.sleep.total_at_least is not None or node.sleep.total_below is not None
        case PatientAtom():
            test = node.patient
            numbers = (
                test.egfr_below,
                test.egfr_at_least,
                test.egfr_older_than_days,
                test.age_at_least,
                test.age_below,
            )
            return any(number is not None for number in numbers)
        case CaffeineAtom() | AlcoholAtom():
            return True
        case (
            AllOf()
            | AnyOf()
            | Not()
            | ResultMissingAtom()
            | CriticalAtom()
            | MedicationAtom()
            | ConditionAtom()
            | DietAtom()
            | ItemAtom()
        ):
            # Item atoms only appear in safety rules, which always carry a source.
            return False
        case _:
            assert_never(node)


def _unknown_analyte(analyte: str, analytes: set[str]) -> str | None:
    return None if analyte in analytes else f"unknown analyte {analyte!r}"


def _unknown_codes(what: str, codes: Iterable[str], known: Collection[str]) -> str | None:
    unknown = [code for code in codes if code not in known]
    return f"unknown {what} {', '.join(unknown)}" if unknown else None
