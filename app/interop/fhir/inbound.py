"""FHIR Bundle in: validate with fhir.resources, then map to the native input models.

Pure mapping (no I/O). A Bundle becomes units of work: each Patient entry is one unit; each
DiagnosticReport entry with the Observation entries its ``result`` references is one unit,
which becomes ONE ``PanelCreate`` for ``app.panels.service.ingest``. Every problem names the
entry it came from as a FHIRPath expression (``Bundle.entry[3].resource.valueQuantity.code``).

EHR shapes accepted: ``valueString`` numbers (``<0.5``, ``0.62 mmol/L``), ``component`` panels
(one result per component), ``dataAbsentReason`` (not stored: a warning in the entry's
response; the other results are stored), ``effectivePeriod.start``, a report without
identifier (natural key, ``_natural_key``), a referenceRange in another unit (converted), and
conditional create / update criteria with several parameters (``Conditions``).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from app.domain import units
from app.domain.catalog import LOINC_SPECIMENS, Catalog
from app.domain.errors import DomainError
from app.domain.result_status import FHIR_OBSERVATION_STATUS, FHIR_REFUSED
from app.domain.types import Specimen
from app.domain.values import parse_result_value
from app.interop.fhir.outcome import FhirError, Issue, Outcomes
from app.interop.fhir.terminology import LOINC, UCUM
from app.panels.schemas import PanelCreate, PatientRef
from app.patients.schemas import PatientCreate

SUPPORTED = ("Patient", "DiagnosticReport", "Observation")
_REPORT_STATUS = {
    "final": "final",
    "preliminary": "preliminary",
    "partial": "preliminary",
    "corrected": "corrected",
    "amended": "amended",
}
_GENDER = {"female", "male", "other", "unknown"}
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


@dataclass(frozen=True)
class IdentifierToken:
    """A FHIR token search value: ``system|value``, ``|value``, ``system|`` or ``value``.
    ``system`` None means any system; ``value`` None means any value."""

    system: str | None
    value: str | None


def parse_token(text: str) -> IdentifierToken:
    if "|" not in text:
        return IdentifierToken(system=None, value=text or None)
    system, _, value = text.partition("|")
    return IdentifierToken(system=system, value=value or None)


@dataclass(frozen=True)
class Conditions:
    """A conditional create's criteria (``ifNoneExist``, or the query of a conditional update
    ``PUT Patient?...``), ANDed: every identifier must name the patient, and birthdate /
    gender, when given, must be the patient's. ``where`` is the FHIRPath of the criteria."""

    identifiers: tuple[IdentifierToken, ...]
    where: str
    birthdate: date | None = None
    gender: str | None = None
    update: bool = False  # PUT Patient?...: create if none, else match (no overwrite)


@dataclass
class PatientUnit:
    index: int
    full_url: str | None
    data: PatientCreate
    if_none_exist: Conditions | None
    # Identifier.type as an HL7 table 0203 code (v2-0203 coding), by position in data.identifiers.
    identifier_types: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class ResultSource:
    """Where one native result came from: an Observation entry, or one of its components."""

    entry: int
    path: str  # "" for the Observation itself, ".component[2]" for a component
    value_path: str  # ".valueQuantity.value" or ".valueString"
    unit_path: str  # ".valueQuantity.code", ".valueString" or ".referenceRange[0].low.code"


@dataclass
class ReportUnit:
    index: int
    full_url: str | None
    observation_indexes: list[int]
    subject_entry: str | None  # fullUrl of a Patient entry of this Bundle
    subject: PatientRef | None  # a patient already stored (by id or identifier)
    fields: dict[str, Any]  # PanelCreate without `patient`
    # One per fields["results"] (a component panel gives several; an Observation with
    # dataAbsentReason none), and information/warning issues for entries, by entry index.
    sources: list[ResultSource] = field(default_factory=list)
    notes: dict[int, list[Issue]] = field(default_factory=dict)

    def panel(self, patient: PatientRef) -> PanelCreate:
        try:
            return PanelCreate.model_validate({**self.fields, "patient": patient})
        except ValidationError as exc:
            raise FhirError(422, self.issues_for_validation(exc)) from exc

    def issues_for_validation(self, exc: ValidationError) -> list[Issue]:
        return [
            Issue(
                diagnostics=str(err["msg"]),
                code="invalid",
                expression=(self.expression_for(".".join(str(p) for p in err["loc"])),),
            )
            for err in exc.errors()
        ]

    def expression_for(self, field_path: str) -> str:
        """Where a native field (``body.results[2].unit``) came from in the Bundle."""
        report = f"Bundle.entry[{self.index}].resource"
        path = field_path.removeprefix("body.")
        match = re.match(r"results(?:\[|\.)(\d+)\]?\.?(\w+)?", path)
        if match:
            position = int(match.group(1))
            if position >= len(self.sources):
                return report
            source = self.sources[position]
            where = f"Bundle.entry[{source.entry}].resource{source.path}"
            name = match.group(2) or ""
            if name == "value":
                return where + source.value_path
            if name == "unit":
                return where + source.unit_path
            return where + _RESULT_FIELDS.get(name, "")
        return report + _PANEL_FIELDS.get(path.split(".")[0], "")


_RESULT_FIELDS = {
    "analyte": ".code",
    "value": ".valueQuantity.value",
    "unit": ".valueQuantity.code",
    "reference_range": ".referenceRange[0]",
    "flag": ".interpretation[0]",
    "status": ".status",
}
_PANEL_FIELDS = {
    "patient": ".subject",
    "source": ".identifier[0].system",
    "accession": ".identifier[0].value",
    "collected_at": ".effectiveDateTime",
    "status": ".status",
    "performing_lab": ".performer[0]",
    "specimen": ".specimen",
}


@dataclass
class ParsedBundle:
    kind: str  # "transaction" | "batch"
    size: int
    patients: list[PatientUnit] = field(default_factory=list)
    reports: list[ReportUnit] = field(default_factory=list)
    failures: dict[int, FhirError] = field(default_factory=dict)


def parse_bundle(raw: bytes, catalog: Catalog) -> ParsedBundle:
    """Validate a posted Bundle and plan its units of work.

    Raises 400 for anything that is not a valid transaction or batch Bundle. Problems of single
    entries are kept in ``failures`` by entry index (a transaction refuses them all at once, a
    batch answers them entry by entry)."""
    bundle = _validate_bundle(raw)
    kind = str(bundle.type)
    if kind not in ("transaction", "batch"):
        raise FhirError(
            400,
            [
                Issue(
                    f"Bundle.type must be transaction or batch, not {kind!r}.",
                    "invalid",
                    "error",
                    ("Bundle.type",),
                )
            ],
        )
    entries: list[BundleEntry] = list(bundle.entry or [])
    parsed = ParsedBundle(kind=kind, size=len(entries))
    by_url = _entries_by_full_url(entries, parsed)
    resources = [entry.resource for entry in entries]
    owner: dict[int, int] = {}  # Observation entry -> the DiagnosticReport entry listing it
    for index, resource in enumerate(resources):
        if index in parsed.failures or not isinstance(resource, DiagnosticReport):
            continue
        for ref in resource.result or []:
            target = _resolve(str(ref.reference or ""), by_url)
            if target is None or not isinstance(resources[target], Observation):
                continue
            if owner.setdefault(target, index) != index:
                parsed.failures[index] = _entry_error(
                    index, "result", f"entry[{target}] is a result of entry[{owner[target]}]"
                )
    for index, resource in enumerate(resources):
        if index in parsed.failures:
            continue
        try:
            if isinstance(resource, FhirPatient):
                parsed.patients.append(_patient_unit(index, entries[index], resource))
            elif isinstance(resource, DiagnosticReport):
                parsed.reports.append(
                    _report_unit(
                        index, entries[index], resource, resources, by_url, bundle, catalog
                    )
                )
            elif isinstance(resource, Observation) and index not in owner:
                raise _entry_error(
                    index,
                    "",
                    "An Observation is stored as a result of a DiagnosticReport: reference it "
                    "from a DiagnosticReport.result in this Bundle.",
                )
        except FhirError as exc:
            parsed.failures[index] = exc
    # A report and its Observations are stored together or not at all.
    for unit in list(parsed.reports):
        failed = [i for i in unit.observation_indexes if i in parsed.failures]
        if failed:
            parsed.failures[unit.index] = parsed.failures[failed[0]]
            parsed.reports.remove(unit)
    for obs_index, report_index in owner.items():
        if report_index in parsed.failures:
            parsed.failures[obs_index] = parsed.failures[report_index]
    return parsed


def _validate_bundle(raw: bytes) -> Bundle:
    try:
        # Decimals as written: a lab's "0.70" keeps its trailing zero.
        document = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirError(400, [Issue("The request body is not valid JSON.", "structure")]) from exc
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        raise FhirError(
            400,
            [
                Issue(
                    "POST a Bundle (resourceType 'Bundle') of type transaction or batch.",
                    "structure",
                )
            ],
        )
    try:
        return Bundle.model_validate(document)
    except ValidationError as exc:
        raise FhirError(
            400,
            [
                Issue(
                    diagnostics=str(err["msg"]),
                    code="structure",
                    expression=(_fhirpath("Bundle", err["loc"]),),
                )
                for err in exc.errors()[:50]
            ],
        ) from exc


def _fhirpath(root: str, loc: tuple[int | str, ...]) -> str:
    out = root
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _entries_by_full_url(entries: list[BundleEntry], parsed: ParsedBundle) -> dict[str, int]:
    by_url: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        problems = Outcomes()
        if entry.resource is None:
            problems.add("Each entry needs a resource.", f"{where}.resource", code="required")
        elif entry.resource.get_resource_type() not in SUPPORTED:
            problems.add(
                f"{entry.resource.get_resource_type()} entries are not supported; "
                f"send {', '.join(SUPPORTED)}.",
                f"{where}.resource",
                code="not-supported",
            )
        request = entry.request
        method = str(request.method) if request is not None else ""
        if request is not None and method == "PUT" and entry.resource is not None:
            _check_put(entry.resource.get_resource_type(), str(request.url), where, problems)
        elif request is None or method != "POST":
            problems.add(
                "Only POST (create) entries, and PUT Patient?identifier=system|value "
                "(conditional update), are supported.",
                f"{where}.request.method",
                code="not-supported",
            )
        elif entry.resource is not None and str(request.url).split("?")[0].strip("/") != (
            entry.resource.get_resource_type()
        ):
            problems.add(
                "request.url must name the resource type (e.g. 'Patient').",
                f"{where}.request.url",
            )
        if entry.fullUrl:
            if entry.fullUrl in by_url:
                problems.add("fullUrl is used by two entries.", f"{where}.fullUrl")
            by_url[str(entry.fullUrl)] = index
        if problems.issues:
            status = 400 if any(i.code != "not-supported" for i in problems.issues) else 422
            parsed.failures[index] = FhirError(status, problems.issues)
    return by_url


def _check_put(resource_type: str, url: str, where: str, problems: Outcomes) -> None:
    """PUT is supported as a conditional update of a Patient only (create if none, else
    match); results are created through a DiagnosticReport, whose identifier makes a re-send
    idempotent and whose status corrected/amended corrects the stored panel."""
    target, _, query = url.strip("/").partition("?")
    if resource_type in ("Observation", "DiagnosticReport"):
        problems.add(
            f"PUT {resource_type} is not supported: results are created with POST entries "
            "(a DiagnosticReport and the Observations its result references). Re-sending the "
            "report with the same identifier stores nothing new; DiagnosticReport.status "
            "corrected or amended corrects the stored panel.",
            f"{where}.request.method",
            code="not-supported",
        )
    elif target != resource_type:
        problems.add(
            "request.url must name the resource type (e.g. 'Patient?identifier=system|value').",
            f"{where}.request.url",
        )
    elif not query:
        problems.add(
            "A Patient is updated only conditionally here: PUT Patient?identifier=system|value "
            "(created when none matches, else matched; its demographics are not overwritten). "
            "Update a patient by id through the native API.",
            f"{where}.request.url",
            code="not-supported",
        )


def _entry_error(index: int, path: str, message: str, code: str = "invalid") -> FhirError:
    where = f"Bundle.entry[{index}].resource" + (f".{path}" if path else "")
    return FhirError(422, [Issue(message, code, "error", (where,))])


# --- Patient --------------------------------------------------------------------------------


def _patient_unit(index: int, entry: BundleEntry, patient: FhirPatient) -> PatientUnit:
    where = f"Bundle.entry[{index}].resource"
    problems = Outcomes()
    identifiers = []
    identifier_types: list[str | None] = []
    for position, identifier in enumerate(patient.identifier or []):
        if not identifier.system or not identifier.value:
            problems.add(
                "Each identifier needs a system and a value.",
                f"{where}.identifier[{position}]",
                code="required",
            )
        else:
            identifiers.append({"system": identifier.system, "value": identifier.value})
            identifier_types.append(_identifier_type(identifier.type))
    gender = str(patient.gender) if patient.gender else "unknown"
    birth_date = patient.birthDate
    if birth_date is not None and not isinstance(birth_date, date):
        problems.add(
            "birthDate must be a full date (YYYY-MM-DD): age-banded reference ranges need it.",
            f"{where}.birthDate",
        )
    if gender not in _GENDER:
        problems.add("gender is not one of female, male, other, unknown.", f"{where}.gender")
    if_none_exist = _if_none_exist(index, entry)
    problems.raise_if_any()
    try:
        data = PatientCreate.model_validate(
            {
                "identifiers": identifiers,
                "sex": gender,
                "birth_date": birth_date,
                "name": _human_name(patient.name or []),
            }
        )
    except ValidationError as exc:
        fields = {
            "identifiers": "identifier",
            "sex": "gender",
            "birth_date": "birthDate",
            "name": "name",
        }
        raise FhirError(
            422,
            [
                Issue(
                    str(err["msg"]),
                    "invalid",
                    "error",
                    (f"{where}.{fields.get(str(err['loc'][0]), '')}".rstrip("."),),
                )
                for err in exc.errors()
            ],
        ) from exc
    return PatientUnit(
        index=index,
        full_url=entry.fullUrl,
        data=data,
        if_none_exist=if_none_exist,
        identifier_types=tuple(identifier_types),
    )


def _human_name(names: list[Any]) -> dict[str, Any] | None:
    """Patient.name's `official` name (else the first) in our HumanName shape; None when the
    resource names no one."""
    chosen = next((n for n in names if getattr(n, "use", None) == "official"), None)
    chosen = chosen or (names[0] if names else None)
    if chosen is None or not (chosen.family or chosen.given or chosen.text):
        return None
    return {"family": chosen.family, "given": list(chosen.given or [])[:5], "text": chosen.text}


def _identifier_type(concept: CodeableConcept | None) -> str | None:
    """Identifier.type's HL7 table 0203 code (``MR``, ``SS``, ...), if it has one."""
    for coding in (concept.coding if concept else None) or []:
        if coding.system == V2_IDENTIFIER_TYPE and coding.code:
            return str(coding.code).strip().upper() or None
    return None


_CONDITION_PARAMETERS = ("identifier", "birthdate", "gender")


def _if_none_exist(index: int, entry: BundleEntry) -> Conditions | None:
    """The criteria of ``request.ifNoneExist``, or of the query of ``PUT Patient?...``."""
    request = entry.request
    if request is None:
        return None
    if str(request.method) == "PUT":
        query = str(request.url).partition("?")[2]
        where, update = f"Bundle.entry[{index}].request.url", True
    else:
        query = str(request.ifNoneExist or "")
        where, update = f"Bundle.entry[{index}].request.ifNoneExist", False
    if not query:
        return None
    accepted = (
        "identifier=[system|]value (repeatable), optionally with birthdate=YYYY-MM-DD and "
        "gender, joined by '&' (all must match)"
    )

    def refuse(message: str) -> FhirError:
        return FhirError(
            400, [Issue(f"{message}; send {accepted}.", "not-supported", "error", (where,))]
        )

    identifiers: list[IdentifierToken] = []
    birthdate: date | None = None
    gender: str | None = None
    for name, value in parse_qsl(query.lstrip("?"), keep_blank_values=True):
        if name not in _CONDITION_PARAMETERS:
            raise refuse(f"The search parameter {name!r} is not supported in this criterion")
        if not value:
            raise refuse(f"{name} has no value")
        if name == "identifier":
            identifiers.append(parse_token(value))
        elif name == "birthdate":
            try:
                birthdate = date.fromisoformat(value)
            except ValueError:
                raise refuse(f"birthdate {value!r} is not a date (YYYY-MM-DD)") from None
        elif value not in _GENDER:
            raise refuse(f"gender {value!r} is not one of {', '.join(sorted(_GENDER))}")
        else:
            gender = value
    if not identifiers:
        raise refuse("The criterion needs at least one identifier")
    return Conditions(tuple(identifiers), where, birthdate, gender, update)


# --- DiagnosticReport + Observations ---------------------------------------------------------


def _resolve(reference: str, by_url: dict[str, int]) -> int | None:
    if reference in by_url:
        return by_url[reference]
    for url, index in by_url.items():  # a relative reference to an entry's absolute fullUrl
        if not reference.startswith("urn:") and url.endswith("/" + reference):
            return index
    return None


def _report_unit(
    index: int,
    entry: BundleEntry,
    report: DiagnosticReport,
    resources: list[Resource | None],
    by_url: dict[str, int],
    bundle: Bundle,
    catalog: Catalog,
) -> ReportUnit:
    where = f"Bundle.entry[{index}].resource"
    problems = Outcomes()
    subject_entry, subject = _subject(report.subject, by_url, resources, where, problems)
    status = _REPORT_STATUS.get(str(report.status))
    if status is None:
        problems.add(
            f"status {report.status!r} cannot be stored; send final, preliminary, partial, "
            "corrected or amended.",
            f"{where}.status",
            code="value",
        )
    observation_indexes: list[int] = []
    observations: list[Observation] = []
    for position, ref in enumerate(report.result or []):
        target = _resolve(str(ref.reference or ""), by_url)
        observation = resources[target] if target is not None else None
        if target is None or not isinstance(observation, Observation):
            problems.add(
                "result must reference an Observation entry of this Bundle (by its fullUrl).",
                f"{where}.result[{position}]",
            )
            continue
        observation_indexes.append(target)
        observations.append(observation)
    if not observation_indexes:
        problems.add(
            "A DiagnosticReport needs at least one result.", f"{where}.result", code="required"
        )
    results: list[dict[str, Any]] = []
    sources: list[ResultSource] = []
    notes: dict[int, list[Issue]] = {}
    for obs, obs_index in zip(observations, observation_indexes, strict=True):
        for result, origin in _results(
            obs, obs_index, report.subject, problems, catalog, notes, panel_status=status
        ):
            results.append(result)
            sources.append(origin)
    if observation_indexes and not results and not problems.issues:
        problems.add(
            "None of this report's results has a value (each has a dataAbsentReason): there is "
            "nothing to store. Send at least one Observation with valueQuantity or valueString.",
            f"{where}.result",
            code="required",
        )
    collected_at = _collected_at(report, observations, where, problems)
    source, accession = _natural_key(report, entry, bundle, collected_at, where, problems)
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
        observation_indexes=observation_indexes,
        subject_entry=subject_entry,
        subject=subject,
        fields=fields,
        sources=sources,
        notes=notes,
    )


def _display(reference: Reference | None) -> str | None:
    if reference is None:
        return None
    if reference.display:
        return str(reference.display)
    if reference.identifier is not None and reference.identifier.value:
        return str(reference.identifier.value)
    return None


def _url_of(index: int, by_url: dict[str, int]) -> str:
    return next(url for url, i in by_url.items() if i == index)


def _subject(
    subject: Reference | None,
    by_url: dict[str, int],
    resources: list[Resource | None],
    where: str,
    problems: Outcomes,
) -> tuple[str | None, PatientRef | None]:
    """(fullUrl of a Patient entry, or a reference to a stored patient)."""
    if subject is None:
        problems.add("subject (the Patient) is required.", f"{where}.subject", code="required")
        return None, None
    reference = str(subject.reference or "")
    if reference:
        target = _resolve(reference, by_url)
        if target is not None:
            if not isinstance(resources[target], FhirPatient):
                problems.add("subject must reference a Patient.", f"{where}.subject")
                return None, None
            return _url_of(target, by_url), None
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
        code = _loinc_code(obs)
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


def _loinc_code(obs: Observation) -> str | None:
    for coding in (obs.code.coding if obs.code else None) or []:
        if coding.system == LOINC and coding.code:
            return str(coding.code)
    return None


def _analyte_code(obs: Observation) -> str | None:
    """A LOINC code, else any code the lab sent, else the code's text (a lab's name)."""
    loinc = _loinc_code(obs)
    if loinc is not None:
        return loinc
    for coding in (obs.code.coding if obs.code else None) or []:
        if coding.code:
            return str(coding.code)
    return str(obs.code.text) if obs.code and obs.code.text else None


def _decimal_text(value: Decimal) -> str:
    # "f" writes out every digit: 1e999999999 would be a billion of them (gigabytes). Beyond a
    # bounded exponent the value keeps its exponent form, which the value parser refuses.
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -64 <= exponent <= 64:
        return format(value, "f")
    return str(value)


def _observation_status(
    obs: Observation, where: str, problems: Outcomes, panel_status: str | None
) -> str | None:
    """Observation.status as stored (app.domain.result_status), None where it is the panel's
    own (so a Bundle without per-result statuses hashes as before)."""
    sent = str(obs.status) if obs.status else "final"
    if sent in FHIR_REFUSED:
        problems.add(
            f"status {sent!r} cannot be stored: {FHIR_REFUSED[sent]}.",
            f"{where}.status",
            code="value",
        )
        return None
    status = FHIR_OBSERVATION_STATUS.get(sent)
    if status is None:
        problems.add(
            f"status {sent!r} is not an Observation status; send one of "
            f"{', '.join(FHIR_OBSERVATION_STATUS)}.",
            f"{where}.status",
            code="value",
        )
        return None
    return None if status == panel_status else status


def _results(
    obs: Observation,
    index: int,
    report_subject: Reference | None,
    problems: Outcomes,
    catalog: Catalog,
    notes: dict[int, list[Issue]],
    *,
    panel_status: str | None = None,
) -> list[tuple[dict[str, Any], ResultSource]]:
    """The native results one Observation gives: its own value, and one per ``component``
    (a panel Observation). An Observation (or component) with ``dataAbsentReason`` and no value
    gives none: it is not stored, and a warning in its entry's response says so."""
    where = f"Bundle.entry[{index}].resource"
    if obs.dataAbsentReason is not None and not _has_value(obs):
        notes.setdefault(index, []).append(_absent_note(obs.dataAbsentReason, where))
        return []
    status = _observation_status(obs, where, problems, panel_status)
    if (
        obs.subject is not None
        and report_subject is not None
        and obs.subject.reference != report_subject.reference
    ):
        problems.add("subject differs from its DiagnosticReport's subject.", f"{where}.subject")
    out: list[tuple[dict[str, Any], ResultSource]] = []
    components = list(obs.component or [])
    if _has_value(obs) or not components:
        analyte = _analyte_code(obs)
        if analyte is None:
            problems.add("code needs a LOINC coding.", f"{where}.code", code="required")
        valued = _valued(obs, analyte, index, "", problems, catalog, status)
        if valued is not None:
            out.append(valued)
    for position, component in enumerate(components):
        path = f".component[{position}]"
        if component.dataAbsentReason is not None and not _has_value(component):
            notes.setdefault(index, []).append(
                _absent_note(component.dataAbsentReason, where + path)
            )
            continue
        code = _component_analyte(component, f"{where}{path}", problems, catalog)
        if code is None:
            continue
        valued = _valued(component, code, index, path, problems, catalog, status)
        if valued is not None:
            out.append(valued)
    return out


def _has_value(element: Any) -> bool:
    return element.valueQuantity is not None or element.valueString is not None


def _absent_note(reason: CodeableConcept, where: str) -> Issue:
    code = next((str(c.code) for c in reason.coding or [] if c.code), None) or str(
        reason.text or "unknown"
    )
    return Issue(
        f"Not stored: this result has no value (dataAbsentReason {code!r}); the other results "
        "of the report were stored. A result without a value is not kept or interpreted.",
        "informational",
        "warning",
        (f"{where}.dataAbsentReason",),
    )


def _component_analyte(
    component: Any, where: str, problems: Outcomes, catalog: Catalog
) -> str | None:
    """A component's code as an analyte of the catalog (a LOINC code or a lab's name)."""
    codings = [c for c in (component.code.coding if component.code else None) or [] if c.code]
    candidates = [str(c.code) for c in codings if c.system == LOINC]
    candidates += [str(c.code) for c in codings if c.system != LOINC]
    if component.code is not None and component.code.text:
        candidates.append(str(component.code.text))
    for candidate in candidates:
        try:
            catalog.resolve(candidate)
        except DomainError:
            continue
        return candidate
    known = ", ".join(
        f"{a.code} (LOINC {' or '.join(c.code for c in a.loinc_codes)})" for a in catalog.all()
    )
    sent = ", ".join(candidates) or "no code"
    problems.add(
        f"component code {sent} is not an analyte this service stores; each component of a "
        f"panel Observation must be one of: {known}.",
        f"{where}.code",
    )
    return None


def _valued(
    element: Any,
    analyte: str | None,
    index: int,
    path: str,
    problems: Outcomes,
    catalog: Catalog,
    status: str | None,
) -> tuple[dict[str, Any], ResultSource] | None:
    """One native result from an Observation or a component (``path``: where it is)."""
    where = f"Bundle.entry[{index}].resource{path}"
    if element.valueQuantity is not None and element.valueQuantity.value is not None:
        value, unit, value_path, unit_path = _quantity_value(element.valueQuantity, where, problems)
    elif element.valueString is not None:
        parsed = _string_value(element, where, problems)
        if parsed is None:
            return None
        value, unit, value_path, unit_path = parsed
    else:
        problems.add(
            "A value is required: valueQuantity (value, UCUM code, optional comparator), "
            "valueString with a number ('0.62', '<0.5', '<0.5 mg/L'), component entries for "
            "a panel, or dataAbsentReason for a result without a value (not stored). A "
            "cancelled or entered-in-error Observation is stored with the value it withdraws.",
            f"{where}.valueQuantity",
            code="required",
        )
        return None
    result: dict[str, Any] = {"analyte": analyte or "", "value": value, "unit": unit}
    lab_range = _lab_range(element, analyte, unit, where, problems, catalog)
    if lab_range:
        result["reference_range"] = lab_range
    flag = _lab_flag(element)
    if flag:
        result["flag"] = flag
    if status is not None:
        result["status"] = status
    return result, ResultSource(index, path, value_path, unit_path)


def _quantity_value(quantity: Any, where: str, problems: Outcomes) -> tuple[str, str, str, str]:
    unit = quantity.code or quantity.unit
    if quantity.system is not None and quantity.system != UCUM:
        problems.add(f"valueQuantity.system must be {UCUM}.", f"{where}.valueQuantity.system")
    if not unit:
        problems.add(
            "valueQuantity.code (UCUM) is required.", f"{where}.valueQuantity.code", code="required"
        )
    comparator = str(quantity.comparator) if quantity.comparator else ""
    return (
        comparator + _decimal_text(Decimal(quantity.value)),
        str(unit or ""),
        ".valueQuantity.value",
        ".valueQuantity.code",
    )


# "<0.5", "0.62", "< 0.5 mg/L": a comparator, a number and optionally a unit after a space.
_STRING_VALUE = re.compile(
    r"^\s*(?P<number>(?:<=|>=|<|>|\u2264|\u2265)?\s*[^\s<>=]+)(?:\s+(?P<unit>\S+))?\s*$"
)


def _string_value(element: Any, where: str, problems: Outcomes) -> tuple[str, str, str, str] | None:
    """valueString as a number (parsed like a native value: app.domain.values): its unit
    follows the number after a space, else is the unit of referenceRange[0].low / high."""
    text = str(element.valueString)
    match = _STRING_VALUE.match(text)
    number = match.group("number").replace(" ", "") if match else text
    try:
        parse_result_value(number)
    except DomainError as exc:
        problems.add(
            f"valueString {text[:64]!r} is not a numeric result ({exc}); send a number, "
            "optionally with a comparator and a UCUM unit ('0.62', '<0.5', '<0.5 mg/L'), or "
            "valueQuantity.",
            f"{where}.valueString",
            code="value",
        )
        return None
    unit = match.group("unit") if match else None
    if unit:
        return number, unit, ".valueString", ".valueString"
    for position, lab in enumerate(element.referenceRange or []):
        for name in ("low", "high"):
            bound = getattr(lab, name)
            if bound is not None and (bound.code or bound.unit):
                return (
                    number,
                    str(bound.code or bound.unit),
                    ".valueString",
                    f".referenceRange[{position}].{name}.code",
                )
    problems.add(
        f"valueString {text[:64]!r} has no unit: write it after the number ('<0.5 mg/L'), "
        "give referenceRange.low/high with a UCUM code, or send valueQuantity.",
        f"{where}.valueString",
        code="required",
    )
    return None


def _lab_range(
    element: Any,
    analyte: str | None,
    unit: str,
    where: str,
    problems: Outcomes,
    catalog: Catalog,
) -> dict[str, Any]:
    """The lab's range (referenceRange[0]) in the unit of the value: a bound in another unit
    of the analyte is converted (app.domain.units.convert)."""
    ranges = element.referenceRange or []
    if not ranges:
        return {}
    lab = ranges[0]
    out: dict[str, Any] = {}
    for name in ("low", "high"):
        quantity = getattr(lab, name)
        if quantity is None or quantity.value is None:
            continue
        value = Decimal(quantity.value)
        bound_unit = quantity.code or quantity.unit
        if bound_unit and bound_unit != unit:
            converted = _converted(value, analyte, str(bound_unit), unit, catalog)
            if converted is None:
                problems.add(
                    f"referenceRange.{name} is in {bound_unit}, which cannot be converted to "
                    f"the value's unit ({unit}) for this analyte; send it in {unit} or another "
                    "unit the analyte accepts.",
                    f"{where}.referenceRange[0].{name}.code",
                )
                continue
            value = converted
        out[name] = value
    if lab.text:
        out["text"] = str(lab.text)
    return out


def _converted(
    value: Decimal, analyte: str | None, from_unit: str, to_unit: str, catalog: Catalog
) -> Decimal | None:
    if analyte is None:
        return None
    try:
        found = catalog.resolve(analyte)
        return units.convert(
            value,
            analyte=found,
            from_unit=catalog.normalize_unit_for(found, from_unit),
            to_unit=catalog.normalize_unit_for(found, to_unit),
        )
    except DomainError:
        return None


def _lab_flag(element: Any) -> str | None:
    for concept in element.interpretation or []:
        for coding in concept.coding or []:
            if coding.code:
                return str(coding.code)[:10]
    return None
