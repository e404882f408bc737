from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from app.domain.interpretation import interpret
from app.domain.range_errors import RangeSetFormatError
from app.domain.range_sets import (
    RangeRowDocument,
    RangeSetDocument,
    parse_range_set_csv,
    parse_range_set_yaml,
    read_default_range_set,
)
from app.domain.reference_ranges import select_range, validate_rows
from app.domain.types import (
    InterpretationCode,
    PatientFacts,
    RangeRow,
    ResultValue,
    Sex,
)
from app.models.range_set import RatioRange
from app.ranges.compiled import ratio_definitions

DEFAULT_YAML = Path(__file__).parents[2] / "app" / "data" / "reference_ranges" / "default.yaml"

MINIMAL_YAML = """
name: clinic
source: our lab
rows:
  - analyte: magnesium
    specimen: serum
    unit: mg/dL
    low: 1.7
    high: 2.2
    source: https://medlineplus.gov/ency/article/003487.htm
"""

CSV_HEADER = "analyte,specimen,sex,age_min_years,age_max_years,unit,low,high,source,note\n"


@pytest.fixture(scope="module")
def default_set() -> RangeSetDocument:
    return read_default_range_set()


@pytest.fixture(scope="module")
def default_rows(default_set: RangeSetDocument) -> list[RangeRow]:
    # Interpretation is unit-agnostic: rows stay in their document units for these checks.
    return [row.to_range_row(unit=row.unit, limits=row.limits()) for row in default_set.rows]


def pick(
    rows: list[RangeRow],
    analyte: str,
    *,
    sex: Sex,
    birth_date: date | None,
    on_date: date = date(2025, 6, 1),
    specimen: str = "serum",
) -> RangeRow:
    selection = select_range(
        rows,
        analyte=analyte,
        specimen=specimen,
        patient=PatientFacts(sex=sex, birth_date=birth_date, on_date=on_date),
    )
    assert selection.row is not None, selection.note
    return selection.row


# --- the shipped default set ------------------------------------------------------------------


def test_default_yaml_parses_and_is_unambiguous(default_rows: list[RangeRow]) -> None:
    document = parse_range_set_yaml(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert document.name == "default"
    assert validate_rows(default_rows) == []


def test_default_set_covers_every_required_analyte_and_specimen(
    default_set: RangeSetDocument,
) -> None:
    scopes = {
        (row.analyte, row.specimen.value if row.specimen else None) for row in default_set.rows
    }
    assert {
        ("magnesium", "serum"),
        ("magnesium-rbc", "rbc"),
        ("calcium", "serum"),
        ("calcium-ionized", "serum"),
        ("zinc", "serum"),
        ("iron", "serum"),
        ("ferritin", "serum"),
        ("copper", "serum"),
    } <= scopes


def test_every_default_row_has_a_source_and_absolute_limits(default_set: RangeSetDocument) -> None:
    for row in default_set.rows:
        assert row.source.strip()
        assert row.absolute_low is not None
        assert row.absolute_high is not None
    for ratio in default_set.ratios:
        assert ratio.source.strip()


@pytest.mark.parametrize("analyte", ["iron", "ferritin", "copper"])
def test_sex_specific_analytes_have_a_sex_independent_adult_row(
    default_set: RangeSetDocument, analyte: str
) -> None:
    rows = [row for row in default_set.rows if row.analyte == analyte]
    assert {row.sex for row in rows} >= {"female", "male", None}


def test_default_ratios_are_ca_mg_and_zn_cu(default_set: RangeSetDocument) -> None:
    ratios = {ratio.code: ratio.to_definition() for ratio in default_set.ratios}
    assert (ratios["ca_mg_molar"].numerator, ratios["ca_mg_molar"].denominator) == (
        "calcium",
        "magnesium",
    )
    assert (ratios["zn_cu_molar"].numerator, ratios["zn_cu_molar"].denominator) == (
        "zinc",
        "copper",
    )


def test_iron_30_ug_dl_is_normal_for_a_woman_and_low_for_a_man(
    default_rows: list[RangeRow],
) -> None:
    iron = ResultValue(value=Decimal("30"))
    female = pick(default_rows, "iron", sex=Sex.FEMALE, birth_date=date(1985, 1, 1))
    male = pick(default_rows, "iron", sex=Sex.MALE, birth_date=date(1985, 1, 1))
    assert female.limits.low == Decimal("28")
    assert male.limits.low == Decimal("45")
    assert interpret(iron, female.limits).code == InterpretationCode.NORMAL
    assert interpret(iron, male.limits).code == InterpretationCode.LOW


def test_iron_for_unknown_sex_falls_back_to_the_sex_independent_row_with_a_note(
    default_rows: list[RangeRow],
) -> None:
    selection = select_range(
        default_rows,
        analyte="iron",
        specimen="plasma",
        patient=PatientFacts(
            sex=Sex.UNKNOWN, birth_date=date(1985, 1, 1), on_date=date(2025, 1, 1)
        ),
    )
    assert selection.row is not None
    assert selection.row.sex is None
    assert selection.note == "sex 'unknown': the sex-independent range was applied"


def test_calcium_lower_limit_rises_on_the_sixtieth_birthday(default_rows: list[RangeRow]) -> None:
    birth = date(1965, 3, 10)
    on_birthday = pick(
        default_rows, "calcium", sex=Sex.FEMALE, birth_date=birth, on_date=date(2025, 3, 10)
    )
    day_before = pick(
        default_rows, "calcium", sex=Sex.FEMALE, birth_date=birth, on_date=date(2025, 3, 9)
    )
    assert on_birthday.limits.low == Decimal("8.8")
    assert day_before.limits.low == Decimal("8.6")
    calcium = ResultValue(value=Decimal("8.7"))
    assert interpret(calcium, on_birthday.limits).code == InterpretationCode.LOW
    assert interpret(calcium, day_before.limits).code == InterpretationCode.NORMAL


def test_calcium_13_5_mg_dl_is_critically_high(default_rows: list[RangeRow]) -> None:
    row = pick(default_rows, "calcium", sex=Sex.MALE, birth_date=date(1970, 1, 1))
    assert row.limits.critical_high is not None
    assert row.limits.critical_high <= Decimal("13.0")
    result = interpret(ResultValue(value=Decimal("13.5")), row.limits)
    assert (result.code, result.critical) == (InterpretationCode.CRITICAL_HIGH, True)


def test_magnesium_0_4_mmol_l_is_critically_low(default_rows: list[RangeRow]) -> None:
    row = pick(default_rows, "magnesium", sex=Sex.OTHER, birth_date=date(1970, 1, 1))
    assert row.unit == "mg/dL"
    assert row.limits.critical_low is not None
    # 0.4 mmol/L x 24.305 / 10 = 0.97 mg/dL
    assert interpret(ResultValue(value=Decimal("0.97")), row.limits).code == (
        InterpretationCode.CRITICAL_LOW
    )
    critical_low_mmol = row.limits.critical_low * 10 / Decimal("24.305")
    assert Decimal("0.4") < critical_low_mmol


def test_rbc_magnesium_has_its_own_row(default_rows: list[RangeRow]) -> None:
    row = pick(
        default_rows, "magnesium-rbc", sex=Sex.FEMALE, birth_date=date(1970, 1, 1), specimen="rbc"
    )
    assert (row.limits.low, row.limits.high) == (Decimal("4.0"), Decimal("6.4"))


def test_yaml_numbers_keep_their_exact_decimal_digits(default_set: RangeSetDocument) -> None:
    magnesium = next(row for row in default_set.rows if row.analyte == "magnesium")
    assert magnesium.low == Decimal("1.7")
    assert str(magnesium.low) == "1.7"


# --- YAML errors ------------------------------------------------------------------------------


def test_minimal_yaml_is_accepted() -> None:
    document = parse_range_set_yaml(MINIMAL_YAML)
    assert document.rows[0].specimen is not None
    assert document.ratios == []


def test_invalid_yaml_reports_the_line() -> None:
    with pytest.raises(RangeSetFormatError) as caught:
        parse_range_set_yaml("name: x\nrows: [\n  - a: 1\n")
    assert caught.value.message.startswith("the range set is not valid YAML")
    assert caught.value.errors[0]["line"] >= 2


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text"])
def test_yaml_must_be_a_mapping(text: str) -> None:
    with pytest.raises(RangeSetFormatError, match="must be a YAML mapping"):
        parse_range_set_yaml(text)


@pytest.mark.parametrize(
    ("replacement", "path", "fragment"),
    [
        ("", "rows[0]", "at least one of low or high"),
        ("    low: 1.7\n    colour: red\n", "rows[0].colour", "Extra inputs are not permitted"),
        ("    low: -1\n", "rows[0].low", "greater than or equal to 0"),
        (
            "    low: 1.7\n    critical_low: 2.0\n",
            "rows[0]",
            "critical_low (2.0) must not be above",
        ),
        ("    low: 1.7\n    sex: unknown\n", "rows[0].sex", "Input should be 'female' or 'male'"),
        ("    low: 1.7\n    specimen: urine\n", "rows[0].specimen", "Input should be"),
        ("    low: 1\n    age_min_years: 18\n    age_max_years: 18\n", "rows[0]", "age_max_years"),
        ("    low: 1.7\n    high: 2.2\n    absolute_high: 2.0\n", "rows[0]", "high (2.2) must not"),
    ],
)
def test_invalid_rows_are_reported_with_their_path(
    replacement: str, path: str, fragment: str
) -> None:
    text = MINIMAL_YAML.replace("    low: 1.7\n    high: 2.2\n", replacement)
    with pytest.raises(RangeSetFormatError) as caught:
        parse_range_set_yaml(text)
    paths = [error["path"] for error in caught.value.errors]
    assert path in paths
    assert fragment in caught.value.message


def test_row_without_source_is_refused() -> None:
    text = MINIMAL_YAML.replace("    source: https://medlineplus.gov/ency/article/003487.htm\n", "")
    with pytest.raises(RangeSetFormatError) as caught:
        parse_range_set_yaml(text)
    assert "rows[0].source" in [error["path"] for error in caught.value.errors]


def test_blank_source_is_refused() -> None:
    text = MINIMAL_YAML.replace(
        "source: https://medlineplus.gov/ency/article/003487.htm", "source: '   '"
    )
    with pytest.raises(RangeSetFormatError):
        parse_range_set_yaml(text)


def test_ambiguous_rows_are_refused_with_both_row_numbers() -> None:
    duplicate = MINIMAL_YAML + MINIMAL_YAML.split("rows:\n", 1)[1]
    with pytest.raises(RangeSetFormatError) as caught:
        parse_range_set_yaml(duplicate)
    assert "rows[0] and rows[1] are equally specific and overlap" in caught.value.message


def test_duplicate_ratio_codes_are_refused() -> None:
    ratio = (
        "  - code: ca_mg_molar\n    display: Ca:Mg\n    numerator: calcium\n"
        "    denominator: magnesium\n    low: 2\n    high: 3\n    source: x\n"
    )
    with pytest.raises(RangeSetFormatError, match="duplicate ratio code"):
        parse_range_set_yaml(MINIMAL_YAML + "ratios:\n" + ratio + ratio)


def test_ratio_with_the_same_numerator_and_denominator_is_refused() -> None:
    ratio = (
        "ratios:\n  - code: odd\n    display: odd\n    numerator: zinc\n"
        "    denominator: zinc\n    source: x\n"
    )
    with pytest.raises(RangeSetFormatError, match="must be different analytes"):
        parse_range_set_yaml(MINIMAL_YAML + ratio)


def test_document_round_trips_through_json(default_set: RangeSetDocument) -> None:
    again = RangeSetDocument.model_validate_json(default_set.model_dump_json())
    assert again == default_set


def test_row_document_converts_to_a_selection_row() -> None:
    document = RangeRowDocument.model_validate(
        {
            "analyte": "iron",
            "specimen": "serum",
            "sex": "female",
            "unit": "ug/dL",
            "low": 28,
            "high": 170,
            "source": "x",
        }
    )
    row = document.to_range_row(unit="umol/L", limits=document.limits(), row_id="r1")
    assert (row.analyte, row.specimen, row.sex, row.unit, row.row_id) == (
        "iron",
        "serum",
        Sex.FEMALE,
        "umol/L",
        "r1",
    )


# --- CSV --------------------------------------------------------------------------------------


def test_csv_rows_are_read_with_empty_cells_as_none() -> None:
    text = (
        CSV_HEADER
        + "iron,serum,female,18,,ug/dL,28,170,https://example.org/iron,\n"
        + "iron,serum,male,18,,ug/dL,45,182,https://example.org/iron,adult men\n"
    )
    document = parse_range_set_csv(text, name="clinic", source="our lab")
    assert document.name == "clinic"
    assert document.ratios == []
    female, male = document.rows
    assert female.age_max_years is None
    assert female.note is None
    assert female.low == Decimal("28")
    assert male.note == "adult men"


def test_csv_with_a_byte_order_mark_and_blank_lines_is_read() -> None:
    text = "\ufeff" + CSV_HEADER + "\n" + "zinc,serum,,,,ug/dL,60,106,x,\n" + ",,,,,,,,,\n"
    document = parse_range_set_csv(text, name="clinic", source="our lab")
    assert len(document.rows) == 1


def test_csv_errors_name_the_line() -> None:
    text = CSV_HEADER + "zinc,serum,,,,ug/dL,60,106,x,\n" + "zinc,rbc,,,,ug/dL,abc,106,x,\n"
    with pytest.raises(RangeSetFormatError) as caught:
        parse_range_set_csv(text, name="clinic", source="our lab")
    [error] = caught.value.errors
    assert (error["path"], error["line"]) == ("rows[1].low", 3)
    assert "line 3: rows[1].low" in caught.value.message


def test_csv_unknown_and_missing_columns_are_refused() -> None:
    with pytest.raises(RangeSetFormatError) as caught:
        parse_range_set_csv("analyte,unit,colour\nzinc,ug/dL,red\n", name="c", source="s")
    assert {error["path"] for error in caught.value.errors} == {"header.colour", "header.source"}


def test_csv_row_with_more_cells_than_the_header_is_refused() -> None:
    text = "analyte,unit,low,source\nzinc,ug/dL,60,x,extra\n"
    with pytest.raises(RangeSetFormatError, match="more cells than header columns"):
        parse_range_set_csv(text, name="c", source="s")


def test_empty_csv_is_refused() -> None:
    with pytest.raises(RangeSetFormatError, match="expected a header row"):
        parse_range_set_csv("", name="c", source="s")


def test_csv_without_rows_is_refused() -> None:
    with pytest.raises(RangeSetFormatError) as caught:
        parse_range_set_csv(CSV_HEADER, name="c", source="s")
    assert "rows" in [error["path"] for error in caught.value.errors]


def test_a_stored_ratio_range_and_its_document_give_the_same_definition(
    default_set: RangeSetDocument,
) -> None:
    document = next(ratio for ratio in default_set.ratios if ratio.code == "ca_mg_molar")
    stored = RatioRange(position=0, **document.model_dump())

    definition = document.to_definition()

    assert ratio_definitions([stored]) == (definition,)
    assert (definition.low, definition.high, definition.source) == (
        document.low,
        document.high,
        document.source,
    )
