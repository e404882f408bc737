"""The clinical path as a whole (``app.domain.pipeline``): results as sent, the default range
set and the patient's facts in, one interpreted panel out, read as a table of cases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any

import pytest

from app.domain.catalog import default_catalog
from app.domain.pipeline import (
    ImpossibleResultsError,
    InterpretedPanel,
    UnacceptableResultsError,
    interpret_panel,
    normalize_results,
)
from app.domain.types import InterpretationCode, PatientFacts, Sex
from app.panels.schemas import ResultIn
from app.ranges.compiled import CompiledRangeSet, compile_rows, ratio_definitions
from app.ranges.service import default_document

ON_DATE = date(2026, 11, 20)
ADULT = PatientFacts(sex=Sex.FEMALE, birth_date=date(1980, 1, 1), on_date=ON_DATE)
NO_BIRTH_DATE = PatientFacts(sex=Sex.FEMALE, birth_date=None, on_date=ON_DATE)
SEX_UNKNOWN = PatientFacts(sex=Sex.UNKNOWN, birth_date=date(1980, 1, 1), on_date=ON_DATE)


@cache
def _default_set() -> CompiledRangeSet:
    document = default_document()
    rows, original_units = compile_rows(document.rows, default_catalog())
    return CompiledRangeSet(
        id=uuid.UUID(int=1),
        name=document.name,
        version=1,
        rows_by_analyte=rows,
        ratios=ratio_definitions(document.ratios),
        original_units=original_units,
    )


def _panel(
    results: list[dict[str, Any]],
    patient: PatientFacts = ADULT,
    *,
    statuses: tuple[str, ...] = (),
    with_ranges: bool = True,
) -> InterpretedPanel:
    sent = [ResultIn.model_validate(r) for r in results]
    normalized = normalize_results(
        sent,
        specimen="serum",
        catalog=default_catalog(),
        status_of=(lambda position: statuses[position]) if statuses else None,
        field="body.results",
    )
    return interpret_panel(
        normalized,
        range_set=_default_set() if with_ranges else None,
        patient=patient,
        specimen="serum",
        refuse_impossible=True,
        field="body.results",
    )


def mg(value: str, **extra: Any) -> dict[str, Any]:
    return {"analyte": "magnesium", "value": value, "unit": "mmol/L", **extra}


@dataclass(frozen=True)
class Case:
    name: str
    results: list[dict[str, Any]]
    patient: PatientFacts = ADULT
    statuses: tuple[str, ...] = ()
    with_ranges: bool = True
    # What the first result's verdict says.
    code: str | None = "N"
    critical: bool = False
    status: str = "interpreted"
    basis: str | None = "reference"
    note_has: str | None = None
    disagreement_has: str | None = None
    # The panel's summary.
    has_critical: bool = False
    ratios: dict[str, str] = field(default_factory=dict)  # code -> value


CASES = [
    Case("normal", [mg("0.85")]),
    Case("low", [mg("0.5")], code="L"),
    Case("critically low", [mg("0.3")], code="LL", critical=True, has_critical=True),
    Case(
        "the sent unit is converted before comparing",
        [{"analyte": "magnesium", "value": "2.0", "unit": "mg/dL"}],
    ),
    Case(
        "critical with no reference row (no birth date): critical limits still apply",
        [mg("0.3")],
        patient=NO_BIRTH_DATE,
        code="LL",
        critical=True,
        status="no-reference-range",
        basis="critical-limits-only",
        note_has="critical limits still applied",
        has_critical=True,
    ),
    Case(
        "no reference row and not critical: no verdict claimed",
        [mg("0.85")],
        patient=NO_BIRTH_DATE,
        code=None,
        status="no-reference-range",
        basis="critical-limits-only",
        note_has="no birth date",
    ),
    Case(
        "sex unknown: checked against every sex's range",
        [{"analyte": "iron", "value": "100", "unit": "ug/dL"}],
        patient=SEX_UNKNOWN,
        note_has="checked against every sex's range",
    ),
    Case(
        "the lab's flag disagrees with ours",
        [mg("0.85", flag="H")],
        disagreement_has="the lab flagged this result high (H)",
    ),
    Case(
        "a critical lab flag makes the result critical for safety",
        [mg("0.85", flag="HH")],
        critical=True,
        has_critical=True,
        disagreement_has="treated as critical, the more cautious of the two",
    ),
    Case(
        "the lab's own range judges when it sends no flag",
        [mg("0.85", reference_range={"text": "0.9-1.2"})],
        disagreement_has="by the lab's own range (0.9-1.2)",
    ),
    Case(
        "ratios of the panel's current results",
        [mg("0.85"), {"analyte": "calcium", "value": "2.4", "unit": "mmol/L"}],
        ratios={"ca_mg_molar": "2.824"},
    ),
    Case(
        "a withdrawn result is never critical and makes no ratio",
        [mg("0.3"), {"analyte": "calcium", "value": "2.4", "unit": "mmol/L"}],
        statuses=("entered-in-error", "final"),
        code="LL",
        note_has="entered-in-error",
    ),
    Case(
        "no active range set: only the lab's flag can speak",
        [mg("0.3", flag="LL")],
        with_ranges=False,
        code=None,
        critical=True,
        status="no-reference-range",
        basis=None,
        note_has="no reference-range set is active",
        disagreement_has="the lab flagged this result critical (LL)",
        has_critical=True,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_panel_is_interpreted_top_to_bottom(case: Case) -> None:
    panel = _panel(case.results, case.patient, statuses=case.statuses, with_ranges=case.with_ranges)
    verdict = panel.verdicts[0]
    assert len(panel.verdicts) == len(case.results)
    assert (verdict.code.value if verdict.code else None) == case.code
    assert verdict.critical is case.critical
    assert verdict.status == case.status
    assert (verdict.reference_range or {}).get("basis") == case.basis
    if case.note_has is not None:
        assert case.note_has in (verdict.note or "")
    if case.disagreement_has is not None:
        assert case.disagreement_has in (verdict.lab_disagreement or "")
    else:
        assert verdict.lab_disagreement is None
    assert panel.has_critical is case.has_critical
    assert {r["code"]: r["value"] for r in panel.ratios} == case.ratios


def test_the_applied_range_is_kept_with_the_result() -> None:
    snapshot = _panel([mg("0.85")]).verdicts[0].reference_range
    assert snapshot is not None
    assert snapshot["range_set"] == {"id": str(uuid.UUID(int=1)), "name": "default", "version": 1}
    assert (snapshot["unit"], snapshot["original_unit"], snapshot["sex"]) == (
        "mmol/L",
        "mg/dL",
        None,
    )
    assert Decimal(snapshot["low"]) < Decimal("0.85") < Decimal(snapshot["high"])


@pytest.mark.parametrize(
    ("sent", "field_at_fault", "message_has"),
    [
        ({"analyte": "nonsense", "value": "1", "unit": "mmol/L"}, "analyte", "Unknown analyte"),
        ({"analyte": "zinc", "value": "1", "unit": "kg"}, "unit", "kg"),
        ({"analyte": "zinc", "value": "abc", "unit": "umol/L"}, "value", "abc"),
        ({"analyte": "zinc", "value": "1.123456789", "unit": "umol/L"}, "value", "decimal"),
        ({"analyte": "magnesium", "value": "1", "unit": "mmol/L"}, "analyte", "already reported"),
    ],
    ids=["unknown analyte", "refused unit", "unreadable value", "too precise", "repeated"],
)
def test_every_refused_result_is_named(
    sent: dict[str, Any], field_at_fault: str, message_has: str
) -> None:
    with pytest.raises(UnacceptableResultsError) as refused:
        _panel([mg("0.85"), sent, {"analyte": "nonsense", "value": "1", "unit": "x"}])
    problems = refused.value.problems
    assert [p["field"] for p in problems] == [
        f"body.results[1].{field_at_fault}",
        "body.results[2].analyte",
    ]
    assert message_has in problems[0]["message"]


def test_an_impossible_value_refuses_the_panel_unless_withdrawn() -> None:
    with pytest.raises(ImpossibleResultsError) as refused:
        _panel([mg("0.85"), {"analyte": "calcium", "value": "900", "unit": "mmol/L"}])
    assert [p["field"] for p in refused.value.problems] == ["body.results[1].value"]

    kept = _panel(
        [{"analyte": "calcium", "value": "900", "unit": "mmol/L"}], statuses=("cancelled",)
    )
    assert kept.verdicts[0].code is None
    assert "held for review" in (kept.verdicts[0].note or "")
    assert not kept.has_critical


def test_interpretation_code_is_the_hl7_one() -> None:
    assert _panel([mg("3.0")]).verdicts[0].code is InterpretationCode.CRITICAL_HIGH
