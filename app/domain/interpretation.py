"""Interpreting one value against one reference-range row (HL7 ObservationInterpretation codes).

The reference interval is inclusive ``[low, high]``; critical limits are strict (a value equal to
``critical_low`` is low, not critically low). A value sent with a comparator (``<0.5``) stands for
a set of possible true values; it is interpreted only when every possible value falls in the same
category, except that a span of critical and non-critical on the same side is reported as the
non-critical category with a "may be critically ..." note, so a possible critical is never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from app.domain.frozen import slot_init
from app.domain.range_errors import ImpossibleValueError
from app.domain.types import Comparator, InterpretationCode, RangeLimits, ResultValue

_LL = InterpretationCode.CRITICAL_LOW
_L = InterpretationCode.LOW
_N = InterpretationCode.NORMAL
_H = InterpretationCode.HIGH
_HH = InterpretationCode.CRITICAL_HIGH
_IND = InterpretationCode.INDETERMINATE

_ORDER = (_LL, _L, _N, _H, _HH)
# A value that may lie on either side of a critical limit, and nowhere else, is flagged with
# the non-critical code and marked possibly critical (never silently critical).
_CRITICAL_EDGES: dict[tuple[InterpretationCode, ...], tuple[InterpretationCode, str]] = {
    (_LL, _L): (_L, "low"),
    (_H, _HH): (_H, "high"),
}


@slot_init
@dataclass(frozen=True, slots=True)
class Interpretation:
    code: InterpretationCode
    critical: bool
    note: str | None = None
    # A comparator value whose possible true values reach beyond a critical limit (``<0.5``
    # where the critical low is 0.41): not known to be critical, but treated as if it might be.
    possibly_critical: bool = False


@slot_init
@dataclass(frozen=True, slots=True)
class _Interval:
    """A set of reals; ``None`` bounds are infinite."""

    low: Decimal | None
    low_closed: bool
    high: Decimal | None
    high_closed: bool

    def is_empty(self) -> bool:
        if self.low is None or self.high is None:
            return False
        if self.low < self.high:
            return False
        return not (self.low == self.high and self.low_closed and self.high_closed)

    def intersects(self, other: _Interval) -> bool:
        if self.is_empty() or other.is_empty():
            return False
        return _before(self.low, self.low_closed, other.high, other.high_closed) and _before(
            other.low, other.low_closed, self.high, self.high_closed
        )


def _before(low: Decimal | None, low_closed: bool, high: Decimal | None, high_closed: bool) -> bool:
    """True when the interval starting at ``low`` and the one ending at ``high`` can meet."""
    if low is None or high is None:
        return True
    if low < high:
        return True
    return low == high and low_closed and high_closed


def _possible_values(value: ResultValue) -> _Interval:
    """The true values a reported value stands for; concentrations are never negative."""
    number = value.value
    match value.comparator:
        case None:
            return _Interval(number, True, number, True)
        case Comparator.LT:
            return _Interval(Decimal(0), True, number, False)
        case Comparator.LE:
            return _Interval(Decimal(0), True, number, True)
        case Comparator.GT:
            return _Interval(number, False, None, False)
        case Comparator.GE:
            return _Interval(number, True, None, False)


def check_absolute(value: ResultValue, limits: RangeLimits) -> None:
    """Raise ``ImpossibleValueError`` when no possible value lies within the absolute limits."""
    if value.comparator is None:
        # Most values: one number, which the closed absolute interval holds or not (the
        # interval test below for a single point, without building intervals; an empty
        # interval, low above high, holds no number).
        number, low, high = value.value, limits.absolute_low, limits.absolute_high
        if (low is None or low <= number) and (high is None or number <= high):
            return
    possible = _possible_values(value)
    if possible.is_empty():
        raise ImpossibleValueError(
            f"{describe_value(value)} is not a possible concentration (a concentration cannot "
            "be negative)",
            value,
            limits,
        )
    plausible = _Interval(limits.absolute_low, True, limits.absolute_high, True)
    if possible.intersects(plausible):
        return
    shown = describe_value(value)
    if limits.absolute_high is not None and not _Interval(
        None, False, limits.absolute_high, True
    ).intersects(possible):
        bound = f"above the absolute upper limit {_fmt(limits.absolute_high)}"
    else:
        bound = f"below the absolute lower limit {_fmt(limits.absolute_low)}"
    raise ImpossibleValueError(f"{shown} is {bound}: a physically impossible result", value, limits)


# The verdict of a value in exactly one category (frozen, so one instance per code is shared).
_CATEGORY = {code: Interpretation(code, code in (_LL, _HH)) for code in _ORDER}


def interpret(value: ResultValue, limits: RangeLimits) -> Interpretation:
    """Classify ``value`` against ``limits`` (both in the same unit)."""
    if value.comparator is None:  # most values: one number, in exactly one category
        code = _only_category_of(value.value, limits)
        if code is not None:
            return _CATEGORY[code]
    return _interpret_possible(value, limits)


def _only_category_of(number: Decimal, limits: RangeLimits) -> InterpretationCode | None:
    """The one category of ``_regions(limits)`` holding ``number``; None when it lies in none
    or several (limits out of order), left to ``_interpret_possible``. Each test is the
    region's own interval for a single point: the same answer, without building intervals."""
    low, high = limits.low, limits.high
    critical_low, critical_high = limits.critical_low, limits.critical_high
    normal_low = low if low is not None else critical_low
    normal_high = high if high is not None else critical_high
    in_ll = critical_low is not None and number < critical_low
    in_l = low is not None and (critical_low is None or critical_low <= number) and number < low
    in_n = (normal_low is None or normal_low <= number) and (
        normal_high is None or number <= normal_high
    )
    in_h = high is not None and high < number and (critical_high is None or number <= critical_high)
    in_hh = critical_high is not None and critical_high < number
    if in_ll + in_l + in_n + in_h + in_hh != 1:
        return None
    return _LL if in_ll else _L if in_l else _N if in_n else _H if in_h else _HH


def _interpret_possible(value: ResultValue, limits: RangeLimits) -> Interpretation:
    """``interpret`` over the interval of values ``value`` stands for."""
    possible = _possible_values(value)
    if possible.is_empty():
        return Interpretation(
            _IND, False, f"cannot be decided: {describe_value(value)} is not a possible value"
        )
    regions = _regions(limits)
    codes = [
        code
        for code in _ORDER
        if (region := regions[code]) is not None and possible.intersects(region)
    ]
    if len(codes) == 1:
        code = codes[0]
        return Interpretation(code, code in (_LL, _HH))
    value_phrase = _value_phrase(value)
    limit_phrase = _limits_inside(possible, limits)
    if (edge := _CRITICAL_EDGES.get(tuple(codes))) is not None:
        code, side = edge
        return Interpretation(
            code,
            False,
            f"may be critically {side}: {value_phrase} and {limit_phrase}",
            possibly_critical=True,
        )
    return Interpretation(
        _IND,
        False,
        f"cannot be decided: {value_phrase} and {limit_phrase}",
        possibly_critical=_LL in codes or _HH in codes,
    )


def is_critical(code: InterpretationCode | None) -> bool:
    return code in (_LL, _HH)


def describe_value(value: ResultValue) -> str:
    """The value as reported, e.g. ``<0.5`` or ``1.2``."""
    prefix = value.comparator.value if value.comparator is not None else ""
    return f"the value {prefix}{_fmt(value.value)}"


def _regions(limits: RangeLimits) -> dict[InterpretationCode, _Interval | None]:
    """Each category's interval; missing limits leave that side unbounded."""
    low, high = limits.low, limits.high
    critical_low, critical_high = limits.critical_low, limits.critical_high
    normal_low, normal_low_closed = (low, True) if low is not None else (critical_low, True)
    normal_high, normal_high_closed = (high, True) if high is not None else (critical_high, True)
    return {
        _LL: _Interval(None, False, critical_low, False) if critical_low is not None else None,
        _L: _Interval(critical_low, True, low, False) if low is not None else None,
        _N: _Interval(normal_low, normal_low_closed, normal_high, normal_high_closed),
        _H: _Interval(high, False, critical_high, True) if high is not None else None,
        _HH: _Interval(critical_high, False, None, False) if critical_high is not None else None,
    }


def _value_phrase(value: ResultValue) -> str:
    number = _fmt(value.value)
    match value.comparator:
        case Comparator.LT:
            return f"the value is below {number}"
        case Comparator.LE:
            return f"the value is at most {number}"
        case Comparator.GT:
            return f"the value is above {number}"
        case Comparator.GE:
            return f"the value is at least {number}"
        case None:
            return f"the value is {number}"


def _limits_inside(possible: _Interval, limits: RangeLimits) -> str:
    """Name the limits that fall within the possible values: the ones that could not be decided."""
    named = (
        ("the critical lower limit", limits.critical_low),
        ("the lower limit", limits.low),
        ("the upper limit", limits.high),
        ("the critical upper limit", limits.critical_high),
    )
    phrases = [
        f"{name} is {_fmt(limit)}"
        for name, limit in named
        if limit is not None and possible.intersects(_Interval(limit, True, limit, True))
    ]
    if not phrases:
        # Only reachable with limits out of order (a RangeLimits not built from a validated row).
        phrases = [f"{name} is {_fmt(limit)}" for name, limit in named if limit is not None]
    return " and ".join(phrases)


def _fmt(number: Decimal | None) -> str:
    if number is None:
        return "unbounded"
    if number == number.to_integral_value():
        return format(number.quantize(Decimal(1)), "f")
    return format(number.normalize(), "f")


# Lab flags as sent in HL7 v2 OBX-8 or FHIR Observation.interpretation, reduced to a direction.
_LAB_LOW = frozenset(
    {
        "L",
        "LL",
        "LU",
        "LX",
        "<",
        "<<",
        "LOW",
        "CRITICAL LOW",
        "LOW CRITICAL",
        "PANIC LOW",
        "CRITICALLY LOW",
        "BELOW LOW NORMAL",
        "BELOW LOWER LIMIT",
    }
)
_LAB_HIGH = frozenset(
    {
        "H",
        "HH",
        "HU",
        "HX",
        ">",
        ">>",
        "HIGH",
        "CRITICAL HIGH",
        "HIGH CRITICAL",
        "PANIC HIGH",
        "CRITICALLY HIGH",
        "ABOVE HIGH NORMAL",
        "ABOVE UPPER LIMIT",
    }
)
# Flags that say critical (panic) whatever the direction: HL7 table 0078 LL, HH, AA, LU, HU,
# <, > (below / above absolute low / high, "off scale"), and the words labs print.
_LAB_CRITICAL = frozenset(
    {
        "LL",
        "HH",
        "AA",
        "LU",
        "HU",
        "<",
        ">",
        "<<",
        ">>",
        "CRITICAL",
        "CRIT",
        "PANIC",
        "CRITICAL LOW",
        "LOW CRITICAL",
        "PANIC LOW",
        "CRITICALLY LOW",
        "CRITICAL HIGH",
        "HIGH CRITICAL",
        "PANIC HIGH",
        "CRITICALLY HIGH",
    }
)
_LAB_NORMAL = frozenset({"N", "NORMAL", "NORM", "WNL", "WITHIN NORMAL LIMITS", "WITHIN RANGE"})
_LAB_ABNORMAL = frozenset({"A", "AA", "ABN", "ABNORMAL", "CRITICAL", "CRIT", "PANIC"})


def _canonical_flag(lab_flag: str) -> str:
    flag = " ".join(lab_flag.replace("_", " ").replace("-", " ").split()).upper()
    return flag.strip("*!() ")


def lab_flag_is_critical(lab_flag: str | None) -> bool:
    """True when the lab's own flag says critical (``LL``, ``HH``, ``AA``, ``PANIC HIGH``...)."""
    return lab_flag is not None and _canonical_flag(lab_flag) in _LAB_CRITICAL


def normalize_lab_flag(lab_flag: str | None) -> str | None:
    """``low``, ``high``, ``normal``, ``abnormal`` (no direction), or None (missing/unknown)."""
    if lab_flag is None:
        return None
    flag = _canonical_flag(lab_flag)
    if not flag:
        return None
    if flag in _LAB_LOW:
        return "low"
    if flag in _LAB_HIGH:
        return "high"
    if flag in _LAB_NORMAL:
        return "normal"
    if flag in _LAB_ABNORMAL:
        return "abnormal"
    return None


def compare_lab_flag(ours: InterpretationCode | None, lab_flag: str | None) -> str | None:
    """A sentence when the lab's flag and ours clearly disagree; None when they agree or either
    side is missing or undecidable.

    Only the direction is compared (the lab's ``LL`` agrees with our ``L``): criticality follows
    our own limits, which the reader sees beside the lab's.
    """
    theirs = normalize_lab_flag(lab_flag)
    mine = _our_direction(ours)
    if theirs is None or mine is None or ours is None or lab_flag is None:
        return None
    if theirs == mine or (theirs == "abnormal" and mine != "normal"):
        return None
    return (
        f"the lab flagged this result {theirs} ({lab_flag.strip()}) but it is "
        f"{mine} ({ours.value}) against the applied reference range"
    )


def _our_direction(code: InterpretationCode | None) -> str | None:
    if code in (_L, _LL):
        return "low"
    if code in (_H, _HH):
        return "high"
    if code == _N:
        return "normal"
    return None
