"""A DiagnosticReport entry and the Observation entries its ``result`` references: ONE
``PanelCreate`` (without its patient), its subject, natural key, collection time and specimen.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.reference import Reference

from app.domain.catalog import LOINC_SPECIMENS, Catalog
from app.domain.errors import DomainError
from app.domain.types import Specimen
from app.interop.fhir.inbound.observations import loinc_code, results_of
from app.interop.fhir.inbound.units import BundleIndex, ReportUnit, ResultSource, parse_token
from app.interop.fhir.outcome import Issue, Outcomes
from app.kit.schemas_common import UTC_RANGE, representable_in_utc
from app.panels.schemas import PatientRef

_REPORT_STATUS = {
    "final": "final",
    "preliminary": "preliminary",
    "partial": "preliminary",
    "corrected": "corrected",
    "amended": "amended",
}


def report_unit(
    index: int, report: DiagnosticReport, bundle: BundleIndex, catalog: Catalog
) -> ReportUnit:
    """The report's unit of work; raises FhirError with every problem of the report and of
    its Observations (each at its own entry's FHIRPath)."""
    entry = bundle.entries[index]
    where = f"Bundle.entry[{index}].resource"
    problems = Outcomes()
    subject_entry, subject = _subject(report.subject, bundle, where, problems)
    status = _REPORT_STATUS.get(str(report.status))
    if status is None:
        problems.add(
            f"status {report.status!r} cannot be stored; send final, preliminary, partial, "
            "corrected or amended.",
            f"{where}.status",
            code="value",
        )
    referenced = _observations(report, bundle, where, problems)
    results: list[dict[str, Any]] = []
    sources: list[ResultSource] = []
    notes: dict[int, list[Issue]] = {}
    for obs_index, obs in referenced:
        for result, origin in results_of(
            obs, obs_index, report.subject, problems, catalog, notes, panel_status=status
        ):
            results.append(result)
            sources.append(origin)
    if referenced and not results and not problems.issues:
        problems.add(
            "None of this report's results has a value (each has a dataAbsentReason): there is "
            "nothing to store. Send at least one Observation with valueQuantity or valueString.",
            f"{where}.result",
            code="required",
        )
    observations = [obs for _, obs in referenced]
    collected_at = _collected_at(report, observations, where, problems)
    source, accession = _natural_key(report, entry, bundle.bundle, collected_at, where, problems)
    specimen = _specimen(observations, catalog, where, problems)
    problems.raise_if_any()
    performer = next(iter(report.performer or []), None)
    fields: dict[str, Any] = {
        "source": source,
        "accession": accession,
        "specimen": specimen,
        "status": status,
        "collected_at": collected_at,
        "performing_lab": _display(performer),
        "results": results,
    }
    return ReportUnit(
        index=index,
        full_url=entry.fullUrl,
        observation_indexes=[i for i, _ in referenced],
        subject_entry=subject_entry,
        subject=subject,
        fields=fields,
        sources=sources,
        notes=notes,
    )


def _observations(
    report: DiagnosticReport, bundle: BundleIndex, where: str, problems: Outcomes
) -> list[tuple[int, Observation]]:
    """(entry index, Observation) for each ``result`` reference, in order."""
    found: list[tuple[int, Observation]] = []
    for position, ref in enumerate(report.result or []):
        target = bundle.resolve(str(ref.reference or ""))
        observation = bundle.resources[target] if target is not None else None
        if target is None or not isinstance(observation, Observation):
            problems.add(
                "result must reference an Observation entry of this Bundle (by its fullUrl).",
                f"{where}.result[{position}]",
            )
            continue
        found.append((target, observation))
    if not found:
        problems.add(
            "A DiagnosticReport needs at least one result.", f"{where}.result", code="required"
        )
    return found


def _display(reference: Reference | None) -> str | None:
    if reference is None:
        return None
    if reference.display:
        return str(reference.display)
    if reference.identifier is not None and reference.identifier.value:
        return str(reference.identifier.value)
    return None


def _subject(
    subject: Reference | None, index: BundleIndex, where: str, problems: Outcomes
) -> tuple[str | None, PatientRef | None]:
    """(fullUrl of a Patient entry, or a reference to a stored patient)."""
    if subject is None:
        problems.add("subject (the Patient) is required.", f"{where}.subject", code="required")
        return None, None
    reference = str(subject.reference or "")
    if reference:
        target = index.resolve(reference)
        if target is not None:
            if not isinstance(index.resources[target], FhirPatient):
                problems.add("subject must reference a Patient.", f"{where}.subject")
                return None, None
            return index.url_of(target), None
        if reference.startswith("Patient?"):
            params = dict(parse_qsl(reference.removeprefix("Patient?")))
            token = parse_token(params.get("identifier", ""))
            if token.system and token.value:
                return None, PatientRef(identifier={"system": token.system, "value": token.value})
        elif reference.startswith("Patient/"):
            try:
                return None, PatientRef(id=uuid.UUID(reference.removeprefix("Patient/")))
            except ValueError:
                pass
        problems.add(
            "subject must be a Patient entry of this Bundle, Patient/<id>, or "
            "Patient?identifier=system|value.",
            f"{where}.subject",
        )
        return None, None
    identifier = subject.identifier
    if identifier is not None and identifier.system and identifier.value:
        return None, PatientRef(identifier={"system": identifier.system, "value": identifier.value})
    problems.add("subject needs a reference or an identifier.", f"{where}.subject")
    return None, None


# The sender when a report names none (no identifier system, no meta.source): panels are
# deduplicated per organization, so this stands for "the posting organization".
DEFAULT_SOURCE = "urn:mineral:fhir:unnamed-sender"


def _natural_key(
    report: DiagnosticReport,
    entry: BundleEntry,
    bundle: Bundle,
    collected_at: datetime | None,
    where: str,
    problems: Outcomes,
) -> tuple[str | None, str | None]:
    """(source, accession) that make a re-sent report a no-op.

    1. The report's identifier, else the Bundle's: its system is the source (else
       ``meta.source`` of the report or the Bundle, else ``DEFAULT_SOURCE``), its value the
       accession.
    2. Without any identifier value, a natural key: the source as above (or
       ``Bundle.identifier.system``), and as accession the report's id (``resource.id``,
       else the entry's ``fullUrl``) + ``@`` + the collection time in UTC (ISO 8601). A sender
       that re-sends the same id (or fullUrl) and time stores the report once."""
    identifier = next((i for i in report.identifier or [] if i.value), None) or bundle.identifier
    named = (
        (identifier.system if identifier is not None else None)
        or (report.meta.source if report.meta else None)
        or (bundle.meta.source if bundle.meta else None)
        or (bundle.identifier.system if bundle.identifier is not None else None)
    )
    source = str(named) if named else DEFAULT_SOURCE
    if identifier is not None and identifier.value:
        return source, str(identifier.value)
    report_id = str(report.id or entry.fullUrl or "")
    if not report_id:
        problems.add(
            "The report cannot be recognised when re-sent: give it an identifier (system and "
            "value; or Bundle.identifier), or an id / entry fullUrl, which with the collection "
            "time makes its natural key.",
            f"{where}.identifier",
            code="required",
        )
        return source, None
    if collected_at is None:
        return source, None  # the collection time problem is already reported
    accession = f"{report_id}@{collected_at.astimezone(UTC).isoformat()}"
    if len(accession) > 100:  # the stored accession's length; keep it stable and unique
        accession = "sha256:" + hashlib.sha256(accession.encode()).hexdigest()
    return source, accession


def _collected_at(
    report: DiagnosticReport, observations: list[Observation], where: str, problems: Outcomes
) -> datetime | None:
    """Specimen collection time: the report's effective time (``effectiveDateTime`` or
    ``effectivePeriod.start``), else its Observations' (``effectiveDateTime``,
    ``effectivePeriod.start``, ``effectiveInstant``), else the time the report was issued."""
    candidates: list[tuple[Any, str]] = [
        (report.effectiveDateTime, f"{where}.effectiveDateTime"),
        (
            report.effectivePeriod.start if report.effectivePeriod else None,
            f"{where}.effectivePeriod.start",
        ),
    ]
    for obs in observations:
        candidates.append((obs.effectiveDateTime, f"{where}.result"))
        candidates.append(
            (obs.effectivePeriod.start if obs.effectivePeriod else None, f"{where}.result")
        )
        candidates.append((obs.effectiveInstant, f"{where}.result"))
    candidates.append((report.issued, f"{where}.issued"))
    for value, path in candidates:
        if value is None:
            continue
        if isinstance(value, datetime) and value.tzinfo is not None:
            if not representable_in_utc(value):
                problems.add(
                    f"The collection time must lie {UTC_RANGE} once read in UTC.",
                    path,
                    code="value",
                )
                return None
            return value
        problems.add(
            "The collection time needs a time of day and a UTC offset.", path, code="value"
        )
        return None
    problems.add(
        "effectiveDateTime (specimen collection time) is required.",
        f"{where}.effectiveDateTime",
        code="required",
    )
    return None


def _specimen(
    observations: list[Observation], catalog: Catalog, where: str, problems: Outcomes
) -> str:
    """The specimen, read from the LOINC System axis of the result codes (serum by default)."""
    found: set[str] = set()
    for obs in observations:
        code = loinc_code(obs)
        if code is None:
            continue
        try:
            analyte = catalog.by_loinc(code)
        except DomainError:
            continue
        for loinc in analyte.loinc_codes:
            if loinc.code == code:
                covered = LOINC_SPECIMENS.get(loinc.specimen, frozenset())
                found.add(Specimen.SERUM.value if Specimen.SERUM.value in covered else min(covered))
    if len(found) > 1:
        problems.add(
            "The results are for different specimens; send one DiagnosticReport per specimen.",
            f"{where}.result",
        )
    return found.pop() if len(found) == 1 else Specimen.SERUM.value
