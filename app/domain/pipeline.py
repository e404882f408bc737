"""A panel's clinical path, top to bottom: from the results a lab sent to interpreted results
with their ratios and criticals. Pure (no I/O, no FastAPI, no SQLAlchemy): ingestion,
re-interpretation and every correction channel (JSON, FHIR, HL7 v2) run exactly this code.

Two stages, because a correction merges the re-sent results into the stored ones in between:
1. ``normalize_results`` (sent → comparable values): resolve the analyte, refuse a repeat or a
   specimen it is not measured in, normalize the unit, parse the value, refuse what cannot be
   stored digit for digit, convert to the canonical unit, parse the lab's own range.
2. ``interpret_panel`` (comparable values → verdicts): per result select the reference row,
   check the absolute bounds, interpret, weigh the lab's own flag; withdrawn results made
   harmless; then the ratios and the panel's critical summary.
Each stage collects every problem before it refuses, so a sender fixes a panel in one round;
the service layer turns the refusal into a problem+json 422.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol

from app.domain.catalog import Analyte, Catalog
from app.domain.errors import DomainError
from app.domain.frozen import slot_init
from app.domain.interpretation import (
    check_absolute,
    compare_lab_flag,
    interpret,
    lab_flag_is_critical,
)
from app.domain.range_errors import ImpossibleValueError
from app.domain.range_text import parse_range_text
from app.domain.ratios import RatioDefinition, ratio_documents
from app.domain.reference_ranges import AnalyteRanges, AppliedRange
from app.domain.result_status import is_withdrawn, withdrawn_note
from app.domain.types import InterpretationCode, PatientFacts, RangeLimits, RangeRow, ResultValue
from app.domain.units import conversion_factor, scaled
from app.domain.values import parse_result_value

# Stored as NUMERIC(24, 8): refuse what cannot be kept digit for digit.
MAX_DECIMAL_PLACES = 8
MAX_VALUE = Decimal("1e12")


class SentRange(Protocol):
    """The lab's own printed range as sent (``app.panels.schemas.LabRangeIn``)."""

    text: str | None
    low: Decimal | None
    high: Decimal | None


class SentResult(Protocol):
    """One result as sent (``app.panels.schemas.ResultIn``)."""

    analyte: str
    value: str | int | float
    unit: str
    flag: str | None
    lab_comment: str | None

    @property  # read-only, so that the schema's own range model matches
    def reference_range(self) -> SentRange | None: ...


class RangeSetView(Protocol):
    """What interpretation reads of a compiled range set (``app.ranges.compiled``): rows
    already in the canonical unit, so nothing is converted per result."""

    @property
    def ratios(self) -> tuple[RatioDefinition, ...]: ...
    @property
    def original_units(self) -> Mapping[str, str]: ...
    def rows_for(self, analyte: str) -> tuple[RangeRow, ...]: ...
    def ranges_for(self, analyte: str) -> AnalyteRanges:
        """``rows_for`` prepared for ``applicable_range`` (kept by the set)."""
        ...

    def reference(self) -> dict[str, Any]: ...


class ResultProblemsError(DomainError):
    """A stage refused the panel; ``problems`` names each result and field at fault."""

    def __init__(self, message: str, problems: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class UnacceptableResultsError(ResultProblemsError):
    code = "invalid-results"


class ImpossibleResultsError(ResultProblemsError):
    code = "implausible-value"


@slot_init
@dataclass(frozen=True, slots=True)
class NormalizedResult:
    position: int
    analyte: Analyte
    code_sent: str
    loinc: str | None
    reported: ResultValue
    unit: str
    canonical: ResultValue
    lab_range_text: str | None
    lab_low: Decimal | None
    lab_high: Decimal | None
    lab_flag: str | None
    # FHIR Observation.status / OBX-11 (app.domain.result_status); withdrawn ones are kept
    # for the record but never current (ratios, criticals, trends, plans).
    status: str = "final"
    lab_comment: str | None = None


@slot_init
@dataclass(frozen=True, slots=True)
class InterpretedResult:
    code: InterpretationCode | None
    # For safety: ours says critical, or the lab's own flag does (``lab_disagreement`` says so).
    critical: bool
    note: str | None
    lab_disagreement: str | None
    reference_range: dict[str, Any] | None
    possibly_critical: bool = False
    # ``no-reference-range``: no reference row applied (``note`` says why); critical limits did.
    status: str = "interpreted"


@slot_init
@dataclass(frozen=True, slots=True)
class InterpretedPanel:
    results: Sequence[NormalizedResult]
    verdicts: Sequence[InterpretedResult]  # one per result, in the same order
    ratios: list[dict[str, Any]]
    has_critical: bool
    has_possible_critical: bool

    def pairs(self) -> Iterator[tuple[NormalizedResult, InterpretedResult]]:
        return zip(self.results, self.verdicts, strict=True)


# --- stage 1: what was sent -> comparable values ------------------------------------------


def normalize_results(
    results: Sequence[SentResult],
    *,
    specimen: str,
    catalog: Catalog,
    status_of: Callable[[int], str] | None = None,
    field: str = "results",
) -> list[NormalizedResult]:
    """Resolve analytes and units, parse values and convert to the canonical unit; each result
    takes ``status_of(position)`` (its own status, else the panel's) when given."""
    problems: list[dict[str, str]] = []
    normalized: list[NormalizedResult] = []
    seen: dict[str, int] = {}
    for position, item in enumerate(results):
        try:
            analyte = _analyte_of(
                item, catalog, position=position, specimen=specimen, seen=seen, field=field
            )
        except DomainError as exc:
            problems.append({"field": f"{field}[{position}].analyte", "message": str(exc)})
            continue
        try:
            unit, reported, canonical = _measured(item, analyte, catalog)
        except DomainError as exc:
            field_name = "unit" if "unit" in type(exc).__name__.lower() else "value"
            problems.append({"field": f"{field}[{position}].{field_name}", "message": str(exc)})
            continue
        lab = _lab_range(item.reference_range)
        # Positional, in field order (position, analyte, code_sent, loinc, reported, unit,
        # canonical, lab_range_text, lab_low, lab_high, lab_flag, status, lab_comment): a
        # frozen dataclass takes keywords at about twice the cost, once per sent result.
        normalized.append(
            NormalizedResult(
                position,
                analyte,
                item.analyte,
                _loinc_of(catalog, analyte.code, unit, specimen, item.analyte),
                reported,
                unit,
                canonical,
                lab.text,
                lab.low,
                lab.high,
                item.flag or None,
                status_of(position) if status_of is not None else "final",
                item.lab_comment or None,
            )
        )
    if problems:
        raise UnacceptableResultsError(
            f"{len(problems)} result problem(s); see 'errors'. Nothing was stored.", problems
        )
    return normalized


# A catalog is immutable and every panel asks it the same few questions (which analyte a sent
# name is, which UCUM code a sent unit is, which LOINC code fits): the answers are kept, keyed
# by the catalog itself (bounded; a refusal is not kept, it is raised again).
@lru_cache(maxsize=4096)
def _resolved(catalog: Catalog, name: str) -> Analyte:
    return catalog.resolve(name)


@lru_cache(maxsize=4096)
def _unit_of(catalog: Catalog, analyte: str, unit: str) -> str:
    return catalog.normalize_unit_for(catalog.get(analyte), unit)


@lru_cache(maxsize=4096)
def _factor_of(catalog: Catalog, analyte: str, unit: str) -> Decimal:
    """The factor from ``unit`` to the analyte's canonical unit (``units.conversion_factor``,
    which refuses a unit the analyte cannot be converted from; a refusal is raised again)."""
    found = catalog.get(analyte)
    return conversion_factor(found, unit, found.canonical_unit)


@lru_cache(maxsize=4096)
def _loinc_of(catalog: Catalog, analyte: str, unit: str, specimen: str, sent: str) -> str | None:
    return catalog.loinc_for(catalog.get(analyte), unit, specimen=specimen, prefer=sent)


class _AnalyteRefusedError(DomainError):
    pass


class _StorageLimitError(DomainError):
    pass


def _analyte_of(
    item: SentResult,
    catalog: Catalog,
    *,
    position: int,
    specimen: str,
    seen: dict[str, int],
    field: str,
) -> Analyte:
    """The catalog's analyte, recorded in ``seen`` (code -> position) once it is not a repeat
    (recorded before the specimen check, so a repeat of a refused one is named a repeat)."""
    analyte = _resolved(catalog, item.analyte)
    if analyte.code in seen:
        raise _AnalyteRefusedError(
            f"{analyte.code} is already reported at {field}[{seen[analyte.code]}]"
        )
    seen[analyte.code] = position
    if analyte.specimens and specimen not in analyte.specimens:
        raise _AnalyteRefusedError(
            f"{analyte.code} is not measured in {specimen} "
            f"(accepted: {', '.join(analyte.specimens)})"
        )
    return analyte


def _measured(
    item: SentResult, analyte: Analyte, catalog: Catalog
) -> tuple[str, ResultValue, ResultValue]:
    """The unit as normalized, the value as reported and the value in the canonical unit."""
    unit = _unit_of(catalog, analyte.code, item.unit)
    reported = parse_result_value(item.value)
    _check_storable(reported.value)
    # units.convert with the pair's factor kept (the same checks, once per catalog and unit).
    canonical = scaled(reported.value, _factor_of(catalog, analyte.code, unit))
    return unit, reported, ResultValue(canonical, reported.comparator)


def _check_storable(value: Decimal) -> None:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        raise _StorageLimitError(
            f"value has more than {MAX_DECIMAL_PLACES} decimal places; send it rounded"
        )
    if value >= MAX_VALUE:
        raise _StorageLimitError("value is too large to be a concentration")


@dataclass(frozen=True, slots=True)
class _LabRange:
    """The lab's range as stored: its limits as sent, else as read from its text."""

    text: str | None = None
    low: Decimal | None = None
    high: Decimal | None = None


_NO_LAB_RANGE = _LabRange()


def _lab_range(lab: SentRange | None) -> _LabRange:
    if lab is None:
        return _NO_LAB_RANGE
    if lab.text and lab.low is None and lab.high is None:
        parsed = parse_range_text(lab.text)
        return _LabRange(lab.text, parsed.low, parsed.high)
    return _LabRange(lab.text, lab.low, lab.high)


# --- stage 2: comparable values -> verdicts, ratios, criticals -----------------------------


def interpret_panel(
    results: Sequence[NormalizedResult],
    *,
    range_set: RangeSetView | None,
    patient: PatientFacts,
    specimen: str,
    refuse_impossible: bool,
    field: str = "results",
) -> InterpretedPanel:
    """Select a range per result and interpret it, in order; then the panel's ratios from its
    current results, and whether any result is critical or possibly critical.

    Critical limits apply to every patient: when no reference row covers the patient (no birth
    date, an age no band covers, sex unknown) the most cautious critical limits of the analyte
    still do (``applicable_range``). A critical flag sent by the lab counts as critical too.

    With ``refuse_impossible`` (ingestion, corrections) a value outside absolute bounds refuses
    the panel; without it (re-interpretation of stored values) the result is kept
    uninterpreted. Withdrawn results (cancelled, entered-in-error) are interpreted for the
    record only: never critical or possibly critical, and an impossible withdrawn value (often
    the reason it was withdrawn) never refuses the panel.
    """
    verdicts: list[InterpretedResult] = []
    impossible: list[dict[str, str]] = []
    for result in results:
        withdrawn = is_withdrawn(result.status)
        try:
            verdict = _verdict(result, range_set, patient=patient, specimen=specimen)
        except ImpossibleValueError as exc:
            if refuse_impossible and not withdrawn:
                impossible.append(
                    {"field": f"{field}[{result.position}].value", "message": str(exc)}
                )
                continue
            verdict = _lab_only(result, f"not interpreted, held for review: {exc}")
        verdicts.append(_harmless(verdict, result.status) if withdrawn else verdict)
    if impossible:
        raise ImpossibleResultsError(
            "A value is outside the physically possible bounds for its analyte; check the "
            "value and unit. Nothing was stored.",
            impossible,
        )
    return InterpretedPanel(
        results=results,
        verdicts=verdicts,
        ratios=panel_ratios(results, range_set),
        has_critical=any(v.critical for v in verdicts),
        has_possible_critical=any(v.possibly_critical for v in verdicts),
    )


def _verdict(
    result: NormalizedResult,
    range_set: RangeSetView | None,
    *,
    patient: PatientFacts,
    specimen: str,
) -> InterpretedResult:
    """Raises ``ImpossibleValueError`` for a value outside the absolute bounds."""
    if range_set is None:
        return _lab_only(result, "no-reference-range: no reference-range set is active")
    # applicable_range over the set's rows of the analyte, prepared once per set.
    applied = range_set.ranges_for(result.analyte.code).applicable(specimen, patient)
    check_absolute(result.canonical, applied.limits)
    return _assess(result, applied, range_set)


def _harmless(verdict: InterpretedResult, status: str) -> InterpretedResult:
    notes = [withdrawn_note(status), verdict.note]
    return replace(
        verdict,
        critical=False,
        possibly_critical=False,
        note="; ".join(n for n in notes if n),
    )


def _assess(
    result: NormalizedResult, applied: AppliedRange, range_set: RangeSetView
) -> InterpretedResult:
    verdict = interpret(result.canonical, applied.limits)
    code: InterpretationCode | None = verdict.code
    if not applied.reference_applied and not verdict.critical:
        # Only critical limits applied: "normal" would claim a reference range we do not have.
        code = InterpretationCode.INDETERMINATE if verdict.possibly_critical else None
    applied_note, own_note = applied.note, verdict.note
    if applied_note and own_note:
        note: str | None = f"{applied_note}; {own_note}"
    else:
        note = applied_note or own_note or None
    # Positional, in field order (code, critical, note, lab_disagreement, reference_range,
    # possibly_critical, status): once per result, and keywords cost a frozen dataclass twice.
    return _with_lab_flag(
        result,
        InterpretedResult(
            code,
            verdict.critical,
            note,
            _lab_disagreement(result, code),
            _snapshot_of(applied, range_set, result.analyte.canonical_unit),
            verdict.possibly_critical,
            "interpreted" if applied.reference_applied else "no-reference-range",
        ),
    )


# Range snapshots by applied range: a set's index keeps its applied ranges (one per row, sex
# and age), so the same few recur and each snapshot is built once. Keyed by identity, each entry
# holding its range and set (so no id is reused while it is kept); bounded by clearing.
_SNAPSHOTS: dict[int, tuple[AppliedRange, RangeSetView, str, dict[str, Any] | None]] = {}
_SNAPSHOTS_LIMIT = 4096


def _snapshot_of(
    applied: AppliedRange, range_set: RangeSetView, unit: str
) -> dict[str, Any] | None:
    """``range_snapshot`` of ``applied``: a new dict each time (each result stores its own)."""
    kept = _SNAPSHOTS.get(id(applied))
    if kept is not None and kept[0] is applied and kept[1] is range_set and kept[2] == unit:
        snapshot = kept[3]
    else:
        snapshot = range_snapshot(applied.row, range_set, limits=applied.limits, unit=unit)
        # Critical limits alone (no row covers the patient) recur too: the set's index keeps
        # those per sex, age and wording of the note (``AnalyteRanges.applicable``).
        if len(_SNAPSHOTS) >= _SNAPSHOTS_LIMIT:
            _SNAPSHOTS.clear()
        _SNAPSHOTS[id(applied)] = (applied, range_set, unit, snapshot)
    if snapshot is None:
        return None
    return {**snapshot, "range_set": dict(snapshot["range_set"])}


def _lab_only(result: NormalizedResult, note: str) -> InterpretedResult:
    """No limits of ours apply: only the lab's own flag can say anything."""
    return _with_lab_flag(
        result,
        InterpretedResult(
            code=None,
            critical=False,
            note=note,
            lab_disagreement=None,
            reference_range=None,
            status="no-reference-range",
        ),
    )


def _with_lab_flag(result: NormalizedResult, verdict: InterpretedResult) -> InterpretedResult:
    """Ours never silently overrides a more alarming lab flag: a critical flag from the lab makes
    the result critical for safety, with both flags shown and the disagreement named."""
    if verdict.critical or not lab_flag_is_critical(result.lab_flag):
        return verdict
    ours = verdict.code.value if verdict.code is not None else "not interpreted"
    sentence = (
        f"the lab flagged this result critical ({(result.lab_flag or '').strip()}) but it is "
        f"{ours} against our limits; treated as critical, the more cautious of the two"
    )
    return replace(verdict, critical=True, lab_disagreement=sentence)


def _lab_disagreement(result: NormalizedResult, ours: InterpretationCode | None) -> str | None:
    if result.lab_flag:
        return compare_lab_flag(ours, result.lab_flag)
    if result.lab_low is None and result.lab_high is None:
        return None
    # No flag sent: derive the lab's verdict from its own range, in the unit it reported.
    implied = interpret(result.reported, RangeLimits(low=result.lab_low, high=result.lab_high))
    disagreement = compare_lab_flag(ours, implied.code.value)
    if disagreement is None:
        return None
    return f"by the lab's own range ({result.lab_range_text or 'structured'}): {disagreement}"


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def range_snapshot(
    row: RangeRow | None,
    range_set: RangeSetView,
    *,
    limits: RangeLimits | None = None,
    unit: str | None = None,
) -> dict[str, Any] | None:
    """What was applied: the row (its own limits, or ``limits`` where critical limits were
    completed for caution) or, with no row, the critical limits alone (``basis``)."""
    if row is None and (limits is None or limits == RangeLimits()):
        return None
    applied = limits if limits is not None else row.limits  # type: ignore[union-attr]
    return {
        "range_set": range_set.reference(),
        **_row_snapshot(row, range_set, unit),
        "low": _text(applied.low),
        "high": _text(applied.high),
        "critical_low": _text(applied.critical_low),
        "critical_high": _text(applied.critical_high),
        "absolute_low": _text(applied.absolute_low),
        "absolute_high": _text(applied.absolute_high),
        "source": row.source
        if row is not None
        else "the most cautious critical limits of the analyte's rows in this range set",
    }


def _row_snapshot(
    row: RangeRow | None, range_set: RangeSetView, unit: str | None
) -> dict[str, Any]:
    if row is None:
        return {
            "basis": "critical-limits-only",
            "row_id": None,
            "unit": unit,
            "original_unit": None,
            "specimen": None,
            "sex": None,
            "age_min_years": None,
            "age_max_years": None,
        }
    return {
        "basis": "reference",
        "row_id": row.row_id,
        "unit": row.unit,
        "original_unit": range_set.original_units.get(row.row_id or ""),
        "specimen": row.specimen,
        "sex": row.sex.value if row.sex is not None else None,
        "age_min_years": _text(row.age_min_years),
        "age_max_years": _text(row.age_max_years),
    }


def panel_ratios(
    results: Sequence[NormalizedResult], range_set: RangeSetView | None
) -> list[dict[str, Any]]:
    """The panel's ratios as stored, from its current results only: a withdrawn (cancelled,
    entered-in-error) value makes no ratio."""
    if range_set is None or not range_set.ratios:
        return []
    values = {r.analyte.code: r.canonical for r in results if not is_withdrawn(r.status)}
    return ratio_documents(values, range_set.ratios)
