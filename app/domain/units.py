"""Unit conversion for analyte concentrations, with factors derived by pint.

Factors are never typed by hand: pint computes them from unit definitions and, for
mass <-> molar, from the analyte's molar mass through pint's ``chemistry`` context. pint has no
equivalents, so ``meq/L`` is ``mmol/L`` x valence (Mg2+ and Ca2+: 1 mmol/L = 2 meq/L).

Conversion is on the hot path of every ingested result, so each factor is computed once per
(molar mass, valence, from, to), cached as a ``Decimal``, and later conversions never touch pint.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Literal

from app.domain.errors import UnitNotApplicableError, UnknownUnitError

if TYPE_CHECKING:
    from app.domain.catalog import Analyte

UnitKind = Literal["mass", "molar", "equivalent"]

SIGNIFICANT_DIGITS = 6

# Enough precision for any clinical magnitude times a 28-digit factor.
_ARITHMETIC = Context(prec=40, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class _UnitSpec:
    pint_expression: str
    kind: UnitKind


# UCUM code -> how pint spells it. Only the mapping is written here; pint derives every factor.
_UNITS: dict[str, _UnitSpec] = {
    "mg/dL": _UnitSpec("milligram / deciliter", "mass"),
    "mg/L": _UnitSpec("milligram / liter", "mass"),
    "ug/dL": _UnitSpec("microgram / deciliter", "mass"),
    "ug/L": _UnitSpec("microgram / liter", "mass"),
    "ug/mL": _UnitSpec("microgram / milliliter", "mass"),
    "ng/mL": _UnitSpec("nanogram / milliliter", "mass"),
    "mmol/L": _UnitSpec("millimole / liter", "molar"),
    "umol/L": _UnitSpec("micromole / liter", "molar"),
    # pint has no equivalents: meq/L is expressed in mmol/L and scaled by the valence.
    "meq/L": _UnitSpec("millimole / liter", "equivalent"),
}

KNOWN_UNITS: tuple[str, ...] = tuple(_UNITS)


def is_known_unit(unit: str) -> bool:
    """True when ``unit`` is a UCUM code this module can convert."""
    return unit in _UNITS


def unit_kind(unit: str) -> UnitKind:
    """Whether a UCUM unit measures mass, amount of substance, or charge equivalents."""
    spec = _UNITS.get(unit)
    if spec is None:
        raise UnknownUnitError(unit, KNOWN_UNITS)
    return spec.kind


@cache
def _registry() -> Any:
    """The one pint registry, built lazily (construction costs ~0.2 s) with Decimal magnitudes."""
    import pint

    return pint.UnitRegistry(non_int_type=Decimal)


def ensure_applicable(analyte: Analyte, unit: str) -> None:
    """Raise unless ``unit`` is a supported UCUM code accepted for ``analyte``."""
    if unit not in _UNITS:
        raise UnknownUnitError(unit, analyte.accepted_units)
    if unit not in analyte.accepted_units:
        raise UnitNotApplicableError(unit, analyte.code, analyte.accepted_units)


def conversion_factor(analyte: Analyte, from_unit: str, to_unit: str) -> Decimal:
    """The factor f such that value_in(to_unit) = value_in(from_unit) x f for this analyte.

    Both units must be UCUM codes accepted for the analyte (normalise lab spellings first with
    ``Catalog.normalize_unit``).
    """
    ensure_applicable(analyte, from_unit)
    ensure_applicable(analyte, to_unit)
    source, target = _UNITS[from_unit], _UNITS[to_unit]
    for unit, spec in ((from_unit, source), (to_unit, target)):
        if spec.kind == "equivalent" and analyte.valence is None:
            raise UnitNotApplicableError(unit, analyte.code, analyte.accepted_units)
    if _base_kind(source.kind) != _base_kind(target.kind) and analyte.molar_mass is None:
        # Mass <-> molar needs the molar mass; never guess it from the unit alone.
        molar_unit = to_unit if source.kind == "mass" else from_unit
        raise UnitNotApplicableError(molar_unit, analyte.code, analyte.accepted_units)
    return _cached_factor(analyte.molar_mass, analyte.valence, from_unit, to_unit)


@lru_cache(maxsize=1024)
def _cached_factor(
    molar_mass: Decimal | None,
    valence: int | None,
    from_unit: str,
    to_unit: str,
) -> Decimal:
    # Keyed on the physics (molar mass, valence, units) rather than the analyte code, so two
    # catalogs that disagree on a molar mass can never share a wrong factor.
    if from_unit == to_unit:
        return Decimal(1)
    source, target = _UNITS[from_unit], _UNITS[to_unit]
    scale = Decimal(1)
    if source.kind == "equivalent":
        assert valence is not None
        scale /= Decimal(valence)
    if target.kind == "equivalent":
        assert valence is not None
        scale *= Decimal(valence)

    ureg = _registry()
    quantity = ureg.Quantity(Decimal(1), source.pint_expression)
    if _base_kind(source.kind) == _base_kind(target.kind):
        converted = quantity.to(target.pint_expression)
    else:
        assert molar_mass is not None
        converted = quantity.to(
            target.pint_expression,
            "chemistry",
            mw=ureg.Quantity(molar_mass, "gram / mole"),
        )
    return _ARITHMETIC.multiply(Decimal(converted.magnitude), scale)


def _base_kind(kind: UnitKind) -> Literal["mass", "molar"]:
    return "mass" if kind == "mass" else "molar"


# Rounding to the stored significant digits, as one operation of a context of that precision.
_SIGNIFICANT = Context(prec=SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN)


def round_significant(value: Decimal, digits: int = SIGNIFICANT_DIGITS) -> Decimal:
    """Round to ``digits`` significant digits (half-even), dropping trailing zeros.

    The result never uses a positive exponent (``Decimal('100')``, not ``'1E+2'``) so it reads
    as a plain decimal when serialised.
    """
    if not value.is_finite():
        raise ValueError(f"cannot round non-finite value {value!r}")
    if value.is_zero():
        return Decimal(0)
    # normalize() in a context of ``digits`` precision rounds to that many significant digits
    # (half-even, the quantize at ``adjusted() - digits + 1`` it replaces) and strips trailing
    # zeros in one step: this runs once per ingested result.
    context = (
        _SIGNIFICANT
        if digits == SIGNIFICANT_DIGITS
        else Context(prec=digits, rounding=ROUND_HALF_EVEN)
    )
    normalized = value.normalize(context)
    # Only a magnitude of 10 or more can be left with a positive exponent (1E+2).
    if not -10 < normalized < 10:
        exponent_after = normalized.as_tuple().exponent
        if isinstance(exponent_after, int) and exponent_after > 0:
            normalized = normalized.quantize(Decimal(1), context=_ARITHMETIC)
    return normalized


def convert(value: Decimal, *, analyte: Analyte, from_unit: str, to_unit: str) -> Decimal:
    """Convert ``value`` between two units accepted for ``analyte``, to 6 significant digits."""
    return scaled(value, conversion_factor(analyte, from_unit, to_unit))


def scaled(value: Decimal, factor: Decimal) -> Decimal:
    """``value`` x ``factor`` (a ``conversion_factor``) to 6 significant digits: ``convert``
    for a caller that keeps the factor of a pair of units (``app.domain.pipeline``)."""
    return round_significant(_ARITHMETIC.multiply(value, factor))
