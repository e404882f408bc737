from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain import units
from app.domain.catalog import Analyte, default_catalog
from app.domain.errors import UnitNotApplicableError, UnknownUnitError
from app.domain.units import conversion_factor, convert, round_significant

CATALOG = default_catalog()


def analyte(code: str) -> Analyte:
    return CATALOG.get(code)


def conv(value: str, code: str, from_unit: str, to_unit: str) -> Decimal:
    return convert(Decimal(value), analyte=analyte(code), from_unit=from_unit, to_unit=to_unit)


# --- worked examples (each number checked by hand against 10 / molar mass) ----------------


def test_one_mmol_per_litre_magnesium_is_two_meq_and_2_4305_mg_per_decilitre() -> None:
    assert conv("1", "magnesium", "mmol/L", "meq/L") == Decimal("2")
    assert conv("1", "magnesium", "mmol/L", "mg/dL") == Decimal("2.4305")


def test_magnesium_in_meq_per_litre_converts_to_half_the_mmol_value() -> None:
    assert conv("1.6", "magnesium", "meq/L", "mmol/L") == Decimal("0.8")
    assert conv("1.6", "magnesium", "meq/L", "mg/dL") == Decimal("1.9444")


def test_magnesium_mg_per_decilitre_to_mmol_divides_by_molar_mass_over_ten() -> None:
    # 2.0 mg/dL x 10 / 24.305 = 0.822876...
    assert conv("2.0", "magnesium", "mg/dL", "mmol/L") == Decimal("0.822876")


def test_calcium_meq_per_litre_is_twice_mmol_per_litre() -> None:
    assert conv("2.5", "calcium", "mmol/L", "meq/L") == Decimal("5")
    assert conv("5", "calcium", "meq/L", "mmol/L") == Decimal("2.5")


def test_calcium_ten_mg_per_decilitre_is_2_49513_mmol_per_litre() -> None:
    assert conv("10", "calcium", "mg/dL", "mmol/L") == Decimal("2.49513")


def test_ionized_calcium_mmol_to_mg_per_decilitre_uses_calcium_molar_mass() -> None:
    # 1.25 mmol/L x 40.078 / 10 = 5.00975 mg/dL
    assert conv("1.25", "calcium-ionized", "mmol/L", "mg/dL") == Decimal("5.00975")


def test_hundred_micrograms_per_decilitre_zinc_is_15_2952_umol_per_litre() -> None:
    assert conv("100", "zinc", "ug/dL", "umol/L") == Decimal("15.2952")


def test_zinc_micrograms_per_millilitre_equals_milligrams_per_litre() -> None:
    assert conv("1", "zinc", "ug/mL", "mg/L") == Decimal("1")
    assert conv("1", "zinc", "ug/mL", "umol/L") == Decimal("15.2952")


def test_iron_hundred_micrograms_per_decilitre_is_17_9067_umol_per_litre() -> None:
    assert conv("100", "iron", "ug/dL", "umol/L") == Decimal("17.9067")


def test_copper_hundred_micrograms_per_decilitre_is_15_7366_umol_per_litre() -> None:
    assert conv("100", "copper", "ug/dL", "umol/L") == Decimal("15.7366")


def test_ferritin_nanograms_per_millilitre_equal_micrograms_per_litre() -> None:
    assert conv("123.4", "ferritin", "ng/mL", "ug/L") == Decimal("123.4")
    assert conversion_factor(analyte("ferritin"), "ng/mL", "ug/L") == Decimal(1)


def test_rbc_magnesium_mg_per_decilitre_to_mmol_per_litre() -> None:
    # ARUP: "divide the result by 2.43"; 5 / 2.4305 = 2.057190...
    assert conv("5", "magnesium-rbc", "mg/dL", "mmol/L") == Decimal("2.05719")


def test_micrograms_per_litre_are_a_hundredth_of_micrograms_per_decilitre() -> None:
    assert conv("250", "copper", "ug/L", "ug/dL") == Decimal("25")


# --- rounding and representation ----------------------------------------------------------


def test_conversion_rounds_half_even_to_six_significant_digits() -> None:
    # 0.75 mmol/L x 2.4305 = 1.822875 exactly: the tie goes to the even digit (8).
    assert conv("0.75", "magnesium", "mmol/L", "mg/dL") == Decimal("1.82288")
    # 0.125 mmol/L x 2.4305 = 0.3038125 exactly: the tie goes to the even digit (2).
    assert str(conv("0.125", "magnesium", "mmol/L", "mg/dL")) == "0.303812"


def test_converted_values_are_plain_decimals_without_exponent() -> None:
    assert str(conv("100", "magnesium", "mmol/L", "mmol/L")) == "100"
    assert str(conv("1.5", "magnesium", "meq/L", "mmol/L")) == "0.75"
    assert str(conv("40000", "zinc", "ug/L", "ug/dL")) == "4000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123456789", "123457000"),
        ("0.000123456789", "0.000123457"),
        ("1.000005", "1"),
        ("1.000015", "1.00002"),
        ("2.50000000", "2.5"),
        ("0", "0"),
        ("0.000", "0"),
    ],
)
def test_round_significant_keeps_six_digits_without_exponent(value: str, expected: str) -> None:
    assert str(round_significant(Decimal(value))) == expected


def test_round_significant_refuses_non_finite_values() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        round_significant(Decimal("NaN"))


# --- errors --------------------------------------------------------------------------------


def test_meq_per_litre_does_not_apply_to_zinc() -> None:
    with pytest.raises(UnitNotApplicableError) as caught:
        conv("1", "zinc", "meq/L", "umol/L")
    error = caught.value
    assert error.unit == "meq/L"
    assert error.analyte_code == "zinc"
    assert error.accepted == analyte("zinc").accepted_units
    assert "meq/L" in str(error)
    assert "ug/dL" in str(error)
    assert "umol/L" in str(error)


@pytest.mark.parametrize("unit", ["mg/dL", "mmol/L", "umol/L", "meq/L"])
def test_ferritin_accepts_neither_mg_per_decilitre_nor_molar_units(unit: str) -> None:
    with pytest.raises(UnitNotApplicableError) as caught:
        conv("50", "ferritin", unit, "ug/L")
    assert caught.value.unit == unit
    assert "ug/L" in str(caught.value)
    assert "ng/mL" in str(caught.value)


def test_unknown_unit_names_the_unit_and_lists_the_accepted_ones() -> None:
    with pytest.raises(UnknownUnitError) as caught:
        conv("1", "magnesium", "furlongs/fortnight", "mmol/L")
    message = str(caught.value)
    assert "furlongs/fortnight" in message
    for unit in ("mg/dL", "mmol/L", "meq/L", "mg/L"):
        assert unit in message
    assert caught.value.accepted == analyte("magnesium").accepted_units


def test_lab_spelling_must_be_normalised_before_conversion() -> None:
    with pytest.raises(UnknownUnitError):
        conv("1", "magnesium", "mEq/L", "mmol/L")


def test_target_unit_is_checked_as_well_as_source_unit() -> None:
    with pytest.raises(UnitNotApplicableError) as caught:
        conv("1", "zinc", "umol/L", "mg/dL")
    assert caught.value.unit == "mg/dL"


def test_mass_to_molar_without_molar_mass_is_refused_rather_than_guessed() -> None:
    no_mass = replace(analyte("zinc"), code="mystery-metal", molar_mass=None)
    with pytest.raises(UnitNotApplicableError) as caught:
        convert(Decimal("1"), analyte=no_mass, from_unit="ug/dL", to_unit="umol/L")
    assert caught.value.unit == "umol/L"
    assert caught.value.analyte_code == "mystery-metal"
    # mass to mass still works: it needs no molar mass.
    assert convert(Decimal("1"), analyte=no_mass, from_unit="mg/L", to_unit="ug/dL") == 100


def test_meq_without_valence_is_refused() -> None:
    no_valence = replace(analyte("magnesium"), valence=None)
    with pytest.raises(UnitNotApplicableError) as caught:
        convert(Decimal("1"), analyte=no_valence, from_unit="meq/L", to_unit="mmol/L")
    assert caught.value.unit == "meq/L"


def test_unit_kind_classifies_mass_molar_and_equivalent_units() -> None:
    assert units.unit_kind("mg/dL") == "mass"
    assert units.unit_kind("umol/L") == "molar"
    assert units.unit_kind("meq/L") == "equivalent"
    with pytest.raises(UnknownUnitError):
        units.unit_kind("mEq/L")


# --- caching -------------------------------------------------------------------------------


class PintTouchedError(Exception):
    """Raised by the stand-in registry: pint was reached."""


def test_factor_is_cached_and_later_conversions_never_touch_pint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iron = analyte("iron")
    first = convert(Decimal("80"), analyte=iron, from_unit="ug/dL", to_unit="umol/L")

    def pint_is_off_limits() -> NoReturn:
        raise PintTouchedError

    monkeypatch.setattr(units, "_registry", pint_is_off_limits)
    for _ in range(100):
        assert convert(Decimal("80"), analyte=iron, from_unit="ug/dL", to_unit="umol/L") == first

    # Control: an uncached factor does reach pint, so the patch above really guards it.
    units._cached_factor.cache_clear()
    with pytest.raises(PintTouchedError):
        convert(Decimal("80"), analyte=iron, from_unit="ug/dL", to_unit="umol/L")


def test_different_molar_masses_never_share_a_cached_factor() -> None:
    zinc = analyte("zinc")
    heavier = replace(zinc, molar_mass=Decimal("130.76"))
    assert conv("100", "zinc", "ug/dL", "umol/L") == Decimal("15.2952")
    doubled = convert(Decimal("100"), analyte=heavier, from_unit="ug/dL", to_unit="umol/L")
    assert doubled == Decimal("7.64760")


# --- properties ----------------------------------------------------------------------------

ACCEPTED = [(a, unit) for a in CATALOG.all() for unit in a.accepted_units]
MASS_MOLAR_PAIRS = [
    (a, mass_unit, molar_unit)
    for a in CATALOG.all()
    if a.molar_mass is not None
    for mass_unit in a.accepted_units
    if units.unit_kind(mass_unit) == "mass"
    for molar_unit in a.accepted_units
    if units.unit_kind(molar_unit) != "mass"
]
values = st.decimals(
    min_value=Decimal("0.001"), max_value=Decimal("100000"), places=3, allow_nan=False
)


def test_every_analyte_with_a_molar_mass_has_mass_and_molar_units_to_round_trip() -> None:
    covered = {a.code for a, _, _ in MASS_MOLAR_PAIRS}
    assert covered == {a.code for a in CATALOG.all() if a.molar_mass is not None}


@given(pair=st.sampled_from(MASS_MOLAR_PAIRS), value=values)
def test_mass_to_molar_to_mass_round_trips_within_rounding_tolerance(
    pair: tuple[Analyte, str, str], value: Decimal
) -> None:
    subject, mass_unit, molar_unit = pair
    molar = convert(value, analyte=subject, from_unit=mass_unit, to_unit=molar_unit)
    back = convert(molar, analyte=subject, from_unit=molar_unit, to_unit=mass_unit)
    # Two roundings to 6 significant digits: relative error at most 2 x 5e-6.
    assert abs(back - value) <= value * Decimal("1.01e-5")


@given(pair=st.sampled_from(ACCEPTED), value=values)
def test_every_accepted_unit_of_every_analyte_converts_to_canonical(
    pair: tuple[Analyte, str], value: Decimal
) -> None:
    subject, unit = pair
    result = convert(value, analyte=subject, from_unit=unit, to_unit=subject.canonical_unit)
    exact = value * conversion_factor(subject, unit, subject.canonical_unit)
    assert result > 0
    assert abs(result - exact) <= exact * Decimal("5e-6")
    assert len(result.normalize().as_tuple().digits) <= units.SIGNIFICANT_DIGITS
    assert "E" not in str(result)


@given(pair=st.sampled_from(ACCEPTED))
def test_factor_to_canonical_and_back_multiplies_to_one(pair: tuple[Analyte, str]) -> None:
    subject, unit = pair
    there = conversion_factor(subject, unit, subject.canonical_unit)
    back = conversion_factor(subject, subject.canonical_unit, unit)
    assert abs(there * back - 1) < Decimal("1e-20")
