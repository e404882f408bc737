"""Parsing of reported result values ("0.75", "<0.5", ">1000") into exact decimals.

Labs send text; the value must stay exactly as reported ("0.50" keeps its trailing zero, which
records the lab's precision), so everything goes through ``Decimal`` from text and never
through binary floats. Anything that is not a finite, non-negative number is rejected rather
than guessed at: a wrong number is worse than a held result.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from app.domain.errors import InvalidValueError
from app.domain.types import Comparator, ResultValue

MAX_TEXT_LENGTH = 64
# Concentrations of these analytes span roughly 1e-3 .. 1e5 in any accepted unit; a magnitude
# outside 1e-12 .. 1e12 is a transcription or encoding error, not a measurement.
MAX_ADJUSTED_EXPONENT = 12
MIN_ADJUSTED_EXPONENT = -12

_COMPARATORS: dict[str, Comparator] = {
    "<=": Comparator.LE,
    ">=": Comparator.GE,
    "<": Comparator.LT,
    ">": Comparator.GT,
    "\u2264": Comparator.LE,  # ≤
    "\u2265": Comparator.GE,  # ≥
}
_VALUE = re.compile(
    r"""^(?P<comparator><=|>=|<|>|\u2264|\u2265)?\s*
        (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)$""",
    # ASCII digits only: "\d" would also read Arabic-Indic or full-width digits ("٣" as 3).
    re.VERBOSE | re.ASCII,
)
_NON_FINITE = re.compile(r"^[+-]?(nan|snan|inf|infinity)$", re.IGNORECASE)


def parse_result_value(raw: str | int | float | Decimal) -> ResultValue:
    """Parse a reported value into a ``ResultValue`` (decimal, comparator, original text)."""
    if isinstance(raw, bool):
        # bool is an int subclass; True is never a measurement.
        raise InvalidValueError("a boolean is not a result value", raw=str(raw))
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise InvalidValueError("result value must be a finite number", raw=str(raw))
        text = str(raw)  # shortest repr: 0.1 -> "0.1", never 0.1000000000000000055...
    elif isinstance(raw, int | Decimal):
        text = str(raw)
    elif isinstance(raw, str):
        text = raw.strip()
    else:
        raise InvalidValueError(f"result value must be text or a number, not {type(raw).__name__}")
    return _parse_text(text)


def _parse_text(text: str) -> ResultValue:
    shown = text if len(text) <= MAX_TEXT_LENGTH else text[:MAX_TEXT_LENGTH] + "..."
    if not text:
        raise InvalidValueError("result value is empty", raw=text)
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidValueError(
            f"result value is longer than {MAX_TEXT_LENGTH} characters", raw=shown
        )
    if text.isascii() and text.replace(".", "", 1).isdigit():
        # Digits with at most one point, the most common value: what the pattern reads as a
        # number without comparator or sign (checked once per sent result, so without it).
        value = Decimal(text)
        if not MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT:
            raise InvalidValueError(f"result value {shown!r} is out of range", raw=shown)
        return ResultValue(value, None, text)
    match = _VALUE.match(text)
    if match is None:
        bare = text.lstrip("<>=\u2264\u2265 ")
        if _NON_FINITE.match(bare):
            raise InvalidValueError("result value must be a finite number", raw=shown)
        if any(ch.isdigit() and not ch.isascii() for ch in text):
            raise InvalidValueError(
                f"result value {shown!r} uses non-ASCII digits; send the digits 0-9", raw=shown
            )
        raise InvalidValueError(f"result value {shown!r} is not a number", raw=shown)
    comparator_text, number_text = match.groups()
    try:
        value = Decimal(number_text)
    except InvalidOperation:  # pragma: no cover - the pattern only admits decimal literals
        raise InvalidValueError(f"result value {shown!r} is not a number", raw=shown) from None
    if value.is_signed() and not value.is_zero():
        raise InvalidValueError(
            f"result value {shown!r} is negative; concentrations cannot be below zero", raw=shown
        )
    if number_text[0] in "+-":
        value = value.copy_abs()  # "-0" / "+0": keep zero, drop the sign
    if not MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT:
        raise InvalidValueError(f"result value {shown!r} is out of range", raw=shown)
    comparator = _COMPARATORS[comparator_text] if comparator_text else None
    return ResultValue(value, comparator, text)  # positional: once per sent result
