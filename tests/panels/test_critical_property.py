"""Property (issue 10): over the shipped range set, for any patient (with or without a birth
date, any age 0-100, any sex) and any result (any analyte and accepted unit, with or without a
comparator, with or without a lab flag), a value that may lie beyond a critical limit of a row
that could apply to the patient is surfaced (critical, or possibly critical), and a critical flag
sent by the lab always makes the result critical.

The oracle is independent of the selection code: it looks at every row whose sex and age band
could fit the patient (all rows of the analyte when none can), not at the row chosen.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.catalog import Catalog, default_catalog
from app.domain.pipeline import ImpossibleResultsError, NormalizedResult, interpret_panel
from app.domain.reference_ranges import age_band_contains
from app.domain.types import Comparator, PatientFacts, RangeRow, ResultValue, Sex
from app.domain.units import convert
from app.ranges.compiled import CompiledRangeSet, compile_rows
from app.ranges.service import default_document

ON_DATE = date(2026, 11, 20)
SERUM_ANALYTES = ("magnesium", "calcium", "calcium-ionized", "zinc", "iron", "ferritin", "copper")
LAB_CRITICAL_FLAGS = ("LL", "HH", "AA", "PANIC")
OTHER_FLAGS = (None, "L", "H", "N", "A")


@cache
def _compiled() -> tuple[CompiledRangeSet, Catalog]:
    catalog = default_catalog()
    document = default_document()
    rows, original_units = compile_rows(document.rows, catalog)
    compiled = CompiledRangeSet(
        id=uuid.uuid4(),
        name=document.name,
        version=1,
        rows_by_analyte=rows,
        ratios=(),
        original_units=original_units,
    )
    return compiled, catalog


def _could_apply(row: RangeRow, patient: PatientFacts, specimen: str) -> bool:
    if row.specimen not in (None, specimen, "serum", "plasma"):
        return False
    if row.sex is not None and patient.sex in (Sex.FEMALE, Sex.MALE) and row.sex != patient.sex:
        return False
    if patient.birth_date is None:
        return True
    return age_band_contains(row, birth_date=patient.birth_date, on_date=patient.on_date)


def _may_be_beyond_critical(value: ResultValue, rows: list[RangeRow]) -> bool:
    number, comparator = value.value, value.comparator
    for row in rows:
        low, high = row.limits.critical_low, row.limits.critical_high
        if low is not None:
            if comparator in (None, Comparator.GT, Comparator.GE) and number < low:
                return True
            if comparator in (Comparator.LT, Comparator.LE) and low > 0:
                return True  # the true value may be anywhere from zero up
        if high is not None:
            if comparator in (None, Comparator.LT, Comparator.LE) and number > high:
                return True
            if comparator in (Comparator.GT, Comparator.GE):
                return True
    return False


patients = st.builds(
    PatientFacts,
    sex=st.sampled_from(list(Sex)),
    birth_date=st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=100 * 366).map(lambda d: ON_DATE - timedelta(days=d)),
    ),
    on_date=st.just(ON_DATE),
)


@st.composite
def results(draw: st.DrawFn) -> tuple[NormalizedResult, str | None]:
    _, catalog = _compiled()
    analyte = catalog.get(draw(st.sampled_from(SERUM_ANALYTES)))
    unit = draw(st.sampled_from(sorted(analyte.accepted_units)))
    # Canonical values across and far beyond every limit (critical lows ~0.4, highs ~3-40).
    canonical = draw(
        st.decimals(min_value=Decimal("0.05"), max_value=Decimal("200"), places=3).filter(
            lambda d: d > 0
        )
    )
    comparator = draw(st.sampled_from([None, None, *Comparator]))
    reported_value = convert(
        canonical, analyte=analyte, from_unit=analyte.canonical_unit, to_unit=unit
    )
    flag = draw(st.sampled_from((*OTHER_FLAGS, *LAB_CRITICAL_FLAGS)))
    result = NormalizedResult(
        position=0,
        analyte=analyte,
        code_sent=analyte.code,
        loinc=None,
        reported=ResultValue(reported_value, comparator, str(reported_value)),
        unit=unit,
        canonical=ResultValue(canonical, comparator),
        lab_range_text=None,
        lab_low=None,
        lab_high=None,
        lab_flag=flag,
    )
    return result, flag


@settings(max_examples=600, deadline=None)
@given(patient=patients, generated=results())
def test_a_possibly_critical_value_or_a_critical_lab_flag_is_never_silent(
    patient: PatientFacts, generated: tuple[NormalizedResult, str | None]
) -> None:
    result, flag = generated
    compiled, _ = _compiled()
    rows = list(compiled.rows_for(result.analyte.code))
    applicable = [row for row in rows if _could_apply(row, patient, "serum")] or rows
    try:
        [verdict] = interpret_panel(
            [result],
            range_set=compiled,
            patient=patient,
            specimen="serum",
            refuse_impossible=True,
        ).verdicts
    except ImpossibleResultsError:  # an impossible value is refused loudly: never silent
        return

    if flag in LAB_CRITICAL_FLAGS:
        assert verdict.critical, (flag, verdict)
    if _may_be_beyond_critical(result.canonical, applicable):
        assert verdict.critical or verdict.possibly_critical, (result.canonical, verdict)
    if verdict.code is None:
        assert verdict.status == "no-reference-range"
        assert verdict.note
    if verdict.code == "N":
        assert not verdict.possibly_critical
