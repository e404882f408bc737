"""The Bundle itself: JSON, type, and each entry's request; then one unit per entry.

Each entry gives a unit (``PatientUnit`` / ``ReportUnit``) or a ``FhirError`` whose issues name
their FHIRPath; a report and the Observations it references succeed or fail together."""

from __future__ import annotations

import json
from decimal import Decimal

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from app.domain.catalog import Catalog
from app.interop.fhir.inbound.patient import patient_unit
from app.interop.fhir.inbound.report import report_unit
from app.interop.fhir.inbound.units import (
    BundleIndex,
    ParsedBundle,
    PatientUnit,
    ReportUnit,
    entry_error,
)
from app.interop.fhir.outcome import FhirError, Issue, Outcomes

SUPPORTED = ("Patient", "DiagnosticReport", "Observation")


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
    failures, by_url = _check_entries(entries)
    index = BundleIndex(bundle, entries, [entry.resource for entry in entries], by_url)
    owner, conflicts = _owners(index, failures)
    failures.update(conflicts)
    parsed = ParsedBundle(kind=kind, size=len(entries), failures=failures)
    for position, resource in enumerate(index.resources):
        if position in failures:
            continue
        unit = _unit(position, resource, index, position in owner, catalog)
        if isinstance(unit, FhirError):
            failures[position] = unit
        elif isinstance(unit, PatientUnit):
            parsed.patients.append(unit)
        elif isinstance(unit, ReportUnit):
            parsed.reports.append(unit)
    _together(parsed, owner)
    return parsed


def _owners(
    index: BundleIndex, failures: dict[int, FhirError]
) -> tuple[dict[int, int], dict[int, FhirError]]:
    """Observation entry -> the DiagnosticReport entry listing it; and the reports that list an
    Observation another report already lists (the last such conflict names the report)."""
    owner: dict[int, int] = {}
    conflicts: dict[int, FhirError] = {}
    for position, resource in enumerate(index.resources):
        if position in failures or not isinstance(resource, DiagnosticReport):
            continue
        for ref in resource.result or []:
            target = index.resolve(str(ref.reference or ""))
            if target is None or not isinstance(index.resources[target], Observation):
                continue
            if owner.setdefault(target, position) != position:
                conflicts[position] = entry_error(
                    position, "result", f"entry[{target}] is a result of entry[{owner[target]}]"
                )
    return owner, conflicts


def _unit(
    position: int,
    resource: Resource | None,
    index: BundleIndex,
    owned: bool,
    catalog: Catalog,
) -> PatientUnit | ReportUnit | FhirError | None:
    """One entry's unit of work, or its error; None for an Observation a report lists (it is
    part of that report's unit)."""
    try:
        if isinstance(resource, FhirPatient):
            return patient_unit(position, index.entries[position], resource)
        if isinstance(resource, DiagnosticReport):
            return report_unit(position, resource, index, catalog)
    except FhirError as exc:
        return exc
    if isinstance(resource, Observation) and not owned:
        return entry_error(
            position,
            "",
            "An Observation is stored as a result of a DiagnosticReport: reference it "
            "from a DiagnosticReport.result in this Bundle.",
        )
    return None


def _together(parsed: ParsedBundle, owner: dict[int, int]) -> None:
    """A report and its Observations are stored together or not at all: a failed Observation
    fails its report (with the Observation's issues), a failed report each of its Observations."""
    failures = parsed.failures
    for unit in list(parsed.reports):
        failed = next((i for i in unit.observation_indexes if i in failures), None)
        if failed is not None:
            failures[unit.index] = failures[failed]
            parsed.reports.remove(unit)
    for obs_index, report_index in owner.items():
        if report_index in failures:
            failures[obs_index] = failures[report_index]


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


def _check_entries(entries: list[BundleEntry]) -> tuple[dict[int, FhirError], dict[str, int]]:
    """Each entry's resource type and request, by entry index; and the entry each fullUrl
    names (an entry that fails here still names its fullUrl, so references to it resolve)."""
    failures: dict[int, FhirError] = {}
    by_url: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        problems = Outcomes()
        _check_resource(entry, where, problems)
        _check_request(entry, where, problems)
        if entry.fullUrl:
            if entry.fullUrl in by_url:
                problems.add("fullUrl is used by two entries.", f"{where}.fullUrl")
            by_url[str(entry.fullUrl)] = index
        if problems.issues:
            status = 400 if any(i.code != "not-supported" for i in problems.issues) else 422
            failures[index] = FhirError(status, problems.issues)
    return failures, by_url


def _check_resource(entry: BundleEntry, where: str, problems: Outcomes) -> None:
    if entry.resource is None:
        problems.add("Each entry needs a resource.", f"{where}.resource", code="required")
    elif entry.resource.get_resource_type() not in SUPPORTED:
        problems.add(
            f"{entry.resource.get_resource_type()} entries are not supported; "
            f"send {', '.join(SUPPORTED)}.",
            f"{where}.resource",
            code="not-supported",
        )


def _check_request(entry: BundleEntry, where: str, problems: Outcomes) -> None:
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
