"""The per-result shortcuts of the clinical path give what the definitions they stand for give:
rounding to six significant digits in one ``normalize`` (the quantize it replaced), a ratio's
rounding and quotient without ``localcontext``, the absolute-limit check of a single value
without intervals, and a plain number read without the pattern. Each reference below is the
code the shortcut replaced, kept verbatim."""

from __future__ import annotations

import dataclasses
import inspect
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import interpretation, ratios, units, values
from app.domain.errors import DomainError
from app.domain.frozen import slot_init
from app.domain.pipeline import InterpretedResult, NormalizedResult
from app.domain.range_errors import ImpossibleValueError
from app.domain.types import RangeLimits, ResultValue

_ARITHMETIC = Context(prec=40, rounding=ROUND_HALF_EVEN)


def reference_round_six(value: Decimal, digits: int = 6) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"cannot round non-finite value {value!r}")
    if value.is_zero():
        return Decimal(0)
    exponent = value.adjusted() - digits + 1
    rounded = value.quantize(Decimal(1).scaleb(exponent), context=_ARITHMETIC)
    normalized = rounded.normalize(_ARITHMETIC)
    exponent_after = normalized.as_tuple().exponent
    if isinstance(exponent_after, int) and exponent_after > 0:
        normalized = normalized.quantize(Decimal(1), context=_ARITHMETIC)
    return normalized


def reference_ratio_round(value: Decimal, digits: int = 4) -> Decimal:
    if value == 0:
        return Decimal(0)
    exponent = value.adjusted() - digits + 1
    with localcontext() as context:
        context.prec = max(digits + 1, 28)
        rounded = value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)
        if rounded.adjusted() > value.adjusted():
            rounded = rounded.quantize(Decimal(1).scaleb(exponent + 1), rounding=ROUND_HALF_UP)
        return rounded


def _outcome(call: object) -> tuple[str, str]:
    try:
        got = call()  # type: ignore[operator]
    except (ArithmeticError, ValueError, DomainError) as exc:
        return ("raised", f"{type(exc).__name__}: {exc}")
    return ("value", repr(got))


# Coefficients up to 45 digits at any clinical (and many unclinical) exponents, signed too.
DECIMALS = st.builds(
    lambda sign, digits, exponent: Decimal(f"{sign}{digits}E{exponent}"),
    st.sampled_from(["", "", "-"]),
    st.from_regex(r"\A[0-9]{1,45}\Z"),
    st.integers(-50, 20),
)


@settings(max_examples=600, deadline=None)
@given(value=DECIMALS, digits=st.sampled_from([6, 6, 4, 3, 1]))
def test_rounding_to_significant_digits_is_the_quantize_it_replaced(
    value: Decimal, digits: int
) -> None:
    got = _outcome(lambda: units.round_significant(value, digits))
    assert got == _outcome(lambda: reference_round_six(value, digits))


@pytest.mark.parametrize(
    "text", ["9999995", "999999.5", "99999950", "9.999995", "1234565", "1234575", "-100"]
)
def test_rounding_that_carries_into_a_new_digit_is_written_in_full(text: str) -> None:
    value = Decimal(text)
    assert repr(units.round_significant(value)) == repr(reference_round_six(value))


@settings(max_examples=400, deadline=None)
@given(value=DECIMALS, digits=st.sampled_from([4, 4, 3, 27, 28, 30]))
def test_a_ratios_rounding_is_what_localcontext_gave(value: Decimal, digits: int) -> None:
    got = _outcome(lambda: ratios.round_significant(value, digits))
    assert got == _outcome(lambda: reference_ratio_round(value, digits))


@settings(max_examples=400, deadline=None)
@given(numerator=DECIMALS, denominator=DECIMALS)
def test_a_ratio_is_the_quotient_localcontext_gave(
    numerator: Decimal, denominator: Decimal
) -> None:
    definition = ratios.RatioDefinition("ca-mg", "Ca:Mg", "calcium", "magnesium", None, None, "")
    numerator, denominator = abs(numerator), abs(denominator)
    got = ratios.compute_ratios(
        {"calcium": ResultValue(numerator), "magnesium": ResultValue(denominator)}, [definition]
    )
    if denominator == 0:
        assert got[0].value is None
        return
    with localcontext() as context:
        context.prec = 28
        expected = reference_ratio_round(numerator / denominator)
    assert repr(got[0].value) == repr(expected)


LIMIT = st.none() | st.integers(0, 12).map(lambda n: Decimal(n) / 2)


@settings(max_examples=600, deadline=None)
@given(number=st.integers(0, 14).map(lambda n: Decimal(n) / 2), low=LIMIT, high=LIMIT)
def test_a_single_value_is_checked_against_absolute_limits_as_by_its_intervals(
    number: Decimal, low: Decimal | None, high: Decimal | None
) -> None:
    """The interval definition: the value's one point must meet the closed absolute interval
    (an empty one, low above high, meets none)."""
    limits = RangeLimits(absolute_low=low, absolute_high=high)
    value = ResultValue(number)
    point = interpretation._possible_values(value)
    plausible = interpretation._Interval(low, True, high, True)
    if point.intersects(plausible):
        interpretation.check_absolute(value, limits)
    else:
        with pytest.raises(ImpossibleValueError):
            interpretation.check_absolute(value, limits)


PLAIN_NUMBERS = st.from_regex(r"\A(?:[0-9]{1,14}(?:\.[0-9]{0,10})?|\.[0-9]{1,10})\Z")


@settings(max_examples=400, deadline=None)
@given(text=PLAIN_NUMBERS | st.text(max_size=20))
def test_a_plain_number_reads_as_the_pattern_reads_it(text: str) -> None:
    """The shortcut for digits with one point gives what the full pattern gives."""
    got = _outcome(lambda: values.parse_result_value(text))
    match = values._VALUE.match(text.strip())
    if match is None or not text.strip() or len(text.strip()) > values.MAX_TEXT_LENGTH:
        return  # not a plain number: the shortcut does not apply
    comparator_text, number_text = match.groups()
    if comparator_text or number_text[0] in "+-" or "e" in number_text.lower():
        return
    number = Decimal(number_text)
    if not values.MIN_ADJUSTED_EXPONENT <= number.adjusted() <= values.MAX_ADJUSTED_EXPONENT:
        assert got[0] == "raised"
        return
    assert got == ("value", repr(ResultValue(number, None, text.strip())))


# --- slot_init -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Generated:
    code: str
    value: Decimal
    note: str | None = None
    count: int = 0


@slot_init
@dataclasses.dataclass(frozen=True, slots=True)
class _Slotted:
    code: str
    value: Decimal
    note: str | None = None
    count: int = 0


def test_a_slot_init_takes_the_generated_signature_and_defaults() -> None:
    assert str(inspect.signature(_Slotted)) == str(inspect.signature(_Generated))
    made = _Slotted("mg", Decimal("1.6"))
    assert (made.code, made.value, made.note, made.count) == ("mg", Decimal("1.6"), None, 0)
    assert _Slotted(code="mg", value=Decimal(1), count=2) == _Slotted("mg", Decimal(1), None, 2)
    with pytest.raises(TypeError):
        _Slotted("mg")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Slotted("mg", Decimal(1), unknown=1)  # type: ignore[call-arg]


def test_a_slot_init_instance_stays_frozen_hashable_and_replaceable() -> None:
    made = _Slotted("mg", Decimal("1.6"), "n", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.code = "ca"  # type: ignore[misc]
    assert hash(made) == hash(_Slotted("mg", Decimal("1.6"), "n", 1))
    assert dataclasses.replace(made, note=None) == _Slotted("mg", Decimal("1.6"), None, 1)
    assert repr(made) == repr(_Generated("mg", Decimal("1.6"), "n", 1)).replace(
        "_Generated", "_Slotted"
    )


def test_slot_init_refuses_what_it_cannot_stand_in_for() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        code: str

    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        code: str

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        codes: list[str] = dataclasses.field(default_factory=list)

    for cls in (Mutable, Unslotted, WithFactory):
        with pytest.raises(TypeError):
            slot_init(cls)


def test_the_pipelines_results_take_keywords_as_before() -> None:
    verdict = InterpretedResult(
        code=None, critical=False, note=None, lab_disagreement=None, reference_range=None
    )
    assert (verdict.possibly_critical, verdict.status) == (False, "interpreted")
    fields = [f.name for f in dataclasses.fields(NormalizedResult)]
    assert list(inspect.signature(NormalizedResult).parameters) == fields
