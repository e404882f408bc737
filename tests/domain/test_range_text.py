from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.range_text import ParsedRange, parse_range_text


@pytest.mark.parametrize(
    ("text", "low", "high", "unit"),
    [
        ("10 - 15", "10", "15", None),
        ("10-15", "10", "15", None),
        ("0.70\u20131.00", "0.70", "1.00", None),
        ("0.70 \u2014 1.00 mmol/L", "0.70", "1.00", "mmol/L"),
        ("0.70\u22121.00", "0.70", "1.00", None),
        ("1.7-2.2 mg/dL", "1.7", "2.2", "mg/dL"),
        ("10 mg/dL - 15 mg/dL", "10", "15", "mg/dL"),
        ("10 mg/dL-15", "10", "15", "mg/dL"),
        ("60 to 120", "60", "120", None),
        ("60 TO 120 ug/dL", "60", "120", "ug/dL"),
        ("[0.7,1.0]", "0.7", "1.0", None),
        ("[0.7, 1.0] mmol/L", "0.7", "1.0", "mmol/L"),
        ("(0.7;1.0)", "0.7", "1.0", None),
        ("  10\u00a0-\u00a015  ", "10", "15", None),
        (".5-1", ".5", "1", None),
        ("4.0-6.4 \u00b5mol/L", "4.0", "6.4", "\u00b5mol/L"),
        ("5-5", "5", "5", None),
    ],
)
def test_intervals_are_parsed(text: str, low: str, high: str, unit: str | None) -> None:
    assert parse_range_text(text) == ParsedRange(
        low=Decimal(low), high=Decimal(high), unit=unit, text=text
    )


@pytest.mark.parametrize(
    ("text", "low", "high", "unit"),
    [
        ("<5", None, "5", None),
        ("< 5", None, "5", None),
        ("<=5", None, "5", None),
        ("\u22645", None, "5", None),
        (">60", "60", None, None),
        ("> 60 mL/min", "60", None, "mL/min"),
        (">=60", "60", None, None),
        ("\u2265 60", "60", None, None),
        ("<0.5 ug/L", None, "0.5", "ug/L"),
        ("less than 5", None, "5", None),
        ("Up to 30 ug/L", None, "30", "ug/L"),
        ("greater than 60", "60", None, None),
        ("at least 2", "2", None, None),
    ],
)
def test_one_sided_limits_are_parsed(
    text: str, low: str | None, high: str | None, unit: str | None
) -> None:
    parsed = parse_range_text(text)
    assert parsed.low == (Decimal(low) if low is not None else None)
    assert parsed.high == (Decimal(high) if high is not None else None)
    assert parsed.unit == unit
    assert parsed.text == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "negative",
        "see report",
        "Males: 50-150",
        "15-10",
        "10 mg/dL - 15 mmol/L",
        "10 - ",
        "- 15",
        "1e3-2e3",
        "10--15",
        "<",
        "N/A",
        "10,5-15,5",
        "-5 - 5",
    ],
)
def test_unparseable_text_keeps_the_text_and_no_limits(text: str) -> None:
    assert parse_range_text(text) == ParsedRange(low=None, high=None, unit=None, text=text)


@given(st.text())
def test_parse_never_raises_and_keeps_the_text_verbatim(text: str) -> None:
    parsed = parse_range_text(text)
    assert parsed.text == text
    if parsed.low is not None and parsed.high is not None:
        assert parsed.low <= parsed.high


@given(
    low=st.decimals(min_value=0, max_value=10**6, places=3),
    high=st.decimals(min_value=0, max_value=10**6, places=3),
    separator=st.sampled_from(["-", " - ", "\u2013", " to "]),
)
def test_formatted_intervals_round_trip(low: Decimal, high: Decimal, separator: str) -> None:
    low, high = sorted((low, high))
    parsed = parse_range_text(f"{low}{separator}{high}")
    assert (parsed.low, parsed.high) == (low, high)
