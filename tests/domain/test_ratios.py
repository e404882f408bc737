from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.ratios import (
    RatioDefinition,
    RatioResult,
    compute_ratios,
    interpret_ratio,
    round_significant,
)
from app.domain.types import Comparator, InterpretationCode, ResultValue

CA_MG = RatioDefinition(
    code="ca_mg_molar",
    display="Calcium:magnesium molar ratio",
    numerator="calcium",
    denominator="magnesium",
    low=Decimal("2.36"),
    high=Decimal("3.66"),
    source="test",
)
ZN_CU = RatioDefinition(
    code="zn_cu_molar",
    display="Zinc:copper molar ratio",
    numerator="zinc",
    denominator="copper",
    low=Decimal("0.5"),
    high=Decimal("1.25"),
    source="test",
)


def molar(text: str, comparator: Comparator | None = None) -> ResultValue:
    return ResultValue(value=Decimal(text), comparator=comparator)


def test_ca_mg_ratio_is_the_plain_quotient_of_molar_values() -> None:
    results = compute_ratios({"calcium": molar("2.40"), "magnesium": molar("0.80")}, [CA_MG])
    assert results == [
        RatioResult(
            code="ca_mg_molar",
            display="Calcium:magnesium molar ratio",
            value=Decimal("3.000"),
            interpretation=InterpretationCode.NORMAL,
            low=Decimal("2.36"),
            high=Decimal("3.66"),
            note=None,
        )
    ]


def test_ratio_is_rounded_to_four_significant_digits() -> None:
    [result] = compute_ratios({"zinc": molar("12.3"), "copper": molar("17.9")}, [ZN_CU])
    assert result.value == Decimal("0.6872")
    assert result.interpretation == InterpretationCode.NORMAL


@pytest.mark.parametrize(
    ("calcium", "magnesium", "code"),
    [
        ("2.36", "1", InterpretationCode.NORMAL),
        ("3.66", "1", InterpretationCode.NORMAL),
        ("2.35", "1", InterpretationCode.LOW),
        ("3.67", "1", InterpretationCode.HIGH),
        ("2.4", "0.5", InterpretationCode.HIGH),
    ],
)
def test_ratio_interpretation_uses_the_inclusive_interval(
    calcium: str, magnesium: str, code: InterpretationCode
) -> None:
    [result] = compute_ratios({"calcium": molar(calcium), "magnesium": molar(magnesium)}, [CA_MG])
    assert result.interpretation == code


def test_ratio_is_skipped_when_either_value_is_missing() -> None:
    values = {"calcium": molar("2.4"), "zinc": molar("12"), "copper": molar("16")}
    results = compute_ratios(values, [CA_MG, ZN_CU])
    assert [result.code for result in results] == ["zn_cu_molar"]


def test_results_follow_definition_order() -> None:
    values = {
        "calcium": molar("2.4"),
        "magnesium": molar("0.8"),
        "zinc": molar("12"),
        "copper": molar("16"),
    }
    assert [r.code for r in compute_ratios(values, [ZN_CU, CA_MG])] == [
        "zn_cu_molar",
        "ca_mg_molar",
    ]


def test_censored_value_means_no_ratio_and_a_note() -> None:
    values = {"zinc": molar("5", Comparator.LT), "copper": molar("16")}
    [result] = compute_ratios(values, [ZN_CU])
    assert result.value is None
    assert result.interpretation is None
    assert result.note == "not computed: zinc was reported as <5, so the ratio has no single value"
    assert (result.low, result.high) == (Decimal("0.5"), Decimal("1.25"))


def test_zero_denominator_means_no_ratio_and_a_note() -> None:
    [result] = compute_ratios({"zinc": molar("12"), "copper": molar("0")}, [ZN_CU])
    assert result.value is None
    assert result.note == "not computed: copper is zero"


def test_negative_value_means_no_ratio() -> None:
    [result] = compute_ratios({"zinc": molar("-1"), "copper": molar("16")}, [ZN_CU])
    assert result.value is None
    assert result.note is not None


def test_ratio_without_limits_is_normal() -> None:
    open_ended = RatioDefinition("x", "X", "zinc", "copper", None, None, "test")
    [result] = compute_ratios({"zinc": molar("100"), "copper": molar("1")}, [open_ended])
    assert result.interpretation == InterpretationCode.NORMAL


@pytest.mark.parametrize(
    ("number", "rounded"),
    [
        ("0.000123456", "0.0001235"),
        ("12345", "1.235E+4"),
        ("2.99995", "3.000"),
        ("9.99951", "10.00"),
        ("1", "1.000"),
        ("0", "0"),
    ],
)
def test_round_significant(number: str, rounded: str) -> None:
    result = round_significant(Decimal(number))
    assert result == Decimal(rounded)
    assert str(result) == str(Decimal(rounded))


def test_interpret_ratio_bounds() -> None:
    assert interpret_ratio(Decimal("1"), Decimal("1"), Decimal("2")) == InterpretationCode.NORMAL
    assert interpret_ratio(Decimal("0.99"), Decimal("1"), None) == InterpretationCode.LOW
    assert interpret_ratio(Decimal("2.01"), None, Decimal("2")) == InterpretationCode.HIGH


@given(
    numerator=st.decimals(min_value="0.001", max_value=1000, places=3),
    denominator=st.decimals(min_value="0.001", max_value=1000, places=3),
)
def test_rounded_ratio_is_within_half_a_unit_in_the_fourth_digit(
    numerator: Decimal, denominator: Decimal
) -> None:
    [result] = compute_ratios(
        {"zinc": molar(str(numerator)), "copper": molar(str(denominator))}, [ZN_CU]
    )
    assert result.value is not None
    exact = numerator / denominator
    assert abs(result.value - exact) <= abs(exact) * Decimal("0.0005")
    assert len(result.value.as_tuple().digits) == 4
