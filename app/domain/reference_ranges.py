"""Choosing the reference-range row that applies to one result.

A row matches a result when the analyte is the same, the specimen is compatible, the sex fits and
the patient's age on the collection date lies inside the row's half-open age band. Among matching
rows the most specific wins: exact specimen over interchangeable specimen over "any specimen",
then sex-specific over sex-independent, then the band nested inside the others. Anything left
tied is a data error: a range set must never silently pick one of two equally good rows.

A compiled range set keeps one ``AnalyteRanges`` per analyte: what selection needs that does not
depend on the patient (the rows that can apply in a specimen, their age bands in whole months,
the most cautious critical limits) is worked out once per set, not once per result.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from app.domain.range_errors import AmbiguousRangeError
from app.domain.types import PatientFacts, RangeLimits, RangeRow, Sex

# Serum and plasma give the same concentrations for these minerals, so a range published for one
# is applied to the other; cellular specimens (RBC, whole blood) are different measurements.
_INTERCHANGEABLE_SPECIMENS: dict[str, str] = {"serum": "serum-plasma", "plasma": "serum-plasma"}

_SEX_INDEPENDENT_ONLY = (Sex.OTHER, Sex.UNKNOWN)


@dataclass(frozen=True, slots=True)
class RangeSelection:
    """The row chosen for a result (None when none applies) and a note for the reader."""

    row: RangeRow | None
    note: str | None


@dataclass(frozen=True, slots=True)
class RangeConflict:
    """Two rows (by index in the validated sequence) that are equally specific and overlap."""

    first_index: int
    second_index: int
    message: str


def months_of(years: Decimal) -> int:
    """An age in years as whole months, a fractional month rounded half up (0.5 y: 6)."""
    return int((years * 12).to_integral_value(rounding=ROUND_HALF_UP))


def add_years(start: date, years: Decimal) -> date:
    """``start`` plus ``years``; a fractional part counts as whole months (rounded half up).

    A day that does not exist in the target month is clamped to its last day, so a Feb 29
    birthday reaches an age on Feb 28 in common years.
    """
    month_index = start.month - 1 + months_of(years)
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def completed_months(birth_date: date, on_date: date) -> int:
    """The largest whole number of months ``m`` with ``add_years(birth_date, m / 12) <=
    on_date`` (negative before the birth date). ``add_years`` grows with the months added, so
    ``birth + years <= on_date`` exactly when ``months_of(years) <= completed_months``: an age
    band is checked with two integer comparisons."""
    months = (on_date.year - birth_date.year) * 12 + on_date.month - birth_date.month
    # That many months after the birth date is in on_date's month, on the birth day clamped
    # to the month's last day: past on_date only when both lie after on_date's day.
    if birth_date.day > on_date.day and calendar.monthrange(on_date.year, on_date.month)[1] > (
        on_date.day
    ):
        months -= 1
    return months


def age_band_contains(row: RangeRow, *, birth_date: date, on_date: date) -> bool:
    """True when ``birth + min <= on_date < birth + max`` (each side unbounded when None)."""
    return _Band.of(row).holds(completed_months(birth_date, on_date))


@dataclass(frozen=True, slots=True)
class _Band:
    """A row's half-open age band ``[min, max)`` in whole months (None: unbounded)."""

    min_months: int | None
    max_months: int | None

    @classmethod
    def of(cls, row: RangeRow) -> _Band:
        low, high = row.age_min_years, row.age_max_years
        return cls(
            None if low is None else months_of(low), None if high is None else months_of(high)
        )

    def holds(self, age_months: int) -> bool:
        return (self.min_months is None or self.min_months <= age_months) and (
            self.max_months is None or age_months < self.max_months
        )


def specimen_rank(row_specimen: str | None, specimen: str) -> int | None:
    """2 exact, 1 interchangeable (serum/plasma), 0 for an any-specimen row, None: no match."""
    if row_specimen is None:
        return 0
    if row_specimen == specimen:
        return 2
    group = _INTERCHANGEABLE_SPECIMENS.get(row_specimen)
    if group is not None and group == _INTERCHANGEABLE_SPECIMENS.get(specimen):
        return 1
    return None


def select_range(
    rows: Sequence[RangeRow], *, analyte: str, specimen: str, patient: PatientFacts
) -> RangeSelection:
    """Pick the most specific row for ``analyte`` in ``specimen`` for this patient.

    Raises ``AmbiguousRangeError`` when two equally specific rows both match.
    """
    return AnalyteRanges(rows, analyte).select(specimen, patient)


def validate_rows(rows: Sequence[RangeRow]) -> list[RangeConflict]:
    """Every pair of rows that could both match one result with equal specificity.

    Two rows tie when they share analyte, specimen (or both have none) and sex (or both have
    none), and their age bands overlap without one being nested inside the other. An empty list
    means the set is unambiguous.
    """
    conflicts: list[RangeConflict] = []
    for i, first in enumerate(rows):
        for j in range(i + 1, len(rows)):
            second = rows[j]
            if (
                first.analyte != second.analyte
                or first.specimen != second.specimen
                or first.sex != second.sex
            ):
                continue
            if _bands_overlap(first, second) and not (
                _strictly_inside(first, second) or _strictly_inside(second, first)
            ):
                conflicts.append(
                    RangeConflict(
                        first_index=i,
                        second_index=j,
                        message=(
                            f"rows {i} and {j} are equally specific and overlap: "
                            f"{describe_row(first)}; {describe_row(second)}"
                        ),
                    )
                )
    return conflicts


def describe_row(row: RangeRow) -> str:
    """A short human description of the row's scope, used in error messages."""
    specimen = row.specimen or "any specimen"
    sex = row.sex.value if row.sex is not None else "any sex"
    return f"{row.analyte} in {specimen}, {sex}, age {_describe_band(row)}"


def _age_unbounded(row: RangeRow) -> bool:
    return (row.age_min_years is None or row.age_min_years == 0) and row.age_max_years is None


def _lower(row: RangeRow) -> Decimal:
    return row.age_min_years if row.age_min_years is not None else Decimal(0)


def _upper(row: RangeRow) -> Decimal:
    return row.age_max_years if row.age_max_years is not None else Decimal("Infinity")


def _bands_overlap(first: RangeRow, second: RangeRow) -> bool:
    return _lower(first) < _upper(second) and _lower(second) < _upper(first)


def _strictly_inside(inner: RangeRow, outer: RangeRow) -> bool:
    inside = _lower(outer) <= _lower(inner) and _upper(inner) <= _upper(outer)
    same = _lower(outer) == _lower(inner) and _upper(inner) == _upper(outer)
    return inside and not same


def _narrowest(rows: list[RangeRow]) -> RangeRow | None:
    """The row whose band lies strictly inside every other's, or None when there is a tie."""
    for row in rows:
        if all(other is row or _strictly_inside(row, other) for other in rows):
            return row
    return None


def _describe_band(row: RangeRow) -> str:
    if _age_unbounded(row):
        return "any"
    low = _fmt(_lower(row))
    if row.age_max_years is None:
        return f"{low} y and older"
    return f"[{low}, {_fmt(row.age_max_years)}) y"


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _whole_years(birth_date: date, on_date: date) -> int:
    years = on_date.year - birth_date.year
    if add_years(birth_date, Decimal(years)) > on_date:
        years -= 1
    return years


def _describe_patient(patient: PatientFacts) -> str:
    if patient.sex in (Sex.FEMALE, Sex.MALE):
        who = f"a {patient.sex.value}"
    elif patient.sex == Sex.UNKNOWN:
        who = "a patient of unknown sex"
    else:
        who = f"a patient of sex '{patient.sex.value}'"
    if patient.birth_date is None:
        return f"{who} of unknown age"
    if patient.on_date < patient.birth_date:
        return f"{who} with a birth date after the collection date"
    years = _whole_years(patient.birth_date, patient.on_date)
    if years >= 1:
        return f"{who} aged {years}"
    months = (patient.on_date.year - patient.birth_date.year) * 12 + (
        patient.on_date.month - patient.birth_date.month
    )
    if patient.on_date.day < patient.birth_date.day:
        months -= 1
    return f"{who} aged {max(months, 0)} months"


def _no_match_note(
    analyte_rows: list[RangeRow], analyte: str, specimen: str, patient: PatientFacts
) -> str:
    note = f"no reference range for {analyte} in {specimen} for {_describe_patient(patient)}"
    if not analyte_rows:
        return f"{note}: the range set has no rows for {analyte}"
    specimen_rows = [
        row for row in analyte_rows if specimen_rank(row.specimen, specimen) is not None
    ]
    if not specimen_rows:
        known = sorted({row.specimen or "any" for row in analyte_rows})
        return f"{note}: ranges exist only for {', '.join(known)}"
    if patient.sex in _SEX_INDEPENDENT_ONLY and all(row.sex is not None for row in specimen_rows):
        return f"{note}: only sex-specific ranges exist and no sex-independent range is configured"
    if patient.birth_date is None:
        return f"{note}: the ranges are age-banded and the patient has no birth date"
    return f"{note}: no configured age band covers the patient"


@dataclass(frozen=True, slots=True)
class AppliedRange:
    """What one result is checked against: a reference row (or none) and critical limits.

    ``reference`` is the row whose low/high give L/N/H; None means no reference range applies
    (``note`` says why) and only critical and absolute limits are used. ``limits`` always holds
    the critical and absolute limits that apply, so a critical value is caught whatever is
    missing about the patient. ``row`` is the row recorded as applied (the reference row, or a
    row built for caution; None when the set has no row for the analyte in this specimen).
    """

    row: RangeRow | None
    limits: RangeLimits
    reference_applied: bool
    note: str | None


def applicable_range(
    rows: Sequence[RangeRow], *, analyte: str, specimen: str, patient: PatientFacts
) -> AppliedRange:
    """The reference row and critical limits for one result, choosing caution where unsure.

    - The most specific matching row applies (``select_range``).
    - Sex ``other`` / ``unknown`` where sex-specific rows cover the patient's age: a row is
      built from all rows of that age (sex-specific and sex-independent), normal only inside
      every one of their reference intervals and critical beyond any of their critical limits,
      so a value abnormal for either sex is flagged.
    - No row covers the patient (no birth date, an age no band covers): no reference range, but
      the most cautious critical limits of every row for the analyte in this specimen still
      apply (highest critical low, lowest critical high), as do the widest absolute limits.
    - A row without critical limits borrows them the same way.
    """
    return AnalyteRanges(rows, analyte).applicable(specimen, patient)


# Bounds each memo of applied ranges (keyed by rows and notes of the set, or by sex and age in
# months: a few thousand at most); past it ranges are still worked out, just not kept.
_MEMO_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A row that can apply in the specimen, with what selection compares of it."""

    position: int  # among the analyte's rows
    row: RangeRow
    rank: tuple[int, int]  # specimen rank, then 1 for a sex-specific row
    band: _Band
    age_unbounded: bool


class _SpecimenRows:
    """An analyte's rows that can apply in one specimen, their most cautious limits, and the
    ranges applied so far per patient sex and age (those never depend on more of a patient)."""

    __slots__ = ("_applied", "by_patient", "candidates", "fallback", "rows", "unmatched")

    def __init__(self, analyte_rows: Sequence[RangeRow], specimen: str) -> None:
        candidates = []
        for position, row in enumerate(analyte_rows):
            rank = specimen_rank(row.specimen, specimen)
            if rank is not None:
                rank_key = (rank, 0 if row.sex is None else 1)
                unbounded = _age_unbounded(row)
                candidates.append(_Candidate(position, row, rank_key, _Band.of(row), unbounded))
        self.candidates = tuple(candidates)
        self.rows = tuple(c.row for c in candidates)
        self.fallback = _cautious_limits(self.rows)
        self._applied: dict[tuple[int, str | None], AppliedRange] = {}
        self.by_patient: dict[tuple[Sex, int | None], AppliedRange] = {}
        # Sex and age in months that no row covers (which rows match depends on nothing
        # else), each with the critical-limits-only ranges applied so far by how the note
        # describes the patient (it words the age from the dates: not always the same months).
        self.unmatched: dict[tuple[Sex, int | None], dict[str, AppliedRange]] = {}

    def applied(self, candidate: _Candidate, note: str | None) -> AppliedRange:
        """``_with_critical_fallback`` of a row of the set, once per row and note."""
        key = (candidate.position, note)
        found = self._applied.get(key)
        if found is None:
            found = _with_critical_fallback(candidate.row, self.fallback, note)
            if len(self._applied) < _MEMO_LIMIT:
                self._applied[key] = found
        return found


class AnalyteRanges:
    """One analyte's rows of a range set, prepared for selection: per specimen the rows that
    can apply, their age bands in months and the most cautious critical limits, worked out on
    first use and kept (a compiled range set holds one per analyte, ``ranges_for``)."""

    __slots__ = ("_by_specimen", "_sex_specific", "analyte", "rows")

    def __init__(self, rows: Iterable[RangeRow], analyte: str) -> None:
        self.analyte = analyte
        self.rows = tuple(row for row in rows if row.analyte == analyte)
        self._sex_specific = any(row.sex is not None for row in self.rows)
        self._by_specimen: dict[str, _SpecimenRows] = {}

    def select(self, specimen: str, patient: PatientFacts) -> RangeSelection:
        """``select_range`` over these rows."""
        candidate, note = self._select(self._in(specimen), specimen, patient, _age_of(patient))
        return RangeSelection(row=candidate.row if candidate else None, note=note)

    def applicable(self, specimen: str, patient: PatientFacts) -> AppliedRange:
        """``applicable_range`` over these rows."""
        rows = self._in(specimen)
        age = _age_of(patient)
        # A row that applies depends on the patient's sex and age in months only (its note
        # too), so it is kept per both; "no row covers the patient" describes the patient.
        key = (patient.sex, age)
        applied = rows.by_patient.get(key)
        if applied is not None:
            return applied
        unmatched = rows.unmatched.get(key)
        if unmatched is not None:
            applied = unmatched.get(_describe_patient(patient))
            if applied is not None:
                return applied
        if patient.sex in _SEX_INDEPENDENT_ONLY:
            composite = _either_sex_row(rows.candidates, age)
            if composite is not None:
                applied = _with_critical_fallback(
                    composite,
                    rows.fallback,
                    f"sex '{patient.sex.value}': checked against every sex's range (normal "
                    "only inside all of them, the cautious choice)",
                )
        if applied is None:
            candidate, note = self._select(rows, specimen, patient, age)
            if candidate is None:
                applied = self._critical_limits_only(rows, specimen, note)
                if len(rows.unmatched) < _MEMO_LIMIT:
                    described = rows.unmatched.setdefault(key, {})
                    if len(described) < _MEMO_LIMIT:
                        described[_describe_patient(patient)] = applied
                return applied
            applied = rows.applied(candidate, note)
        if len(rows.by_patient) < _MEMO_LIMIT:
            rows.by_patient[key] = applied
        return applied

    def _critical_limits_only(
        self, rows: _SpecimenRows, specimen: str, reason: str | None
    ) -> AppliedRange:
        """No row covers the patient (``reason`` says why): the cautious critical limits."""
        reason = reason or f"no reference range for {self.analyte} in {specimen}"
        if rows.fallback is None:
            return AppliedRange(
                row=None,
                limits=RangeLimits(),
                reference_applied=False,
                note=f"no-reference-range: {reason}",
            )
        limits, scope = rows.fallback
        critical_text = _describe_critical(limits)
        note = f"no-reference-range: {reason}"
        if critical_text:
            note += (
                f"; critical limits still applied ({critical_text}, the most cautious of {scope})"
            )
        return AppliedRange(row=None, limits=limits, reference_applied=False, note=note)

    def _in(self, specimen: str) -> _SpecimenRows:
        found = self._by_specimen.get(specimen)
        if found is None:
            found = self._by_specimen[specimen] = _SpecimenRows(self.rows, specimen)
        return found

    def _select(
        self, rows: _SpecimenRows, specimen: str, patient: PatientFacts, age: int | None
    ) -> tuple[_Candidate | None, str | None]:
        """The most specific candidate and the note for the reader (the reason when none)."""
        sex = patient.sex
        matching = [
            c
            for c in rows.candidates
            if (c.row.sex is None or c.row.sex == sex)
            and (c.age_unbounded if age is None else c.band.holds(age))
        ]
        if not matching:
            return None, _no_match_note(list(self.rows), self.analyte, specimen, patient)
        best_rank = max(c.rank for c in matching)
        best = [c for c in matching if c.rank == best_rank]
        if len(best) == 1:
            chosen = best[0]
        else:
            row = _narrowest([c.row for c in best])
            if row is None:
                raise AmbiguousRangeError(
                    f"{len(best)} equally specific reference ranges match {self.analyte} in "
                    f"{specimen} for {_describe_patient(patient)}: "
                    f"{'; '.join(describe_row(c.row) for c in best)}",
                    [c.row for c in best],
                )
            chosen = next(c for c in best if c.row is row)
        note = None
        if sex in _SEX_INDEPENDENT_ONLY and chosen.row.sex is None and self._sex_specific:
            note = f"sex '{sex.value}': the sex-independent range was applied"
        return chosen, note


def _age_of(patient: PatientFacts) -> int | None:
    """The patient's age in completed months on the collection date; None: no birth date."""
    if patient.birth_date is None:
        return None
    return completed_months(patient.birth_date, patient.on_date)


def _with_critical_fallback(
    row: RangeRow, fallback: tuple[RangeLimits, str] | None, note: str | None
) -> AppliedRange:
    limits = row.limits
    notes = [note] if note else []
    if fallback is not None and (limits.critical_low is None or limits.critical_high is None):
        cautious, scope = fallback
        borrowed = RangeLimits(
            low=limits.low,
            high=limits.high,
            critical_low=_first(limits.critical_low, cautious.critical_low),
            critical_high=_first(limits.critical_high, cautious.critical_high),
            absolute_low=limits.absolute_low,
            absolute_high=limits.absolute_high,
        )
        if _ordered(borrowed) and borrowed != limits:
            limits = borrowed
            notes.append(
                "the applied range has no critical limit on one side; "
                f"{_describe_critical(borrowed)} applied (the most cautious of {scope})"
            )
    return AppliedRange(
        row=row, limits=limits, reference_applied=True, note="; ".join(notes) or None
    )


def _first(value: Decimal | None, other: Decimal | None) -> Decimal | None:
    return value if value is not None else other


def _ordered(limits: RangeLimits) -> bool:
    present = [
        value
        for value in (
            limits.absolute_low,
            limits.critical_low,
            limits.low,
            limits.high,
            limits.critical_high,
            limits.absolute_high,
        )
        if value is not None
    ]
    return all(a <= b for a, b in zip(present, present[1:], strict=False))


def _cautious_limits(rows: Sequence[RangeRow]) -> tuple[RangeLimits, str] | None:
    """Highest critical low and lowest critical high (catch the most), widest absolute limits
    (refuse the least) over ``rows``; None when there are no rows."""
    if not rows:
        return None
    critical_lows = [r.limits.critical_low for r in rows if r.limits.critical_low is not None]
    critical_highs = [r.limits.critical_high for r in rows if r.limits.critical_high is not None]
    absolute_lows = [r.limits.absolute_low for r in rows]
    absolute_highs = [r.limits.absolute_high for r in rows]
    limits = RangeLimits(
        critical_low=max(critical_lows) if critical_lows else None,
        critical_high=min(critical_highs) if critical_highs else None,
        absolute_low=None
        if None in absolute_lows
        else min(a for a in absolute_lows if a is not None),
        absolute_high=None
        if None in absolute_highs
        else max(a for a in absolute_highs if a is not None),
    )
    if not _ordered(limits):
        # Critical limits that cross (one band's critical low above another's critical high)
        # cannot be combined; keep each side only where it is consistent with the other.
        limits = RangeLimits(
            critical_low=limits.critical_low,
            critical_high=None,
            absolute_low=limits.absolute_low,
            absolute_high=limits.absolute_high,
        )
    scope = f"{len(rows)} row(s) for {rows[0].analyte}"
    return limits, scope


def _either_sex_row(candidates: Sequence[_Candidate], age: int | None) -> RangeRow | None:
    """For sex other/unknown: one row that is normal only inside every reference interval of
    the patient's age and specimen (each sex's and a sex-independent one, often their union);
    None when no sex-specific row covers the patient (or the patient has no birth date)."""
    if age is None:
        return None
    matching = [c.row for c in candidates if c.band.holds(age)]
    if not any(row.sex is not None for row in matching):
        return None
    best = max(_own_specimen_rank(row) for row in matching)
    matching = [row for row in matching if _own_specimen_rank(row) == best]
    limits = _inside_every(matching)
    if not _ordered(limits):
        return None
    first = matching[0]
    return RangeRow(
        analyte=first.analyte,
        unit=first.unit,
        limits=limits,
        specimen=first.specimen,
        sex=None,
        age_min_years=max(_lower(r) for r in matching),
        age_max_years=min(
            (r.age_max_years for r in matching if r.age_max_years is not None), default=None
        ),
        source="; ".join(sorted({r.source for r in matching})),
        row_id="+".join(r.row_id or "?" for r in matching),
    )


def _own_specimen_rank(row: RangeRow) -> int:
    return specimen_rank(row.specimen, row.specimen or "") or 0


def _highest(values: Iterable[Decimal | None]) -> Decimal | None:
    return max((v for v in values if v is not None), default=None)


def _lowest(values: Iterable[Decimal | None]) -> Decimal | None:
    return min((v for v in values if v is not None), default=None)


def _inside_every(rows: Sequence[RangeRow]) -> RangeLimits:
    """The limits that hold inside every row's: the narrowest reference and critical limits,
    the widest absolute ones (a value possible for one sex is possible)."""
    limits = [r.limits for r in rows]
    return RangeLimits(
        low=_highest(x.low for x in limits),
        high=_lowest(x.high for x in limits),
        critical_low=_highest(x.critical_low for x in limits),
        critical_high=_lowest(x.critical_high for x in limits),
        absolute_low=_lowest(x.absolute_low for x in limits),
        absolute_high=_highest(x.absolute_high for x in limits),
    )


def _describe_critical(limits: RangeLimits) -> str:
    parts = []
    if limits.critical_low is not None:
        parts.append(f"critical below {_fmt(limits.critical_low)}")
    if limits.critical_high is not None:
        parts.append(f"critical above {_fmt(limits.critical_high)}")
    return " and ".join(parts)
