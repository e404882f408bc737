"""A value sent without a comparator is classified by testing each category's interval at one
point (``_only_category_of``) instead of intersecting intervals: the same verdict for any
limits, in order or not, with any limit missing, and any value, at or between the limits."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import interpretation
from app.domain.types import RangeLimits, ResultValue

NUMBERS = st.integers(0, 12).map(lambda n: Decimal(n) / 2)
LIMIT = st.none() | NUMBERS


@settings(max_examples=3000, deadline=None)
@given(
    number=NUMBERS,
    low=LIMIT,
    high=LIMIT,
    critical_low=LIMIT,
    critical_high=LIMIT,
)
def test_a_single_value_is_classified_as_by_its_intervals(
    number: Decimal,
    low: Decimal | None,
    high: Decimal | None,
    critical_low: Decimal | None,
    critical_high: Decimal | None,
) -> None:
    limits = RangeLimits(low=low, high=high, critical_low=critical_low, critical_high=critical_high)
    value = ResultValue(value=number)
    assert interpretation.interpret(value, limits) == interpretation._interpret_possible(
        value, limits
    )
