"""app.core.json_guard: its patterns are compiled once per bound, and it still says exactly what
the per-call version said (compared over generated JSON-ish texts and several bounds)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.json_guard import _STRING, JsonLimits, JsonViolation, _number_violation, check_json

LIMITS = (
    JsonLimits(),
    JsonLimits(max_depth=3, max_digits=4, max_exponent=5),
    JsonLimits(2, 1, 300),
)


def _number_violation_per_call(text: bytes, limits: JsonLimits) -> JsonViolation | None:
    """The implementation before the patterns were cached, verbatim."""
    out_of_range = JsonViolation(
        "number-out-of-range",
        f"A JSON number is out of range: at most {limits.max_digits} digits and a power of "
        f"ten within ±{limits.max_exponent} are accepted (nothing was stored).",
    )
    long_run = re.compile(rb"[\d.]{%d,}" % (limits.max_digits + 1))
    for match in long_run.finditer(text):
        run = match.group()
        if len(run) - run.count(b".") > limits.max_digits:
            return out_of_range
    width = len(str(limits.max_exponent))
    exponent = re.compile(rb"[eE][+-]?0*([1-9]\d{%d,})" % (width - 1))
    for match in exponent.finditer(text):
        digits = match.group(1)
        if len(digits) > width or int(digits) > limits.max_exponent:
            return out_of_range
    return None


_PIECES = st.sampled_from(
    [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b".", b"-", b"+", b"e", b"E", b"0"]
    + [str(d).encode() for d in range(10)]
    + [b"1e30", b"1e31", b"1E+300", b"1e-0031", b"0.000000000000001", b"1234567890123456"]
    + [b'"a1e99"', b'"12345678901234567890"', b"true", b" "]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=60), st.sampled_from(LIMITS))
def test_cached_patterns_judge_every_text_as_before(
    pieces: list[bytes], limits: JsonLimits
) -> None:
    text = b"".join(pieces)

    assert _number_violation(text, limits) == _number_violation_per_call(text, limits)
    outside_strings = _STRING.sub(b'""', text)
    assert _number_violation(outside_strings, limits) == _number_violation_per_call(
        outside_strings, limits
    )


def test_a_violation_still_names_the_bounds() -> None:
    violation = check_json(b'{"v": 1e31}', JsonLimits())

    assert violation is not None
    assert violation.kind == "number-out-of-range"
    assert "at most 15 digits" in violation.message
    assert "±30" in violation.message
