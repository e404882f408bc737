"""Range selection through the prepared index (``AnalyteRanges``, what a compiled range set
keeps per analyte) gives exactly what the row-by-row selection it replaced gave: the same row,
limits, note and refusal for any rows and any patient, call after call on one index.

The reference below is the selection as it was before the index (ages compared as dates with
``add_years`` per row), kept verbatim so that the comparison has an independent oracle; the
helpers it shares with the index (``_cautious_limits``, ``_with_critical_fallback``,
``_no_match_note``, ...) did not change.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import reference_ranges as rr
from app.domain.range_errors import AmbiguousRangeError
from app.domain.reference_ranges import (
    AnalyteRanges,
    AppliedRange,
    RangeSelection,
    add_years,
    age_band_contains,
    completed_months,
)
from app.domain.types import PatientFacts, RangeLimits, RangeRow, Sex

# --- the reference: selection before the index ----------------------------------------------


def legacy_add_years(start: date, years: Decimal) -> date:
    total_months = int((years * 12).to_integral_value(rounding=ROUND_HALF_UP))
    month_index = start.month - 1 + total_months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def legacy_age_band_contains(row: RangeRow, *, birth_date: date, on_date: date) -> bool:
    if row.age_min_years is not None and legacy_add_years(birth_date, row.age_min_years) > on_date:
        return False
    return row.age_max_years is None or on_date < legacy_add_years(birth_date, row.age_max_years)


def _legacy_age_matches(row: RangeRow, patient: PatientFacts) -> bool:
    if patient.birth_date is None:
        return rr._age_unbounded(row)
    return legacy_age_band_contains(row, birth_date=patient.birth_date, on_date=patient.on_date)


def legacy_select_range(
    rows: Sequence[RangeRow], *, analyte: str, specimen: str, patient: PatientFacts
) -> RangeSelection:
    analyte_rows = [row for row in rows if row.analyte == analyte]
    candidates: list[tuple[tuple[int, int], RangeRow]] = []
    for row in analyte_rows:
        rank = rr.specimen_rank(row.specimen, specimen)
        if (
            rank is None
            or not (row.sex is None or row.sex == patient.sex)
            or not _legacy_age_matches(row, patient)
        ):
            continue
        candidates.append(((rank, 0 if row.sex is None else 1), row))
    if not candidates:
        return RangeSelection(
            row=None, note=rr._no_match_note(analyte_rows, analyte, specimen, patient)
        )
    best_rank = max(rank for rank, _ in candidates)
    best = [row for rank, row in candidates if rank == best_rank]
    chosen = rr._narrowest(best)
    if chosen is None:
        raise AmbiguousRangeError(
            f"{len(best)} equally specific reference ranges match {analyte} in {specimen} for "
            f"{rr._describe_patient(patient)}: {'; '.join(rr.describe_row(row) for row in best)}",
            best,
        )
    note = None
    if (
        patient.sex in (Sex.OTHER, Sex.UNKNOWN)
        and chosen.sex is None
        and any(row.sex is not None for row in analyte_rows)
    ):
        note = f"sex '{patient.sex.value}': the sex-independent range was applied"
    return RangeSelection(row=chosen, note=note)


def _legacy_either_sex_row(
    rows: Sequence[RangeRow], patient: PatientFacts, specimen: str
) -> RangeRow | None:
    birth_date = patient.birth_date
    if birth_date is None:
        return None
    matching = [
        row
        for row in rows
        if legacy_age_band_contains(row, birth_date=birth_date, on_date=patient.on_date)
    ]
    if not any(row.sex is not None for row in matching):
        return None
    best = max(rr._own_specimen_rank(row) for row in matching)
    matching = [row for row in matching if rr._own_specimen_rank(row) == best]
    limits = rr._inside_every(matching)
    if not rr._ordered(limits):
        return None
    first = matching[0]
    return RangeRow(
        analyte=first.analyte,
        unit=first.unit,
        limits=limits,
        specimen=first.specimen,
        sex=None,
        age_min_years=max(rr._lower(r) for r in matching),
        age_max_years=min(
            (r.age_max_years for r in matching if r.age_max_years is not None), default=None
        ),
        source="; ".join(sorted({r.source for r in matching})),
        row_id="+".join(r.row_id or "?" for r in matching),
    )


def legacy_applicable_range(
    rows: Sequence[RangeRow], *, analyte: str, specimen: str, patient: PatientFacts
) -> AppliedRange:
    specimen_rows = [
        row
        for row in rows
        if row.analyte == analyte and rr.specimen_rank(row.specimen, specimen) is not None
    ]
    fallback = rr._cautious_limits(specimen_rows)
    if patient.sex in (Sex.OTHER, Sex.UNKNOWN):
        composite = _legacy_either_sex_row(specimen_rows, patient, specimen)
        if composite is not None:
            return rr._with_critical_fallback(
                composite,
                fallback,
                f"sex '{patient.sex.value}': checked against every sex's range (normal only "
                "inside all of them, the cautious choice)",
            )
    selection = legacy_select_range(rows, analyte=analyte, specimen=specimen, patient=patient)
    if selection.row is None:
        reason = selection.note or f"no reference range for {analyte} in {specimen}"
        if fallback is None:
            return AppliedRange(
                row=None,
                limits=RangeLimits(),
                reference_applied=False,
                note=f"no-reference-range: {reason}",
            )
        limits, scope = fallback
        critical_text = rr._describe_critical(limits)
        note = f"no-reference-range: {reason}"
        if critical_text:
            note += (
                f"; critical limits still applied ({critical_text}, the most cautious of {scope})"
            )
        return AppliedRange(row=None, limits=limits, reference_applied=False, note=note)
    return rr._with_critical_fallback(selection.row, fallback, selection.note)


# --- strategies -------------------------------------------------------------------------------

SPECIMENS = ("serum", "plasma", "whole-blood", "rbc")
AGES = st.sampled_from(
    [Decimal(x) for x in ("0", "0.04", "0.08", "0.5", "1", "1.5", "2", "12", "18", "49.5")]
    + [Decimal(x) for x in ("50", "65", "100", "0.0417", "0.125", "17.99")]
)


def _limit(value: int | None) -> Decimal | None:
    return None if value is None else Decimal(value) / 10


@st.composite
def range_rows(draw: st.DrawFn) -> RangeRow:
    bounds = sorted(draw(st.lists(st.integers(0, 100), min_size=6, max_size=6)))
    present = draw(st.lists(st.booleans(), min_size=6, max_size=6))
    ordered = [(_limit(b) if p else None) for b, p in zip(bounds, present, strict=True)]
    if draw(st.booleans()):  # now and then limits out of order (not a validated row)
        ordered = draw(st.permutations(ordered))
    absolute_low, critical_low, low, high, critical_high, absolute_high = ordered
    age_min = draw(st.none() | AGES)
    age_max = draw(st.none() | AGES)
    return RangeRow(
        analyte=draw(st.sampled_from(("iron", "iron", "zinc"))),
        unit="umol/L",
        limits=RangeLimits(
            low=low,
            high=high,
            critical_low=critical_low,
            critical_high=critical_high,
            absolute_low=absolute_low,
            absolute_high=absolute_high,
        ),
        specimen=draw(st.sampled_from((None, *SPECIMENS))),
        sex=draw(st.sampled_from((None, Sex.FEMALE, Sex.MALE))),
        age_min_years=age_min,
        age_max_years=age_max,
        source=draw(st.sampled_from(("a", "b"))),
        row_id=draw(st.none() | st.sampled_from(("r1", "r2", "r3"))),
    )


# Birth dates at month ends and on Feb 29, collection dates around their anniversaries.
BIRTH_DATES = st.sampled_from(
    [date(1980, 1, 31), date(2000, 2, 29), date(2024, 2, 29), date(2010, 8, 31), date(1975, 6, 15)]
) | st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 12, 31))


@st.composite
def patients(draw: st.DrawFn) -> PatientFacts:
    birth = draw(st.none() | BIRTH_DATES)
    if birth is None or draw(st.booleans()):
        on = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)))
    else:
        years = draw(st.integers(-1, 101))
        on = legacy_add_years(birth, Decimal(years)) + timedelta(days=draw(st.integers(-3, 3)))
    return PatientFacts(sex=draw(st.sampled_from(list(Sex))), birth_date=birth, on_date=on)


def _outcome(call: Callable[..., object], *args: object, **kwargs: object) -> object:
    """What a call answers, or the refusal it raises (its message and the rows it names)."""
    try:
        return call(*args, **kwargs)
    except AmbiguousRangeError as exc:
        return ("ambiguous", str(exc), exc.args)


# --- the properties ---------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    rows=st.lists(range_rows(), max_size=6),
    seen=st.lists(st.tuples(patients(), st.sampled_from(SPECIMENS)), min_size=1, max_size=8),
)
def test_the_index_selects_exactly_what_row_by_row_selection_selected(
    rows: list[RangeRow], seen: list[tuple[PatientFacts, str]]
) -> None:
    index = AnalyteRanges(rows, "iron")  # one index for every patient: its memos are exercised
    for patient, specimen in seen * 2:
        args = {"analyte": "iron", "specimen": specimen, "patient": patient}
        expected = _outcome(legacy_applicable_range, rows, **args)
        assert _outcome(index.applicable, specimen, patient) == expected
        assert _outcome(rr.applicable_range, rows, **args) == expected
        expected_row = _outcome(legacy_select_range, rows, **args)
        assert _outcome(index.select, specimen, patient) == expected_row
        assert _outcome(rr.select_range, rows, **args) == expected_row


@settings(max_examples=1000, deadline=None)
@given(birth=BIRTH_DATES, on=st.dates(), years=AGES | st.integers(0, 120).map(Decimal))
def test_an_age_band_in_months_is_the_band_in_dates(birth: date, on: date, years: Decimal) -> None:
    try:
        reached = legacy_add_years(birth, years)
    except ValueError:  # past year 9999: the reference cannot say
        return
    assert add_years(birth, years) == reached
    assert (reached <= on) == (rr.months_of(years) <= completed_months(birth, on))
    row = RangeRow(analyte="iron", unit="umol/L", limits=RangeLimits(), age_min_years=years)
    assert age_band_contains(row, birth_date=birth, on_date=on) == legacy_age_band_contains(
        row, birth_date=birth, on_date=on
    )


def test_completed_months_clamps_to_the_end_of_a_short_month() -> None:
    assert completed_months(date(2024, 1, 31), date(2024, 2, 28)) == 0
    assert completed_months(date(2024, 1, 31), date(2024, 2, 29)) == 1
    assert completed_months(date(2000, 2, 29), date(2001, 2, 28)) == 12
    assert completed_months(date(2000, 2, 29), date(2001, 2, 27)) == 11
    assert completed_months(date(2000, 3, 15), date(2000, 3, 14)) == -1


def test_an_uncovered_patient_keeps_the_note_of_their_own_dates() -> None:
    # Two infants of the same completed months (1, clamped to February's end for the first)
    # whose notes word the age differently: what one index answers the first may not be
    # answered to the second.
    adult = RangeRow(
        analyte="iron",
        unit="umol/L",
        limits=RangeLimits(low=Decimal(9), high=Decimal(30), critical_high=Decimal(90)),
        specimen="serum",
        age_min_years=Decimal(18),
    )
    first = PatientFacts(sex=Sex.FEMALE, birth_date=date(2023, 1, 31), on_date=date(2023, 2, 28))
    second = PatientFacts(sex=Sex.FEMALE, birth_date=date(2023, 1, 15), on_date=date(2023, 2, 20))
    assert completed_months(first.birth_date, first.on_date) == 1  # type: ignore[arg-type]
    assert completed_months(second.birth_date, second.on_date) == 1  # type: ignore[arg-type]
    index = AnalyteRanges([adult], "iron")

    answers = [index.applicable("serum", patient) for patient in (first, second, first, second)]

    assert "aged 0 months" in answers[0].note  # type: ignore[operator]
    assert "aged 1 months" in answers[1].note  # type: ignore[operator]
    assert answers[2:] == answers[:2]
    for patient, answer in zip((first, second), answers, strict=False):
        fresh = legacy_applicable_range([adult], analyte="iron", specimen="serum", patient=patient)
        assert answer == fresh
        assert answer.limits.critical_high == Decimal(90)  # the critical limit still applies
