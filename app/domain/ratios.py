"""Derived mineral ratios per panel (e.g. Ca:Mg and Zn:Cu molar ratios).

Inputs are canonical molar values keyed by analyte code. Calcium and magnesium are both in mmol/L
and zinc and copper both in umol/L, so a molar ratio is the plain quotient of the two numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal
from typing import Any

from app.domain.frozen import slot_init
from app.domain.types import InterpretationCode, ResultValue

SIGNIFICANT_DIGITS = 4

# The arithmetic of a ratio: 28 digits, half-even (Python's default context, named here rather
# than entered with ``localcontext`` per ratio, which copies the thread's context each time).
_QUOTIENT = Context(prec=28, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class RatioDefinition:
    code: str
    display: str
    numerator: str
    denominator: str
    low: Decimal | None
    high: Decimal | None
    source: str

    @classmethod
    def of(cls, ratio: Any) -> RatioDefinition:
        """The definition of a stored ratio range or a ratio document: both carry these
        attribute names."""
        return cls(**{field.name: getattr(ratio, field.name) for field in fields(cls)})


@slot_init
@dataclass(frozen=True, slots=True)
class RatioResult:
    code: str
    display: str
    value: Decimal | None
    interpretation: InterpretationCode | None
    low: Decimal | None
    high: Decimal | None
    note: str | None = None


def compute_ratios(
    values: Mapping[str, ResultValue], definitions: Sequence[RatioDefinition]
) -> list[RatioResult]:
    """One result per definition whose two analytes are both present, in definition order.

    A ratio involving a censored value (``<5``) or a zero denominator is reported with value None
    and a note, so the reader sees why it is missing rather than a misleading number.
    """
    results: list[RatioResult] = []
    for definition in definitions:
        numerator = values.get(definition.numerator)
        denominator = values.get(definition.denominator)
        if numerator is None or denominator is None:
            continue
        results.append(_compute_one(definition, numerator, denominator))
    return results


def ratio_documents(
    values: Mapping[str, ResultValue], definitions: Sequence[RatioDefinition]
) -> list[dict[str, Any]]:
    """``compute_ratios`` as a panel stores them: decimals as strings, with each definition's
    source; a ratio with neither a value nor a note (nothing to say) is left out."""
    sources: dict[str, str] = {}
    for definition in definitions:
        sources.setdefault(definition.code, definition.source)  # the first, as a lookup would
    return [
        {
            "code": ratio.code,
            "display": ratio.display,
            "value": _text(ratio.value),
            "interpretation": ratio.interpretation.value if ratio.interpretation else None,
            "low": _text(ratio.low),
            "high": _text(ratio.high),
            "note": ratio.note,
            "source": sources.get(ratio.code),
        }
        for ratio in compute_ratios(values, definitions)
        if ratio.value is not None or ratio.note is not None
    ]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def round_significant(value: Decimal, digits: int = SIGNIFICANT_DIGITS) -> Decimal:
    """``value`` rounded half up to ``digits`` significant digits."""
    if value == 0:
        return Decimal(0)
    exponent = value.adjusted() - digits + 1
    context = _QUOTIENT if digits < 28 else Context(prec=digits + 1)
    rounded = value.quantize(
        Decimal(1).scaleb(exponent, context), rounding=ROUND_HALF_UP, context=context
    )
    if rounded.adjusted() > value.adjusted():
        # Rounding carried into a new digit (9.9996 -> 10.000): drop the extra one.
        rounded = rounded.quantize(
            Decimal(1).scaleb(exponent + 1, context), rounding=ROUND_HALF_UP, context=context
        )
    return rounded


def interpret_ratio(
    value: Decimal, low: Decimal | None, high: Decimal | None
) -> InterpretationCode:
    """L / N / H against the inclusive interval ``[low, high]`` (a missing side is unbounded)."""
    if low is not None and value < low:
        return InterpretationCode.LOW
    if high is not None and value > high:
        return InterpretationCode.HIGH
    return InterpretationCode.NORMAL


def _compute_one(
    definition: RatioDefinition, numerator: ResultValue, denominator: ResultValue
) -> RatioResult:
    def not_computed(note: str) -> RatioResult:
        return RatioResult(
            code=definition.code,
            display=definition.display,
            value=None,
            interpretation=None,
            low=definition.low,
            high=definition.high,
            note=note,
        )

    for analyte, value in (
        (definition.numerator, numerator),
        (definition.denominator, denominator),
    ):
        if value.comparator is not None:
            return not_computed(
                f"not computed: {analyte} was reported as {value.comparator.value}{value.value}, "
                "so the ratio has no single value"
            )
        if value.value < 0:
            return not_computed(f"not computed: {analyte} has a negative value ({value.value})")
    if denominator.value == 0:
        return not_computed(f"not computed: {definition.denominator} is zero")
    ratio = round_significant(_QUOTIENT.divide(numerator.value, denominator.value))
    return RatioResult(
        code=definition.code,
        display=definition.display,
        value=ratio,
        interpretation=interpret_ratio(ratio, definition.low, definition.high),
        low=definition.low,
        high=definition.high,
    )
