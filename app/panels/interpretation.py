"""The panels' side of the clinical path (``app.domain.pipeline``): sent panels in, stored
columns out, the pipeline's refusals as problem+json 422s.

Ingestion, re-interpretation and every correction (JSON, FHIR, HL7 v2) call ``normalize`` and
``interpret`` here, so they interpret and store results identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.core.errors import UnprocessableError
from app.domain.catalog import Catalog
from app.domain.pipeline import (
    ImpossibleResultsError,
    InterpretedPanel,
    InterpretedResult,
    NormalizedResult,
    RangeSetView,
    UnacceptableResultsError,
    interpret_panel,
    normalize_results,
)
from app.domain.types import Comparator, InterpretationCode, PatientFacts, ResultValue, Sex
from app.models.panel import Result as StoredResult
from app.models.patient import Patient
from app.panels.repository import PatientForPanel
from app.panels.schemas import PanelCreate

INTERPRETATION_DISPLAY = {
    "L": "Low",
    "N": "Normal",
    "H": "High",
    "LL": "Critically low",
    "HH": "Critically high",
    "IND": "Indeterminate",
}

# Where the pipeline's problems point: every panel arrives as the body of a request.
FIELD = "body.results"


class ResultsInvalidError(
    UnprocessableError, slug="invalid-results", title="One or more results cannot be accepted"
): ...


class ImpossibleResultError(
    UnprocessableError,
    slug="implausible-value",
    title="A value lies outside physically possible bounds",
): ...


def normalize(data: PanelCreate, *, specimen: str, catalog: Catalog) -> list[NormalizedResult]:
    """Stage 1 of the pipeline for a sent panel, each result with its own status or else the
    panel's; refused with every problem listed (422 ``invalid-results``)."""
    try:
        return normalize_results(
            data.results,
            specimen=specimen,
            catalog=catalog,
            status_of=data.result_status,
            field=FIELD,
        )
    except UnacceptableResultsError as exc:
        raise ResultsInvalidError(str(exc), errors=exc.problems) from exc


def interpret(
    results: Sequence[NormalizedResult],
    *,
    range_set: RangeSetView | None,
    patient: PatientFacts,
    specimen: str,
    refuse_impossible: bool,
) -> InterpretedPanel:
    """Stage 2 of the pipeline; with ``refuse_impossible`` an impossible value refuses the
    panel (422 ``implausible-value``)."""
    try:
        return interpret_panel(
            results,
            range_set=range_set,
            patient=patient,
            specimen=specimen,
            refuse_impossible=refuse_impossible,
            field=FIELD,
        )
    except ImpossibleResultsError as exc:
        raise ImpossibleResultError(str(exc), errors=exc.problems) from exc


# Enum members by value: a dict lookup instead of calling the enum (or reading ``.value``, an
# enum property) once per panel and per result.
_SEXES: dict[str, Sex] = {sex.value: sex for sex in Sex}
_COMPARATOR_TEXT: dict[Comparator, str] = {c: c.value for c in Comparator}
_CODE_TEXT: dict[InterpretationCode, str] = {c: c.value for c in InterpretationCode}


def patient_facts(patient: Patient | PatientForPanel, collected_at: datetime) -> PatientFacts:
    sex = _SEXES.get(patient.sex) or Sex(patient.sex)  # Sex() refuses what is not a sex
    return PatientFacts(sex, patient.birth_date, collected_at.date())


def comparator_of(value: ResultValue) -> str | None:
    comparator = value.comparator
    return _COMPARATOR_TEXT[comparator] if isinstance(comparator, Comparator) else None


def result_content(result: NormalizedResult, verdict: InterpretedResult) -> dict[str, Any]:
    """The columns of a stored result that come from the value and its interpretation (every
    writer of results uses this, so ingestion and corrections store them identically)."""
    reported, analyte, code = result.reported, result.analyte, verdict.code
    return {
        "analyte": analyte.code,
        "loinc": result.loinc,
        "code_sent": result.code_sent,
        "value_text": reported.text or str(reported.value),
        "comparator": comparator_of(reported),
        "value": reported.value,
        "unit": result.unit,
        "canonical_value": result.canonical.value,
        "canonical_unit": analyte.canonical_unit,
        "lab_range_text": result.lab_range_text,
        "lab_range_low": result.lab_low,
        "lab_range_high": result.lab_high,
        "lab_flag": result.lab_flag,
        "interpretation": _CODE_TEXT[code] if code else None,
        "critical": verdict.critical,
        "possibly_critical": verdict.possibly_critical,
        "interpretation_status": verdict.status,
        "interpretation_note": verdict.note,
        "lab_disagreement": verdict.lab_disagreement,
        "reference_range": verdict.reference_range,
        "status": result.status,
        "lab_comment": result.lab_comment,
    }


# The fields of a NormalizedResult that a stored result keeps under the same name.
_SAME_NAME = ("position", "loinc", "unit", "lab_range_text", "lab_flag", "status", "lab_comment")


def stored_as_normalized(result: StoredResult, catalog: Catalog) -> NormalizedResult:
    """A stored result as the interpretation pipeline takes it (for re-interpretation)."""
    comparator = Comparator(result.comparator) if result.comparator else None
    return NormalizedResult(
        **{name: getattr(result, name) for name in _SAME_NAME},
        analyte=catalog.get(result.analyte),
        code_sent=result.code_sent or result.analyte,
        reported=ResultValue(value=result.value, comparator=comparator, text=result.value_text),
        canonical=ResultValue(value=result.canonical_value, comparator=comparator),
        lab_low=result.lab_range_low,
        lab_high=result.lab_range_high,
    )
