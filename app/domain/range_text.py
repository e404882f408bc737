"""Reading the free-text reference ranges labs send ("10 - 15", "<5", "1.7-2.2 mg/dL").

The text is always kept verbatim; low/high are filled only when the text is unambiguous. Nothing
here raises: text that does not fit one of the known shapes gives ``low = high = None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_NUMBER = r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
# A UCUM-ish unit token: starts with a letter, micro sign or percent; never the word "to" and
# never an exponent ("1e3"), which would silently turn scientific notation into a unit.
_UNIT = r"(?!to\b)(?![eE][+-]?[0-9])(?:[A-Za-z\u00b5\u03bc%][A-Za-z0-9\u00b5\u03bc%/.*^]*)"

_RANGE = re.compile(
    rf"^(?P<low>{_NUMBER})\s*(?P<unit1>{_UNIT})?\s*(?:-|to)\s*(?P<high>{_NUMBER})\s*"
    rf"(?P<unit2>{_UNIT})?$",
    re.IGNORECASE,
)
_BRACKETS = re.compile(
    rf"^[\[(]\s*(?P<low>{_NUMBER})\s*[,;]\s*(?P<high>{_NUMBER})\s*[\])]\s*(?P<unit2>{_UNIT})?$"
)
_COMPARATOR = re.compile(
    rf"^(?P<op><=|>=|=<|=>|<|>)\s*(?P<number>{_NUMBER})\s*(?P<unit1>{_UNIT})?$"
)
_WORDED = re.compile(
    rf"^(?P<words>less than or equal to|greater than or equal to|less than|greater than|below|"
    rf"under|above|over|up to|at least|at most)\s+(?P<number>{_NUMBER})\s*(?P<unit1>{_UNIT})?$",
    re.IGNORECASE,
)

_UPPER_WORDS = frozenset(
    {"less than or equal to", "less than", "below", "under", "up to", "at most"}
)

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"), "-")
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\u2009\u200a"), " ")


@dataclass(frozen=True, slots=True)
class ParsedRange:
    """Limits read from a lab's range text; ``text`` is always the original, unchanged."""

    low: Decimal | None
    high: Decimal | None
    unit: str | None
    text: str


def parse_range_text(text: str) -> ParsedRange:
    """Parse ``text``; unreadable text gives ``low = high = unit = None``. Never raises."""
    try:
        parsed = _parse(text)
    except (InvalidOperation, ValueError, ArithmeticError):
        parsed = None
    if parsed is None:
        return ParsedRange(low=None, high=None, unit=None, text=text)
    low, high, unit = parsed
    return ParsedRange(low=low, high=high, unit=unit, text=text)


def _parse(text: str) -> tuple[Decimal | None, Decimal | None, str | None] | None:
    cleaned = _normalise(text)
    if not cleaned:
        return None
    match = _RANGE.match(cleaned) or _BRACKETS.match(cleaned)
    if match is not None:
        consistent, unit = _single_unit(match.groupdict().get("unit1"), match.group("unit2"))
        low, high = Decimal(match.group("low")), Decimal(match.group("high"))
        if not consistent or low > high:
            return None
        return low, high, unit
    match = _COMPARATOR.match(cleaned)
    if match is not None:
        number = Decimal(match.group("number"))
        upper = match.group("op") in ("<", "<=", "=<")
        return (
            (None, number, match.group("unit1")) if upper else (number, None, match.group("unit1"))
        )
    match = _WORDED.match(cleaned)
    if match is not None:
        number = Decimal(match.group("number"))
        upper = match.group("words").lower() in _UPPER_WORDS
        return (
            (None, number, match.group("unit1")) if upper else (number, None, match.group("unit1"))
        )
    return None


def _normalise(text: str) -> str:
    cleaned = text.translate(_DASHES).translate(_SPACES)
    cleaned = cleaned.replace("\u2264", "<=").replace("\u2265", ">=")
    return " ".join(cleaned.split())


def _single_unit(first: str | None, second: str | None) -> tuple[bool, str | None]:
    """The one unit named on either side; not consistent when the sides name different units."""
    if first and second and first != second:
        return False, None
    return True, first or second
