from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.errors import DomainError, InvalidValueError
from app.domain.types import Comparator
from app.domain.values import parse_result_value


@pytest.mark.parametrize(
    ("raw", "value", "comparator", "text"),
    [
        ("0.75", Decimal("0.75"), None, "0.75"),
        ("<0.5", Decimal("0.5"), Comparator.LT, "<0.5"),
        ("< 0.5", Decimal("0.5"), Comparator.LT, "< 0.5"),
        ("<=5", Decimal("5"), Comparator.LE, "<=5"),
        (">=2.0", Decimal("2.0"), Comparator.GE, ">=2.0"),
        (">1000", Decimal("1000"), Comparator.GT, ">1000"),
        ("\u22643", Decimal("3"), Comparator.LE, "\u22643"),
        (" 1.2 ", Decimal("1.2"), None, "1.2"),
        ("\t 2.1\n", Decimal("2.1"), None, "2.1"),
        (".5", Decimal("0.5"), None, ".5"),
        ("0", Decimal("0"), None, "0"),
        ("1.2e3", Decimal("1200"), None, "1.2e3"),
    ],
)
def test_reported_text_parses_to_exact_decimal_comparator_and_stripped_text(
    raw: str, value: Decimal, comparator: Comparator | None, text: str
) -> None:
    result = parse_result_value(raw)
    assert result.value == value
    assert result.comparator == comparator
    assert result.text == text


def test_trailing_zero_of_reported_precision_is_preserved() -> None:
    result = parse_result_value("0.50")
    assert str(result.value) == "0.50"
    assert result.value.as_tuple().exponent == -2


def test_decimal_input_keeps_its_exponent() -> None:
    assert str(parse_result_value(Decimal("1.230")).value) == "1.230"


def test_int_input_becomes_decimal_with_text() -> None:
    result = parse_result_value(42)
    assert result.value == Decimal(42)
    assert result.text == "42"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0.1, "0.1"), (2.4305, "2.4305"), (0.7, "0.7"), (1.1, "1.1")],
)
def test_float_input_goes_through_str_without_binary_artefacts(raw: float, expected: str) -> None:
    assert str(parse_result_value(raw).value) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "nan",
        "NaN",
        "sNaN",
        "inf",
        "-inf",
        "Infinity",
        "+Infinity",
        "<inf",
        float("nan"),
        float("inf"),
        float("-inf"),
        Decimal("NaN"),
        Decimal("Infinity"),
    ],
)
def test_non_finite_values_are_rejected(raw: str | float | Decimal) -> None:
    with pytest.raises(InvalidValueError, match="finite"):
        parse_result_value(raw)


@pytest.mark.parametrize("raw", ["-1", "-0.5", "<-2", -3, -0.25, Decimal("-7")])
def test_negative_concentrations_are_rejected(raw: str | int | float | Decimal) -> None:
    with pytest.raises(InvalidValueError, match="negative"):
        parse_result_value(raw)


@pytest.mark.parametrize("raw", ["", "   ", "\n"])
def test_empty_text_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidValueError, match="empty"):
        parse_result_value(raw)


@pytest.mark.parametrize(
    "raw",
    ["see note", "1.2.3", "1,2", "12 mg", "<", "<>5", "< = 5", "1 000", "0x10", "1e", "--1", "."],
)
def test_non_numeric_text_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidValueError, match="not a number"):
        parse_result_value(raw)


@pytest.mark.parametrize("raw", ["1e400", "1E+13", "1e-400", "0e999", 10**20, 1e300])
def test_absurd_magnitudes_are_rejected(raw: str | int | float) -> None:
    with pytest.raises(InvalidValueError, match="out of range"):
        parse_result_value(raw)


@pytest.mark.parametrize("raw", [True, False])
def test_booleans_are_not_result_values(raw: bool) -> None:
    with pytest.raises(InvalidValueError, match="boolean"):
        parse_result_value(raw)


def test_overlong_text_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidValueError, match="longer than"):
        parse_result_value("1" * 65)


def test_invalid_value_error_is_a_domain_value_error_with_raw_text() -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_result_value("see note")
    assert isinstance(caught.value, DomainError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.raw == "see note"
    assert caught.value.code == "invalid-value"


non_negative_decimals = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("1000000"), places=4, allow_nan=False
)


@given(value=non_negative_decimals)
def test_any_plain_non_negative_decimal_round_trips_exactly(value: Decimal) -> None:
    result = parse_result_value(str(value))
    assert result.value == value
    assert str(result.value) == str(value)
    assert result.comparator is None


@given(
    value=non_negative_decimals,
    comparator=st.sampled_from(list(Comparator)),
    space=st.sampled_from(["", " ", "  "]),
)
def test_comparator_prefix_is_split_from_the_number(
    value: Decimal, comparator: Comparator, space: str
) -> None:
    result = parse_result_value(f"{comparator.value}{space}{value}")
    assert result.comparator is comparator
    assert result.value == value


@given(text=st.text(alphabet=st.characters(exclude_categories=["Nd"]), min_size=1))
def test_text_without_any_digit_is_always_rejected(text: str) -> None:
    with pytest.raises(InvalidValueError):
        parse_result_value(text)
