from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.domain.interpretation import (
    check_absolute,
    compare_lab_flag,
    interpret,
    normalize_lab_flag,
)
from app.domain.range_errors import ImpossibleValueError
from app.domain.types import Comparator, InterpretationCode, RangeLimits, ResultValue

LL = InterpretationCode.CRITICAL_LOW
L = InterpretationCode.LOW
N = InterpretationCode.NORMAL
H = InterpretationCode.HIGH
HH = InterpretationCode.CRITICAL_HIGH
IND = InterpretationCode.INDETERMINATE

ORDER = {LL: 0, L: 1, N: 2, H: 3, HH: 4}

# Serum magnesium in mmol/L: 1.7-2.2 mg/dL, critical <1.0 / >5.0 mg/dL.
MAGNESIUM = RangeLimits(
    low=Decimal("0.70"),
    high=Decimal("0.91"),
    critical_low=Decimal("0.41"),
    critical_high=Decimal("2.06"),
    absolute_low=Decimal("0"),
    absolute_high=Decimal("8.2"),
)


def value(text: str, comparator: Comparator | None = None) -> ResultValue:
    return ResultValue(value=Decimal(text), comparator=comparator)


# --- plain values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "code", "critical"),
    [
        ("0.70", N, False),
        ("0.91", N, False),
        ("0.80", N, False),
        ("0.69", L, False),
        ("0.41", L, False),
        ("0.40", LL, True),
        ("0", LL, True),
        ("0.92", H, False),
        ("2.06", H, False),
        ("2.07", HH, True),
    ],
)
def test_plain_value_against_inclusive_reference_and_strict_critical_limits(
    number: str, code: InterpretationCode, critical: bool
) -> None:
    result = interpret(value(number), MAGNESIUM)
    assert (result.code, result.critical, result.note) == (code, critical, None)


def test_low_magnesium_in_mmol_is_flagged_critically_low() -> None:
    assert interpret(value("0.4"), MAGNESIUM).code == LL


def test_missing_limits_leave_that_side_unbounded() -> None:
    only_high = RangeLimits(high=Decimal("10"))
    assert interpret(value("0"), only_high).code == N
    assert interpret(value("11"), only_high).code == H
    only_low = RangeLimits(low=Decimal("2"))
    assert interpret(value("1000"), only_low).code == N
    assert interpret(value("1"), only_low).code == L
    assert interpret(value("5"), RangeLimits()).code == N


def test_critical_limit_without_reference_limit_still_flags_critical() -> None:
    limits = RangeLimits(critical_low=Decimal("1"), critical_high=Decimal("9"))
    assert interpret(value("0.5"), limits).code == LL
    assert interpret(value("5"), limits).code == N
    assert interpret(value("9"), limits).code == N
    assert interpret(value("9.5"), limits).code == HH


# --- comparators ------------------------------------------------------------------------------


def test_below_detection_entirely_under_the_lower_limit_is_low() -> None:
    result = interpret(value("0.5", Comparator.LT), RangeLimits(low=Decimal("0.7")))
    assert (result.code, result.critical, result.note) == (L, False, None)


def test_below_detection_at_the_critical_limit_is_critically_low() -> None:
    limits = RangeLimits(low=Decimal("0.7"), critical_low=Decimal("0.5"))
    result = interpret(value("0.5", Comparator.LT), limits)
    assert (result.code, result.critical) == (LL, True)


def test_value_spanning_low_and_normal_is_indeterminate_with_reason() -> None:
    result = interpret(value("5", Comparator.LT), RangeLimits(low=Decimal("2"), high=Decimal("8")))
    assert result.code == IND
    assert not result.critical
    assert result.note == "cannot be decided: the value is below 5 and the lower limit is 2"


def test_value_spanning_three_categories_names_every_limit_inside() -> None:
    result = interpret(value("20", Comparator.LT), RangeLimits(low=Decimal("2"), high=Decimal("8")))
    assert result.code == IND
    assert result.note == (
        "cannot be decided: the value is below 20 and the lower limit is 2 and the upper limit is 8"
    )


def test_possible_critical_low_is_never_hidden() -> None:
    result = interpret(value("0.5", Comparator.LT), MAGNESIUM)
    assert (result.code, result.critical) == (L, False)
    assert result.note == (
        "may be critically low: the value is below 0.5 and the critical lower limit is 0.41"
    )


def test_possible_critical_high_is_never_hidden() -> None:
    result = interpret(value("1.5", Comparator.GT), MAGNESIUM)
    assert (result.code, result.critical) == (H, False)
    assert result.note == (
        "may be critically high: the value is above 1.5 and the critical upper limit is 2.06"
    )


def test_greater_than_above_critical_high_is_critically_high() -> None:
    result = interpret(value("2.5", Comparator.GT), MAGNESIUM)
    assert (result.code, result.critical) == (HH, True)


@pytest.mark.parametrize(
    ("comparator", "number", "code"),
    [
        (Comparator.LT, "0.70", L),
        (Comparator.LE, "0.70", IND),
        (Comparator.LE, "0.69", L),
        (Comparator.GT, "0.91", H),
        (Comparator.GE, "0.91", IND),
        (Comparator.GE, "0.92", H),
        (Comparator.GT, "0.5", IND),
        (Comparator.LT, "0.41", LL),
        (Comparator.LE, "0.41", L),
    ],
)
def test_comparator_inclusiveness_decides_at_the_limits(
    comparator: Comparator, number: str, code: InterpretationCode
) -> None:
    assert interpret(value(number, comparator), MAGNESIUM).code == code


def test_at_least_value_names_its_own_phrase() -> None:
    result = interpret(value("0.91", Comparator.GE), MAGNESIUM)
    assert result.note == (
        "cannot be decided: the value is at least 0.91 and the upper limit is 0.91 "
        "and the critical upper limit is 2.06"
    )


def test_below_zero_is_not_a_possible_value() -> None:
    result = interpret(value("0", Comparator.LT), MAGNESIUM)
    assert result.code == IND
    assert result.note == "cannot be decided: the value <0 is not a possible value"


def test_comparator_value_inside_the_interval_is_normal() -> None:
    limits = RangeLimits(low=Decimal("0"), high=Decimal("5"))
    assert interpret(value("3", Comparator.LT), limits).code == N


# --- absolute limits --------------------------------------------------------------------------


def test_value_above_absolute_high_is_impossible() -> None:
    with pytest.raises(ImpossibleValueError) as caught:
        check_absolute(value("25"), MAGNESIUM)
    assert "above the absolute upper limit 8.2" in caught.value.message
    assert caught.value.value == value("25")


def test_negative_value_is_below_absolute_low() -> None:
    with pytest.raises(ImpossibleValueError, match="below the absolute lower limit 0"):
        check_absolute(value("-1"), MAGNESIUM)


@pytest.mark.parametrize(
    "reported",
    [value("0"), value("8.2"), value("1"), value("25", Comparator.LT), value("8", Comparator.GT)],
)
def test_plausible_values_pass_the_absolute_check(reported: ResultValue) -> None:
    check_absolute(reported, MAGNESIUM)


def test_greater_than_beyond_absolute_high_is_impossible() -> None:
    with pytest.raises(ImpossibleValueError):
        check_absolute(value("8.2", Comparator.GT), MAGNESIUM)


def test_below_zero_is_impossible_even_without_absolute_limits() -> None:
    with pytest.raises(ImpossibleValueError, match="cannot be negative"):
        check_absolute(value("0", Comparator.LT), RangeLimits())


def test_no_absolute_limits_accept_anything_non_negative() -> None:
    check_absolute(value("1000000"), RangeLimits(low=Decimal("1")))


# --- properties -------------------------------------------------------------------------------

decimals = st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def ordered_limits(draw: st.DrawFn) -> RangeLimits:
    points = sorted(draw(st.lists(decimals, min_size=4, max_size=4)))
    keep = draw(st.lists(st.booleans(), min_size=4, max_size=4))
    cl, low, high, ch = (point if kept else None for point, kept in zip(points, keep, strict=True))
    return RangeLimits(low=low, high=high, critical_low=cl, critical_high=ch)


@given(limits=ordered_limits(), first=decimals, second=decimals)
def test_interpret_is_monotonic(limits: RangeLimits, first: Decimal, second: Decimal) -> None:
    smaller, larger = sorted((first, second))
    assert (
        ORDER[interpret(value(str(smaller)), limits).code]
        <= ORDER[interpret(value(str(larger)), limits).code]
    )


@given(
    low=decimals,
    high=decimals,
    fraction=st.decimals(min_value=0, max_value=1, places=4),
)
def test_plain_value_inside_the_reference_interval_is_always_normal(
    low: Decimal, high: Decimal, fraction: Decimal
) -> None:
    low, high = sorted((low, high))
    inside = low + (high - low) * fraction
    assume(low <= inside <= high)
    result = interpret(ResultValue(value=inside), RangeLimits(low=low, high=high))
    assert (result.code, result.critical, result.note) == (N, False, None)


@given(limits=ordered_limits(), number=decimals)
def test_critical_flag_matches_critical_codes(limits: RangeLimits, number: Decimal) -> None:
    result = interpret(value(str(number)), limits)
    assert result.critical == (result.code in (LL, HH))


@given(
    limits=ordered_limits(),
    number=st.decimals(min_value="0.001", max_value=1000, places=3),
    fraction=st.decimals(min_value=0, max_value="0.999", places=3),
)
def test_decided_below_detection_value_agrees_with_every_possible_value(
    limits: RangeLimits, number: Decimal, fraction: Decimal
) -> None:
    result = interpret(value(str(number), Comparator.LT), limits)
    possible = interpret(ResultValue(value=number * fraction), limits).code
    if result.code == IND:
        return
    if result.note is None:
        assert possible == result.code
    else:
        # "may be critically ...": the value is the reported side or its critical neighbour.
        assert possible in {result.code, LL if result.code == L else HH}


# --- lab flags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "direction"),
    [
        ("L", "low"),
        ("LL", "low"),
        ("<", "low"),
        ("low", "low"),
        (" Low ", "low"),
        ("LOW*", "low"),
        ("critical low", "low"),
        ("H", "high"),
        ("HH", "high"),
        (">", "high"),
        ("HIGH", "high"),
        ("(H)", "high"),
        ("N", "normal"),
        ("NORMAL", "normal"),
        ("A", "abnormal"),
        ("AA", "abnormal"),
        ("", None),
        ("   ", None),
        (None, None),
        ("IND", None),
        ("R", None),
        ("whatever", None),
    ],
)
def test_lab_flags_are_normalised_to_a_direction(flag: str | None, direction: str | None) -> None:
    assert normalize_lab_flag(flag) == direction


def test_lab_normal_but_ours_low_is_a_disagreement() -> None:
    assert compare_lab_flag(L, "N") == (
        "the lab flagged this result normal (N) but it is low (L) against the applied "
        "reference range"
    )


@pytest.mark.parametrize(
    ("ours", "flag"),
    [
        (L, "L"),
        (L, "LL"),
        (LL, "L"),
        (H, "HIGH"),
        (HH, ">"),
        (N, "N"),
        (N, ""),
        (N, None),
        (H, "A"),
        (LL, "AA"),
        (IND, "H"),
        (None, "H"),
        (N, "unknown flag"),
    ],
)
def test_agreeing_missing_or_undecidable_flags_are_not_reported(
    ours: InterpretationCode | None, flag: str | None
) -> None:
    assert compare_lab_flag(ours, flag) is None


@pytest.mark.parametrize(
    ("ours", "flag"),
    [(H, "L"), (HH, "LOW"), (L, "H"), (N, "<"), (N, "HH"), (N, "A"), (L, "NORMAL")],
)
def test_opposite_directions_are_reported(ours: InterpretationCode, flag: str) -> None:
    sentence = compare_lab_flag(ours, flag)
    assert sentence is not None
    assert f"({flag})" in sentence
    assert f"({ours.value})" in sentence
