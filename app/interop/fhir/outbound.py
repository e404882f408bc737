"""Stored records out as FHIR resources, each built (and so validated) with fhir.resources.

Observation values are the lab's: ``code`` carries the code the lab sent (a LOINC coding when
it sent a LOINC that fits the unit; a name or local code as ``code.text``), the LOINC that
fits the reported unit's property when the catalog has one (none rather than a wrong one:
zinc has no verified molar code) and our analyte coding; ``valueQuantity`` is the value, unit
(UCUM) and comparator as reported. The value in the analyte's canonical unit (what our
interpretation uses, so every Observation of an analyte is comparable) is in the
``canonical-value`` extension, rounded to the reported value's significant figures (at least
3; app.domain.precision). ``interpretation`` carries ours first, then the lab's flag; each is
marked by the ``interpretation-source`` extension (``service`` or ``lab``).
``referenceRange``: ours (the snapshot applied, converted to the reported unit), then the lab's.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.observationdefinition import ObservationDefinition
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.resource import Resource

from app.domain import units
from app.domain.catalog import Analyte, Catalog
from app.domain.errors import DomainError
from app.domain.precision import as_reported, display_value
from app.domain.result_status import is_withdrawn
from app.domain.types import RangeRow
from app.identifier_systems import source_uri, system_uri
from app.interop.fhir.terminology import (
    ANALYTE_SYSTEM,
    CANONICAL_VALUE_EXTENSION,
    DIAGNOSTIC_SERVICE,
    INTERPRETATION,
    INTERPRETATION_CODES,
    INTERPRETED_BY_EXTENSION,
    LOINC,
    OBSERVATION_CATEGORY,
    REFERENCE_RANGE_MEANING,
    UCUM,
)
from app.models.panel import Panel, Result
from app.models.patient import Patient
from app.panels.interpretation import INTERPRETATION_DISPLAY
from app.ranges.compiled import CompiledRangeSet

_LABORATORY = {
    "coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]
}
_NORMAL_RANGE = {
    "coding": [{"system": REFERENCE_RANGE_MEANING, "code": "normal", "display": "Normal Range"}]
}


def _quantity(value: Decimal | str | None, unit: str) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"value": Decimal(str(value)), "unit": unit, "system": UCUM, "code": unit}


def _years(value: Decimal | str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"value": Decimal(str(value)), "unit": "a", "system": UCUM, "code": "a"}


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != [] and v != {}}


def patient_resource(patient: Patient) -> FhirPatient:
    return FhirPatient.model_validate(
        _compact(
            {
                "resourceType": "Patient",
                "id": str(patient.id),
                "meta": {
                    "versionId": str(patient.version),
                    "lastUpdated": patient.updated_at.isoformat(),
                },
                "identifier": [
                    {"system": system_uri(i.system), "value": i.value} for i in patient.identifiers
                ],
                "gender": patient.sex,
                "birthDate": patient.birth_date.isoformat() if patient.birth_date else None,
                "name": _human_names(patient),
            }
        )
    )


def _human_names(patient: Patient) -> list[dict[str, Any]] | None:
    name = patient.name
    if name is None:
        return None
    return [
        _compact(
            {
                "use": "official",
                "family": name.family,
                "given": list(name.given) or None,
                "text": name.text,
            }
        )
    ]


def _observation_code(
    result: Result, analyte: Analyte, catalog: Catalog, specimen: str | None
) -> dict[str, Any]:
    """The code the lab sent, the LOINC that fits the reported unit, and our analyte code.

    A LOINC the lab sent is kept when its property fits the unit the value is in (the catalog
    then prefers it); one that does not (a [Moles/volume] code on a mg/dL value) is named in
    ``text`` only, never as a coding a consumer would read the value by. A name or local code
    the lab sent (its system is not kept) is ``text``."""
    sent = (result.code_sent or "").strip()
    sent_loinc = catalog.loinc_code(sent) if sent else None
    loinc = catalog.loinc_for(analyte, result.unit, specimen=specimen, prefer=sent or None)
    codings: list[dict[str, Any]] = []
    if loinc is not None:
        display = next((c.display for c in analyte.loinc_codes if c.code == loinc), None)
        codings.append(_compact({"system": LOINC, "code": loinc, "display": display}))
    codings.append({"system": ANALYTE_SYSTEM, "code": analyte.code, "display": analyte.display})
    if sent_loinc is not None:
        text = analyte.display
        if sent_loinc.code != loinc:
            text += f" (sent as LOINC {sent_loinc.code}, which is not for {result.unit})"
    elif sent and sent != analyte.code:
        text = sent
    else:
        text = analyte.display
    return {"coding": codings, "text": text}


def _definition_code(analyte: Analyte, catalog: Catalog) -> dict[str, Any]:
    """The LOINC for the canonical unit (the unit the definition's limits are in), if the
    catalog has one of that property, plus our analyte code."""
    loinc = catalog.loinc_for(analyte, analyte.canonical_unit)
    codings: list[dict[str, Any]] = []
    if loinc is not None:
        display = next((c.display for c in analyte.loinc_codes if c.code == loinc), None)
        codings.append(_compact({"system": LOINC, "code": loinc, "display": display}))
    codings.append({"system": ANALYTE_SYSTEM, "code": analyte.code, "display": analyte.display})
    return {"coding": codings, "text": analyte.display}


def _canonical_extension(result: Result, reported: Decimal) -> dict[str, Any]:
    shown = display_value(
        Decimal(str(result.canonical_value)),
        reported=reported,
        converted=result.unit != result.canonical_unit,
    )
    quantity = _compact(
        {**(_quantity(shown, result.canonical_unit) or {}), "comparator": result.comparator}
    )
    return {"url": CANONICAL_VALUE_EXTENSION, "valueQuantity": quantity}


def _source(kind: str) -> list[dict[str, Any]]:
    return [{"url": INTERPRETED_BY_EXTENSION, "valueCode": kind}]


def _interpretations(result: Result) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if result.interpretation:
        display = INTERPRETATION_DISPLAY.get(result.interpretation, result.interpretation)
        out.append(
            {
                "extension": _source("service"),
                "coding": [
                    {"system": INTERPRETATION, "code": result.interpretation, "display": display}
                ],
                "text": display,
            }
        )
    if result.lab_flag:
        concept: dict[str, Any] = {"extension": _source("lab"), "text": result.lab_flag}
        if result.lab_flag in INTERPRETATION_CODES:
            concept["coding"] = [{"system": INTERPRETATION, "code": result.lab_flag}]
        out.append(concept)
    return out


def _in_unit(value: Any, analyte: Analyte, from_unit: str, to_unit: str) -> dict[str, Any] | None:
    """A range bound in ``to_unit`` (6 significant digits, as stored: a bound is not a
    measurement, and rounding it further could put a value on the wrong side of it)."""
    if value is None:
        return None
    number = Decimal(str(value))
    if from_unit != to_unit:
        number = units.convert(number, analyte=analyte, from_unit=from_unit, to_unit=to_unit)
    return _quantity(number, to_unit)


def _our_range(
    snapshot: dict[str, Any] | None, analyte: Analyte, reported_unit: str
) -> dict[str, Any] | None:
    if not snapshot or snapshot.get("basis") == "critical-limits-only":
        # No reference interval applied (only critical limits): nothing to call a normal range.
        return None
    unit = snapshot["unit"]
    try:
        low = _in_unit(snapshot.get("low"), analyte, unit, reported_unit)
        high = _in_unit(snapshot.get("high"), analyte, unit, reported_unit)
    except DomainError:
        low, high = _quantity(snapshot.get("low"), unit), _quantity(snapshot.get("high"), unit)
    range_set = snapshot.get("range_set") or {}
    text = f"Mineral Labs reference range ({range_set.get('name', 'range set')} "
    text += f"v{range_set.get('version', '?')})"
    critical = [
        f"{sign} {snapshot[key]} {unit}"
        for sign, key in (("<", "critical_low"), (">", "critical_high"))
        if snapshot.get(key) is not None
    ]
    if critical:
        text += "; critical " + " or ".join(critical)
    age = _compact(
        {
            "low": _years(snapshot.get("age_min_years")),
            "high": _years(snapshot.get("age_max_years")),
        }
    )
    return _compact(
        {
            "low": low,
            "high": high,
            "type": _NORMAL_RANGE,
            "age": age or None,
            "text": text,
        }
    )


def _lab_range(result: Result) -> dict[str, Any] | None:
    if not (
        result.lab_range_text
        or result.lab_range_low is not None
        or result.lab_range_high is not None
    ):
        return None
    return _compact(
        {
            "low": _quantity(result.lab_range_low, result.unit),
            "high": _quantity(result.lab_range_high, result.unit),
            "text": result.lab_range_text or "Reference range reported by the lab",
        }
    )


def observation_resource(
    result: Result, *, status: str, specimen: str | None, catalog: Catalog
) -> Observation:
    analyte = catalog.get(result.analyte)
    reported = as_reported(result.value_text, Decimal(str(result.value)))
    value = _compact({**(_quantity(reported, result.unit) or {}), "comparator": result.comparator})
    notes = [
        n for n in (result.interpretation_note, result.lab_disagreement, result.lab_comment) if n
    ]
    return Observation.model_validate(
        _compact(
            {
                "resourceType": "Observation",
                "id": str(result.id),
                "extension": [_canonical_extension(result, reported)],
                # The result's own stored status (FHIR Observation.status values); a result of
                # a cancelled panel is cancelled.
                "status": "cancelled"
                if status == "cancelled" and not is_withdrawn(result.status)
                else result.status or "final",
                "category": [_LABORATORY],
                "code": _observation_code(result, analyte, catalog, specimen),
                "subject": {"reference": f"Patient/{result.patient_id}"},
                "effectiveDateTime": result.collected_at.isoformat(),
                "valueQuantity": value,
                "interpretation": _interpretations(result),
                "note": [{"text": n} for n in notes],
                "referenceRange": [
                    r
                    for r in (
                        _our_range(result.reference_range, analyte, result.unit),
                        _lab_range(result),
                    )
                    if r
                ],
            }
        )
    )


def diagnostic_report_resource(panel: Panel, results: Sequence[Result]) -> DiagnosticReport:
    return DiagnosticReport.model_validate(
        _compact(
            {
                "resourceType": "DiagnosticReport",
                "id": str(panel.id),
                "identifier": [{"system": source_uri(panel.source), "value": panel.accession}],
                "status": panel.status,
                "category": [
                    {
                        "coding": [
                            {"system": DIAGNOSTIC_SERVICE, "code": "LAB", "display": "Laboratory"}
                        ]
                    }
                ],
                "code": {"text": "Mineral panel"},
                "subject": {"reference": f"Patient/{panel.patient_id}"},
                "effectiveDateTime": panel.collected_at.isoformat(),
                "issued": panel.created_at.isoformat(),
                "performer": [{"display": panel.performing_lab}] if panel.performing_lab else None,
                "result": [{"reference": f"Observation/{r.id}"} for r in results],
            }
        )
    )


def _intervals(row: RangeRow) -> list[dict[str, Any]]:
    unit = row.unit
    limits = row.limits
    common = _compact(
        {
            "gender": row.sex.value if row.sex else None,
            "age": _compact({"low": _years(row.age_min_years), "high": _years(row.age_max_years)})
            or None,
            "condition": f"specimen: {row.specimen}" if row.specimen else None,
        }
    )
    intervals: list[dict[str, Any]] = []
    if limits.low is not None or limits.high is not None:
        intervals.append(
            {
                "category": "reference",
                "context": _NORMAL_RANGE,
                "range": _compact(
                    {"low": _quantity(limits.low, unit), "high": _quantity(limits.high, unit)}
                ),
                **common,
            }
        )
    # A critical interval is where values are critical: below critical_low, above critical_high.
    if limits.critical_low is not None:
        intervals.append(
            {
                "category": "critical",
                "range": {"high": _quantity(limits.critical_low, unit)},
                **common,
            }
        )
    if limits.critical_high is not None:
        intervals.append(
            {
                "category": "critical",
                "range": {"low": _quantity(limits.critical_high, unit)},
                **common,
            }
        )
    if limits.absolute_low is not None or limits.absolute_high is not None:
        intervals.append(
            {
                "category": "absolute",
                "range": _compact(
                    {
                        "low": _quantity(limits.absolute_low, unit),
                        "high": _quantity(limits.absolute_high, unit),
                    }
                ),
                **common,
            }
        )
    return intervals


def observation_definitions(
    range_set: CompiledRangeSet, catalog: Catalog
) -> list[ObservationDefinition]:
    """One per analyte of the set. Age bands are ``[low, high)`` in years (the upper bound
    itself belongs to the next band), all limits in the analyte's canonical unit."""
    out = []
    for code, rows in sorted(range_set.rows_by_analyte.items()):
        analyte = catalog.get(code)
        out.append(
            ObservationDefinition.model_validate(
                {
                    "resourceType": "ObservationDefinition",
                    "id": analyte.code,
                    "category": [_LABORATORY],
                    "code": _definition_code(analyte, catalog),
                    "permittedDataType": ["Quantity"],
                    "quantitativeDetails": {
                        "unit": {"coding": [{"system": UCUM, "code": analyte.canonical_unit}]}
                    },
                    "qualifiedInterval": [i for row in rows for i in _intervals(row)],
                }
            )
        )
    return out


def searchset(
    matches: Sequence[tuple[str | None, Resource]],
    *,
    total: int | None,
    self_url: str,
    next_url: str | None,
    included: Sequence[tuple[str, Resource]] = (),
    warnings: Sequence[str] = (),
) -> Bundle:
    """A searchset Bundle: matches, then ``_include``d resources, then (lenient handling) one
    OperationOutcome entry naming the parameters that were not applied."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    entries = [
        _compact({"fullUrl": url, "resource": resource, "search": {"mode": "match"}})
        for url, resource in matches
    ]
    entries += [
        {"fullUrl": url, "resource": resource, "search": {"mode": "include"}}
        for url, resource in included
    ]
    if warnings:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "warning", "code": "not-supported", "diagnostics": text}
                        for text in warnings
                    ],
                },
                "search": {"mode": "outcome"},
            }
        )
    return Bundle.model_validate(
        _compact(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": total,
                "link": links,
                "entry": entries,
            }
        )
    )
