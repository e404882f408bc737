"""How precisely a converted value is shown: no more digits than the lab measured.

A conversion multiplies by a factor with many digits (190 ug/dL iron is 34.02274... umol/L);
the stored canonical value keeps 6 significant digits so interpretation never compounds
rounding, but a value *shown* with those digits claims a precision the lab never had.

The rule (native API ``canonical.display_value`` and the FHIR ``canonical-value``
extension alike): a converted value is shown with as many significant figures as the value as
reported, and at least 3 (``DISPLAY_MIN_SIGNIFICANT``), rounded half-up; never more than the 6
that are stored. 9.2 mg/dL calcium shows as 2.30 mmol/L, 190 ug/dL iron as 34.0 umol/L. The
minimum of 3 is one guard digit: a conversion between mass and substance units shifts the
leading digit, so two significant figures could lose up to a tenth of the lab's resolution.
A value reported in the canonical unit is shown exactly as reported.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

from app.domain.errors import DomainError
from app.domain.values import parse_result_value

DISPLAY_MIN_SIGNIFICANT = 3
STORED_SIGNIFICANT = 6
_CONTEXT = Context(prec=40, rounding=ROUND_HALF_UP)


def significant_figures(value: Decimal) -> int:
    """The significant figures a decimal was written with (``9.20`` -> 3, ``0.05`` -> 1).

    Trailing zeros of a whole number count (``190`` -> 3): a lab writing 190 measured to the
    unit. Zero has one."""
    # A decimal's coefficient never has leading zeros (``Decimal("007")`` is 7; zero is the
    # one digit 0), so its digits are its significant figures.
    return len(value.as_tuple().digits) or 1


def round_to_figures(value: Decimal, figures: int) -> Decimal:
    """``value`` rounded half-up to ``figures`` significant figures, trailing zeros kept
    (``Decimal('2.30')``) and never in exponent form."""
    if not value.is_finite():
        raise ValueError(f"cannot round non-finite value {value!r}")
    if value.is_zero():
        return Decimal(0)
    exponent = value.adjusted() - figures + 1
    if exponent > 0:
        # 12345 at 3 figures is 12300: round at the hundreds, then write it out in full.
        return value.quantize(_quantum(exponent), context=_CONTEXT).quantize(
            Decimal(1), context=_CONTEXT
        )
    return value.quantize(_quantum(exponent), context=_CONTEXT)


# 10 ** exponent for the exponents clinical values round at (made once, not per result).
_QUANTA = {exponent: Decimal(1).scaleb(exponent) for exponent in range(-40, 41)}


def _quantum(exponent: int) -> Decimal:
    found = _QUANTA.get(exponent)
    return found if found is not None else Decimal(1).scaleb(exponent)


def display_value(canonical: Decimal, *, reported: Decimal, converted: bool = True) -> Decimal:
    """The canonical value as shown: rounded to the reported value's significant figures (at
    least ``DISPLAY_MIN_SIGNIFICANT``, at most ``STORED_SIGNIFICANT``). ``converted=False`` (the
    lab reported in the canonical unit) shows the reported value itself."""
    if not converted:
        return reported
    figures = min(max(significant_figures(reported), DISPLAY_MIN_SIGNIFICANT), STORED_SIGNIFICANT)
    return round_to_figures(canonical, figures)


def plain(value: Decimal) -> str:
    """A decimal as plain text, trailing zeros kept and no exponent (``2.30``, ``12300``)."""
    return format(value, "f")


def as_reported(value_text: str | None, stored: Decimal) -> Decimal:
    """The reported value with the digits the lab wrote (``"9.20"`` keeps its zero, which the
    stored, normalized decimal drops); the stored value when the text does not parse."""
    if value_text:
        if value_text == str(stored) and not stored.is_signed():
            # Text that is the stored decimal's own spelling parses back to that very decimal
            # (digits and exponent): the common case of a value sent without a comparator.
            return stored
        try:
            parsed = parse_result_value(value_text).value
        except DomainError:
            return stored
        if parsed == stored:
            return parsed
    return stored
