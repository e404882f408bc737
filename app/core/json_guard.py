"""Bounds on raw JSON text, checked before any parser sees it.

A 2 KB body can cost gigabytes once parsed: `1e999999999` is cheap as a Decimal but
`format(value, "f")` writes out a billion digits, a 100,000-digit integer takes seconds to
convert, and 1,000 levels of nesting exhaust the parser's recursion. These checks read the
bytes once, in linear time and without building anything, and say what is wrong.

Numbers: at most ``max_digits`` digits (leading zeros count) and an exponent within
``±max_exponent``. With the defaults (15 and 30) every accepted number is also read exactly
by a binary-float parser (15 significant digits round-trip through an IEEE double), so
`1e-400` is refused as out of range instead of silently becoming 0.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from functools import cache
from itertools import accumulate, count
from typing import Literal

# A JSON string, or an unterminated one up to the end of the text. Possessive, and a lone
# backslash is consumed too, so every quote is scanned once: linear even for `"\"\"\...`.
_STRING = re.compile(rb'"(?:[^"\\]|\\.?)*+(?:"|\Z)', re.DOTALL)
_BRACKETS = b"[]{}"
_DELETE_ALL_BUT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
# Opening brackets count 2, closing ones 0: depth after i brackets = running sum - i.
_BRACKET_WEIGHTS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


@dataclass(frozen=True, slots=True)
class JsonLimits:
    max_depth: int = 64
    max_digits: int = 15
    max_exponent: int = 30


@dataclass(frozen=True, slots=True)
class JsonViolation:
    kind: Literal["number-out-of-range", "too-deep"]
    message: str


def check_json(text: bytes, limits: JsonLimits) -> JsonViolation | None:
    """The first bound ``text`` breaks, or None. Malformed JSON is left to the parser."""
    outside_strings = _STRING.sub(b'""', text)
    number = _number_violation(outside_strings, limits)
    if number is not None:
        return number
    brackets = outside_strings.translate(None, _DELETE_ALL_BUT_BRACKETS)
    if len(brackets) > limits.max_depth:
        weights = brackets.translate(_BRACKET_WEIGHTS)
        depth = max(map(operator.sub, accumulate(weights), count(1)))
        if depth > limits.max_depth:
            return JsonViolation(
                "too-deep",
                f"The JSON is nested {depth} levels deep; at most {limits.max_depth} are accepted.",
            )
    return None


def _number_violation(text: bytes, limits: JsonLimits) -> JsonViolation | None:
    long_run, exponent, width = _number_patterns(limits.max_digits, limits.max_exponent)
    for match in long_run.finditer(text):
        run = match.group()
        if len(run) - run.count(b".") > limits.max_digits:
            return _out_of_range(limits)
    for match in exponent.finditer(text):
        digits = match.group(1)
        if len(digits) > width or int(digits) > limits.max_exponent:
            return _out_of_range(limits)
    return None


@cache
def _number_patterns(
    max_digits: int, max_exponent: int
) -> tuple[re.Pattern[bytes], re.Pattern[bytes], int]:
    """Compiled once per bound (every request is checked against the same two)."""
    long_run = re.compile(rb"[\d.]{%d,}" % (max_digits + 1))
    # Only exponents with as many significant digits as the bound can break it (e30 vs 30).
    width = len(str(max_exponent))
    exponent = re.compile(rb"[eE][+-]?0*([1-9]\d{%d,})" % (width - 1))
    return long_run, exponent, width


def _out_of_range(limits: JsonLimits) -> JsonViolation:
    return JsonViolation(
        "number-out-of-range",
        f"A JSON number is out of range: at most {limits.max_digits} digits and a power of "
        f"ten within ±{limits.max_exponent} are accepted (nothing was stored).",
    )
