"""Turn posted results into normalized, interpreted results: one path for every format.

Pure orchestration of the domain modules (catalog, units, values, range selection,
interpretation, ratios); no I/O, so ingestion and re-interpretation share it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from app.domain.catalog import Analyte, Catalog
from app.domain.errors import DomainError
from app.domain.interpretation import (
    check_absolute,
    compare_lab_flag,
    interpret,
    lab_flag_is_critical,
)
from app.domain.range_errors import ImpossibleValueError
from app.domain.range_text import parse_range_text
from app.domain.ratios import compute_ratios
from app.domain.reference_ranges import AppliedRange, applicable_range
from app.domain.result_status import is_withdrawn
from app.domain.types import (
    Comparator,
    InterpretationCode,
    PatientFacts,
    RangeLimits,
    RangeRow,
    ResultValue,
)
from app.domain.units import convert
from app.domain.values import parse_result_value
from app.errors import UnprocessableError
from app.models.panel import Result as StoredResult
from app.panels.schemas import ResultIn
from app.ranges.compiled import CompiledRangeSet

# Stored as NUMERIC(24, 8): refuse what cannot be kept digit for digit.
MAX_DECIMAL_PLACES = 8
MAX_VALUE = Decimal("1e12")

INTERPRETATION_DISPLAY = {
    "L": "Low",
    "N": "Normal",
    "H": "High",
    "LL": "Critically low",
    "HH": "Critically high",
    "IND": "Indeterminate",
}


class ResultsInvalidError(UnprocessableError):
    type_slug = "invalid-results"
    title = "One or more results cannot be accepted"


class ImpossibleResultError(UnprocessableError):
    type_slug = "implausible-value"
    title = "A value lies outside physically possible bounds"


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


def normalize_results(
    results: Sequence[ResultIn], *, specimen: str, catalog: Catalog, field: str = "results"
) -> list[NormalizedResult]:
    """Resolve analytes and units, parse values and convert to the canonical unit.

    Every problem in every result is collected, so the sender can fix a panel in one round.
    """
    problems: list[dict[str, str]] = []
    normalized: list[NormalizedResult] = []
    seen: dict[str, int] = {}
    for position, item in enumerate(results):
        where = f"{field}[{position}]"
        try:
            analyte = catalog.resolve(item.analyte)
        except DomainError as exc:
            problems.append({"field": f"{where}.analyte", "message": str(exc)})
            continue
        if analyte.code in seen:
            problems.append(
                {
                    "field": f"{where}.analyte",
                    "message": f"{analyte.code} is already reported at "
                    f"{field}[{seen[analyte.code]}]",
                }
            )
            continue
        seen[analyte.code] = position
        if analyte.specimens and specimen not in analyte.specimens:
            problems.append(
                {
                    "field": f"{where}.analyte",
                    "message": f"{analyte.code} is not measured in {specimen} "
                    f"(accepted: {', '.join(analyte.specimens)})",
                }
            )
            continue
        try:
            unit = catalog.normalize_unit_for(analyte, item.unit)
            reported = parse_result_value(item.value)
            _check_storable(reported.value)
            canonical_value = convert(
                reported.value, analyte=analyte, from_unit=unit, to_unit=analyte.canonical_unit
            )
        except DomainError as exc:
            field_name = "unit" if "unit" in type(exc).__name__.lower() else "value"
            problems.append({"field": f"{where}.{field_name}", "message": str(exc)})
            continue
        lab_text, lab_low, lab_high = _lab_range(item)
        normalized.append(
            NormalizedResult(
                position=position,
                analyte=analyte,
                code_sent=item.analyte,
                loinc=catalog.loinc_for(analyte, unit, specimen=specimen, prefer=item.analyte),
                reported=reported,
                unit=unit,
                canonical=ResultValue(
                    value=canonical_value, comparator=reported.comparator, text=None
                ),
                lab_range_text=lab_text,
                lab_low=lab_low,
                lab_high=lab_high,
                lab_flag=item.flag or None,
                lab_comment=item.lab_comment or None,
            )
        )
    if problems:
        raise ResultsInvalidError(
            f"{len(problems)} result problem(s); see 'errors'. Nothing was stored.", errors=problems
        )
    return normalized


class _StorageLimitError(DomainError):
    pass


def _check_storable(value: Decimal) -> None:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        raise _StorageLimitError(
            f"value has more than {MAX_DECIMAL_PLACES} decimal places; send it rounded"
        )
    if value >= MAX_VALUE:
        raise _StorageLimitError("value is too large to be a concentration")


def _lab_range(item: ResultIn) -> tuple[str | None, Decimal | None, Decimal | None]:
    lab = item.reference_range
    if lab is None:
        return None, None, None
    low, high = lab.low, lab.high
    if lab.text and low is None and high is None:
        parsed = parse_range_text(lab.text)
        low, high = parsed.low, parsed.high
    return lab.text, low, high


def interpret_results(
    results: Sequence[NormalizedResult],
    *,
    range_set: CompiledRangeSet | None,
    patient: PatientFacts,
    specimen: str,
    refuse_impossible: bool,
    field: str = "results",
) -> list[InterpretedResult]:
    """Select a range per result and interpret it.

    Critical limits apply to every patient: when no reference row covers the patient (no birth
    date, an age no band covers, sex unknown) the most cautious critical limits of the analyte
    still do (``applicable_range``). A critical flag sent by the lab counts as critical too.

    With ``refuse_impossible`` (ingestion) a value outside absolute bounds refuses the panel;
    without it (re-interpretation of stored values) the result is kept uninterpreted.
    """
    out: list[InterpretedResult] = []
    impossible: list[dict[str, str]] = []
    for result in results:
        if range_set is None:
            out.append(_lab_only(result, "no-reference-range: no reference-range set is active"))
            continue
        applied = applicable_range(
            range_set.rows_for(result.analyte.code),
            analyte=result.analyte.code,
            specimen=specimen,
            patient=patient,
        )
        try:
            check_absolute(result.canonical, applied.limits)
        except ImpossibleValueError as exc:
            if refuse_impossible:
                impossible.append(
                    {"field": f"{field}[{result.position}].value", "message": str(exc)}
                )
                continue
            out.append(_lab_only(result, f"not interpreted, held for review: {exc}"))
            continue
        out.append(_assess(result, applied, range_set))
    if impossible:
        raise ImpossibleResultError(
            "A value is outside the physically possible bounds for its analyte; check the "
            "value and unit. Nothing was stored.",
            errors=impossible,
        )
    return out


def _assess(
    result: NormalizedResult, applied: AppliedRange, range_set: CompiledRangeSet
) -> InterpretedResult:
    verdict = interpret(result.canonical, applied.limits)
    code: InterpretationCode | None = verdict.code
    if not applied.reference_applied and not verdict.critical:
        # Only critical limits applied: "normal" would claim a reference range we do not have.
        code = InterpretationCode.INDETERMINATE if verdict.possibly_critical else None
    notes = [n for n in (applied.note, verdict.note) if n]
    return _with_lab_flag(
        result,
        InterpretedResult(
            code=code,
            critical=verdict.critical,
            note="; ".join(notes) or None,
            lab_disagreement=_lab_disagreement(result, code),
            reference_range=range_snapshot(
                applied.row,
                range_set,
                limits=applied.limits,
                unit=result.analyte.canonical_unit,
            ),
            possibly_critical=verdict.possibly_critical,
            status="interpreted" if applied.reference_applied else "no-reference-range",
        ),
    )


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


def range_snapshot(
    row: RangeRow | None,
    range_set: CompiledRangeSet,
    *,
    limits: RangeLimits | None = None,
    unit: str | None = None,
) -> dict[str, Any] | None:
    """What was applied: the row (its own limits, or ``limits`` where critical limits were
    completed for caution) or, with no row, the critical limits alone (``basis``)."""
    if row is None and (limits is None or limits == RangeLimits()):
        return None
    applied = limits if limits is not None else row.limits  # type: ignore[union-attr]

    def s(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "range_set": range_set.reference(),
        "basis": "reference" if row is not None else "critical-limits-only",
        "row_id": row.row_id if row is not None else None,
        "unit": row.unit if row is not None else unit,
        "original_unit": range_set.original_units.get(row.row_id or "") if row else None,
        "specimen": row.specimen if row is not None else None,
        "sex": row.sex.value if row is not None and row.sex is not None else None,
        "age_min_years": s(row.age_min_years) if row is not None else None,
        "age_max_years": s(row.age_max_years) if row is not None else None,
        "low": s(applied.low),
        "high": s(applied.high),
        "critical_low": s(applied.critical_low),
        "critical_high": s(applied.critical_high),
        "absolute_low": s(applied.absolute_low),
        "absolute_high": s(applied.absolute_high),
        "source": row.source
        if row is not None
        else "the most cautious critical limits of the analyte's rows in this range set",
    }


def panel_ratios(
    results: Sequence[NormalizedResult], range_set: CompiledRangeSet | None
) -> list[dict[str, Any]]:
    if range_set is None or not range_set.ratios:
        return []
    # Only current results: a withdrawn (cancelled, entered-in-error) value makes no ratio.
    values = {r.analyte.code: r.canonical for r in results if not is_withdrawn(r.status)}
    out: list[dict[str, Any]] = []
    for ratio in compute_ratios(values, range_set.ratios):
        if ratio.value is None and ratio.note is None:
            continue
        out.append(
            {
                "code": ratio.code,
                "display": ratio.display,
                "value": None if ratio.value is None else str(ratio.value),
                "interpretation": ratio.interpretation.value if ratio.interpretation else None,
                "low": None if ratio.low is None else str(ratio.low),
                "high": None if ratio.high is None else str(ratio.high),
                "note": ratio.note,
                "source": next((d.source for d in range_set.ratios if d.code == ratio.code), None),
            }
        )
    return out


def comparator_of(value: ResultValue) -> str | None:
    return value.comparator.value if isinstance(value.comparator, Comparator) else None


def result_content(result: NormalizedResult, verdict: InterpretedResult) -> dict[str, Any]:
    """The columns of a stored result that come from the value and its interpretation (every
    writer of results uses this, so ingestion and corrections store them identically)."""
    return {
        "analyte": result.analyte.code,
        "loinc": result.loinc,
        "code_sent": result.code_sent,
        "value_text": result.reported.text or str(result.reported.value),
        "comparator": comparator_of(result.reported),
        "value": result.reported.value,
        "unit": result.unit,
        "canonical_value": result.canonical.value,
        "canonical_unit": result.analyte.canonical_unit,
        "lab_range_text": result.lab_range_text,
        "lab_range_low": result.lab_low,
        "lab_range_high": result.lab_high,
        "lab_flag": result.lab_flag,
        "interpretation": verdict.code.value if verdict.code else None,
        "critical": verdict.critical,
        "possibly_critical": verdict.possibly_critical,
        "interpretation_status": verdict.status,
        "interpretation_note": verdict.note,
        "lab_disagreement": verdict.lab_disagreement,
        "reference_range": verdict.reference_range,
        "status": result.status,
        "lab_comment": result.lab_comment,
    }


def stored_as_normalized(result: StoredResult, catalog: Catalog) -> NormalizedResult:
    """A stored result as the interpretation pipeline takes it (for re-interpretation)."""
    comparator = Comparator(result.comparator) if result.comparator else None
    return NormalizedResult(
        position=result.position,
        analyte=catalog.get(result.analyte),
        code_sent=result.code_sent or result.analyte,
        loinc=result.loinc,
        reported=ResultValue(value=result.value, comparator=comparator, text=result.value_text),
        unit=result.unit,
        canonical=ResultValue(value=result.canonical_value, comparator=comparator),
        lab_range_text=result.lab_range_text,
        lab_low=result.lab_range_low,
        lab_high=result.lab_range_high,
        lab_flag=result.lab_flag,
        status=result.status,
        lab_comment=result.lab_comment,
    )
