from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.range_errors import AmbiguousRangeError
from app.domain.reference_ranges import (
    add_years,
    age_band_contains,
    select_range,
    validate_rows,
)
from app.domain.types import PatientFacts, RangeLimits, RangeRow, Sex


def make_row(
    *,
    analyte: str = "iron",
    specimen: str | None = "serum",
    sex: Sex | None = None,
    age_min: str | None = None,
    age_max: str | None = None,
    low: str = "1",
    high: str = "2",
    row_id: str | None = None,
) -> RangeRow:
    return RangeRow(
        analyte=analyte,
        unit="umol/L",
        limits=RangeLimits(low=Decimal(low), high=Decimal(high)),
        specimen=specimen,
        sex=sex,
        age_min_years=Decimal(age_min) if age_min is not None else None,
        age_max_years=Decimal(age_max) if age_max is not None else None,
        source="test",
        row_id=row_id,
    )


def make_patient(
    *,
    sex: Sex = Sex.FEMALE,
    birth_date: date | None = date(1980, 6, 15),
    on_date: date = date(2025, 6, 15),
) -> PatientFacts:
    return PatientFacts(sex=sex, birth_date=birth_date, on_date=on_date)


def select(rows: list[RangeRow], patient: PatientFacts, *, specimen: str = "serum") -> RangeRow:
    selection = select_range(rows, analyte="iron", specimen=specimen, patient=patient)
    assert selection.row is not None, selection.note
    return selection.row


# --- specimen -------------------------------------------------------------------------------


def test_serum_row_applies_to_a_plasma_result() -> None:
    row = make_row(specimen="serum")
    assert select([row], make_patient(), specimen="plasma") is row


def test_plasma_row_applies_to_a_serum_result() -> None:
    row = make_row(specimen="plasma")
    assert select([row], make_patient(), specimen="serum") is row


@pytest.mark.parametrize(
    ("row_specimen", "result_specimen"),
    [("serum", "rbc"), ("rbc", "serum"), ("whole-blood", "plasma"), ("rbc", "whole-blood")],
)
def test_cellular_specimens_only_match_themselves(row_specimen: str, result_specimen: str) -> None:
    selection = select_range(
        [make_row(specimen=row_specimen)],
        analyte="iron",
        specimen=result_specimen,
        patient=make_patient(),
    )
    assert selection.row is None
    assert selection.note is not None
    assert f"ranges exist only for {row_specimen}" in selection.note


def test_row_without_specimen_matches_any_specimen() -> None:
    row = make_row(specimen=None)
    assert select([row], make_patient(), specimen="rbc") is row


def test_exact_specimen_beats_a_row_for_any_specimen() -> None:
    any_specimen = make_row(specimen=None)
    serum = make_row(specimen="serum")
    assert select([any_specimen, serum], make_patient()) is serum


def test_exact_specimen_beats_the_interchangeable_one() -> None:
    serum = make_row(specimen="serum")
    plasma = make_row(specimen="plasma")
    assert select([serum, plasma], make_patient(), specimen="plasma") is plasma
    assert select([serum, plasma], make_patient(), specimen="serum") is serum


def test_specimen_specificity_outranks_sex_specificity() -> None:
    serum_any_sex = make_row(specimen="serum")
    any_specimen_female = make_row(specimen=None, sex=Sex.FEMALE)
    assert select([any_specimen_female, serum_any_sex], make_patient()) is serum_any_sex


# --- sex ------------------------------------------------------------------------------------


def test_sex_specific_row_beats_sex_independent_row() -> None:
    female = make_row(sex=Sex.FEMALE)
    male = make_row(sex=Sex.MALE)
    either = make_row(sex=None)
    rows = [either, male, female]
    assert select(rows, make_patient(sex=Sex.FEMALE)) is female
    assert select(rows, make_patient(sex=Sex.MALE)) is male


@pytest.mark.parametrize("sex", [Sex.UNKNOWN, Sex.OTHER])
def test_unknown_or_other_sex_falls_back_to_the_sex_independent_row_with_a_note(sex: Sex) -> None:
    either = make_row(sex=None)
    rows = [make_row(sex=Sex.FEMALE), make_row(sex=Sex.MALE), either]
    selection = select_range(rows, analyte="iron", specimen="serum", patient=make_patient(sex=sex))
    assert selection.row is either
    assert selection.note == f"sex '{sex.value}': the sex-independent range was applied"


def test_no_fallback_note_when_the_analyte_has_no_sex_specific_rows() -> None:
    selection = select_range(
        [make_row()], analyte="iron", specimen="serum", patient=make_patient(sex=Sex.UNKNOWN)
    )
    assert selection.row is not None
    assert selection.note is None


def test_unknown_sex_with_only_sex_specific_rows_gets_no_range_and_says_why() -> None:
    rows = [make_row(sex=Sex.FEMALE), make_row(sex=Sex.MALE)]
    selection = select_range(
        rows, analyte="iron", specimen="serum", patient=make_patient(sex=Sex.UNKNOWN)
    )
    assert selection.row is None
    assert selection.note is not None
    assert selection.note.startswith(
        "no reference range for iron in serum for a patient of unknown sex aged 45"
    )
    assert "only sex-specific ranges exist" in selection.note


# --- age ------------------------------------------------------------------------------------


def test_exactly_sixty_on_the_birthday_is_in_the_band_from_sixty() -> None:
    adult = make_row(age_min="18", age_max="60", low="8.6")
    older = make_row(age_min="60", low="8.8")
    birth = date(1965, 3, 10)
    assert (
        select([adult, older], make_patient(birth_date=birth, on_date=date(2025, 3, 10))) is older
    )
    assert select([adult, older], make_patient(birth_date=birth, on_date=date(2025, 3, 9))) is adult


def test_february_29_birthday_reaches_an_age_on_february_28_of_a_common_year() -> None:
    child = make_row(age_min="0", age_max="18")
    adult = make_row(age_min="18")
    birth = date(2004, 2, 29)
    rows = [child, adult]
    assert select(rows, make_patient(birth_date=birth, on_date=date(2022, 2, 28))) is adult
    assert select(rows, make_patient(birth_date=birth, on_date=date(2022, 2, 27))) is child


def test_fractional_age_bound_counts_whole_months() -> None:
    infant = make_row(age_min="0", age_max="0.5")
    older = make_row(age_min="0.5", age_max="18")
    birth = date(2024, 1, 15)
    rows = [infant, older]
    assert select(rows, make_patient(birth_date=birth, on_date=date(2024, 7, 14))) is infant
    assert select(rows, make_patient(birth_date=birth, on_date=date(2024, 7, 15))) is older


@pytest.mark.parametrize(
    ("start", "years", "expected"),
    [
        (date(2000, 1, 31), "0.0833", date(2000, 2, 29)),
        (date(2001, 1, 31), "0.0833", date(2001, 2, 28)),
        (date(2000, 2, 29), "1", date(2001, 2, 28)),
        (date(2000, 2, 29), "4", date(2004, 2, 29)),
        (date(2000, 5, 10), "1.5", date(2001, 11, 10)),
        (date(2000, 5, 10), "0", date(2000, 5, 10)),
        (date(2000, 11, 30), "0.25", date(2001, 2, 28)),
    ],
)
def test_add_years_uses_calendar_months_and_clamps_the_day(
    start: date, years: str, expected: date
) -> None:
    assert add_years(start, Decimal(years)) == expected


def test_age_band_is_half_open() -> None:
    row = make_row(age_min="18", age_max="60")
    birth = date(1965, 3, 10)
    assert age_band_contains(row, birth_date=birth, on_date=date(1983, 3, 10))
    assert not age_band_contains(row, birth_date=birth, on_date=date(1983, 3, 9))
    assert age_band_contains(row, birth_date=birth, on_date=date(2025, 3, 9))
    assert not age_band_contains(row, birth_date=birth, on_date=date(2025, 3, 10))


def test_narrower_nested_age_band_wins() -> None:
    adults = make_row(age_min="18")
    elderly = make_row(age_min="60")
    assert select([adults, elderly], make_patient(birth_date=date(1950, 1, 1))) is elderly
    assert select([adults, elderly], make_patient(birth_date=date(1990, 1, 1))) is adults


def test_patient_without_birth_date_matches_only_rows_without_age_bounds() -> None:
    unbounded = make_row(age_min="0")
    adults = make_row(age_min="18", sex=Sex.FEMALE)
    selection = select_range(
        [unbounded, adults],
        analyte="iron",
        specimen="serum",
        patient=make_patient(birth_date=None),
    )
    assert selection.row is unbounded


def test_patient_without_birth_date_and_only_age_banded_rows_gets_a_note() -> None:
    selection = select_range(
        [make_row(age_min="18")],
        analyte="iron",
        specimen="serum",
        patient=make_patient(birth_date=None),
    )
    assert selection.row is None
    assert selection.note == (
        "no reference range for iron in serum for a female of unknown age: "
        "the ranges are age-banded and the patient has no birth date"
    )


def test_no_band_covers_the_patient_note() -> None:
    selection = select_range(
        [make_row(age_min="18")],
        analyte="iron",
        specimen="serum",
        patient=make_patient(birth_date=date(2024, 12, 1), on_date=date(2025, 6, 15)),
    )
    assert selection.row is None
    assert selection.note == (
        "no reference range for iron in serum for a female aged 6 months: "
        "no configured age band covers the patient"
    )


# --- no match, ambiguity ----------------------------------------------------------------------


def test_no_match_note_names_analyte_specimen_sex_and_age() -> None:
    selection = select_range(
        [make_row(analyte="zinc", specimen="serum")],
        analyte="zinc",
        specimen="rbc",
        patient=make_patient(sex=Sex.MALE),
    )
    assert selection.row is None
    assert selection.note is not None
    assert selection.note.startswith("no reference range for zinc in rbc for a male aged 45")


def test_no_rows_for_the_analyte_says_so() -> None:
    selection = select_range(
        [make_row(analyte="iron")], analyte="copper", specimen="serum", patient=make_patient()
    )
    assert selection.row is None
    assert selection.note is not None
    assert selection.note.endswith("the range set has no rows for copper")


def test_two_identical_rows_are_a_data_error() -> None:
    rows = [make_row(row_id="a"), make_row(row_id="b")]
    with pytest.raises(AmbiguousRangeError) as caught:
        select(rows, make_patient())
    assert {row.row_id for row in caught.value.rows} == {"a", "b"}
    assert "equally specific" in caught.value.message


def test_partially_overlapping_bands_of_equal_specificity_are_a_data_error() -> None:
    rows = [make_row(age_min="18", age_max="50"), make_row(age_min="40", age_max="70")]
    with pytest.raises(AmbiguousRangeError):
        select(rows, make_patient())


def test_a_less_specific_tie_does_not_matter_when_a_more_specific_row_wins() -> None:
    female = make_row(sex=Sex.FEMALE)
    rows = [make_row(row_id="a"), make_row(row_id="b"), female]
    assert select(rows, make_patient(sex=Sex.FEMALE)) is female


# --- validate_rows ----------------------------------------------------------------------------


def test_validate_rows_reports_identical_rows() -> None:
    conflicts = validate_rows([make_row(), make_row(analyte="zinc"), make_row()])
    assert [(c.first_index, c.second_index) for c in conflicts] == [(0, 2)]
    assert "equally specific" in conflicts[0].message


def test_validate_rows_reports_partial_overlap() -> None:
    rows = [make_row(age_min="18", age_max="50"), make_row(age_min="40")]
    assert len(validate_rows(rows)) == 1


@pytest.mark.parametrize(
    "rows",
    [
        [make_row(age_min="18"), make_row(age_min="60")],
        [make_row(age_min="0", age_max="18"), make_row(age_min="18")],
        [make_row(sex=Sex.FEMALE), make_row(sex=Sex.MALE), make_row()],
        [make_row(specimen="serum"), make_row(specimen="plasma"), make_row(specimen=None)],
        [make_row(age_min="18", age_max="60"), make_row(age_min="18")],
    ],
)
def test_validate_rows_accepts_unambiguous_sets(rows: list[RangeRow]) -> None:
    assert validate_rows(rows) == []


def test_row_without_age_min_and_row_from_zero_are_the_same_band() -> None:
    assert len(validate_rows([make_row(age_max="18"), make_row(age_min="0", age_max="18")])) == 1


@given(
    age_days=st.integers(min_value=0, max_value=110 * 366),
    sex=st.sampled_from(list(Sex)),
)
def test_a_set_without_conflicts_never_raises_and_covers_every_age(age_days: int, sex: Sex) -> None:
    rows = [
        make_row(age_min="0", age_max="1"),
        make_row(age_min="1", age_max="18"),
        make_row(age_min="18", age_max="60"),
        make_row(age_min="60"),
        make_row(age_min="18", sex=Sex.FEMALE),
        make_row(age_min="18", sex=Sex.MALE),
    ]
    assert validate_rows(rows) == []
    birth = date(1900, 1, 1)
    patient = make_patient(sex=sex, birth_date=birth, on_date=birth + timedelta(days=age_days))
    selection = select_range(rows, analyte="iron", specimen="plasma", patient=patient)
    assert selection.row is not None
