from __future__ import annotations

from decimal import Decimal

import pytest

from app.domain.catalog import default_catalog
from app.domain.precision import (
    as_reported,
    display_value,
    plain,
    round_to_figures,
    significant_figures,
)
from app.domain.units import convert

CATALOG = default_catalog()


@pytest.mark.parametrize(
    ("text", "figures"),
    [("9.2", 2), ("9.20", 3), ("190", 3), ("0.05", 1), ("0.050", 2), ("100", 3), ("0", 1)],
)
def test_significant_figures_count_the_digits_the_lab_wrote(text: str, figures: int) -> None:
    assert significant_figures(Decimal(text)) == figures


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "shown"),
    [
        ("calcium", "9.2", "mg/dL", "2.30"),  # 2 figures reported, at least 3 shown
        ("iron", "190", "ug/dL", "34.0"),  # not 34.0227
        ("zinc", "100", "ug/dL", "15.3"),
        ("magnesium", "1.822875", "mg/dL", "0.750000"),  # 7 figures: capped at the 6 stored
        ("magnesium", "1.5", "meq/L", "0.750"),
        ("ferritin", "1234.5", "ng/mL", "1234.5"),
    ],
)
def test_a_converted_value_is_shown_with_the_reported_values_significant_figures(
    analyte: str, value: str, unit: str, shown: str
) -> None:
    entry = CATALOG.get(analyte)
    reported = Decimal(value)
    canonical = convert(reported, analyte=entry, from_unit=unit, to_unit=entry.canonical_unit)
    assert plain(display_value(canonical, reported=reported)) == shown


def test_a_value_reported_in_the_canonical_unit_is_shown_as_reported() -> None:
    shown = display_value(Decimal("15.2952"), reported=Decimal("15.29520"), converted=False)
    assert plain(shown) == "15.29520"


def test_rounding_is_half_up_and_never_uses_an_exponent() -> None:
    assert plain(round_to_figures(Decimal("2.345"), 3)) == "2.35"
    assert plain(round_to_figures(Decimal("12345"), 3)) == "12300"
    assert plain(round_to_figures(Decimal("0.0003294"), 3)) == "0.000329"


def test_the_reported_digits_come_from_the_text_the_lab_sent() -> None:
    assert str(as_reported("9.20", Decimal("9.2"))) == "9.20"
    assert as_reported("< 0.5", Decimal("0.5")) == Decimal("0.5")
    assert str(as_reported("garbled", Decimal("3.1"))) == "3.1"
