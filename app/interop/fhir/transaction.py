"""Process a transaction or batch Bundle through the native services.

Patients go through ``app.patients.service.create`` (after the ifNoneExist search), panels
through ``app.panels.service.ingest(..., source_format="fhir")``: the one ingestion path, with
its validation, unit conversion, interpretation and (organization, source, accession) dedupe.

* transaction: all or nothing. Any failing entry raises; the request's transaction rolls back
  and the caller gets one OperationOutcome naming every problem found.
* batch: each unit of work (a Patient; a DiagnosticReport with its Observations) runs in its
  own SAVEPOINT, so a failure undoes only that unit and is answered in its entries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NoReturn

from fhir.resources.R4B.bundle import Bundle
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AppError
from app.interop.fhir import repository
from app.interop.fhir.inbound import ParsedBundle, PatientUnit, ReportUnit
from app.interop.fhir.outcome import (
    FhirError,
    Issue,
    issues_for_app_error,
    operation_outcome,
    outcome_of,
)
from app.panels import service as panels
from app.panels.schemas import PatientRef
from app.patients import service as patients


@dataclass(frozen=True)
class Touched:
    """A record the Bundle created or found: one audit row each."""

    resource_type: str
    resource_id: uuid.UUID
    patient_id: uuid.UUID
    created: bool


@dataclass
class _Entry:
    status: int
    location: str | None = None
    issues: list[Issue] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": f"{self.status} {HTTPStatus(self.status).phrase}"}
        if self.location:
            body["location"] = self.location
        if self.issues:
            body["outcome"] = operation_outcome(self.issues)
        return body


@dataclass
class BundleOutcome:
    response: Bundle
    touched: list[Touched]


def _failure(exc: FhirError) -> _Entry:
    return _Entry(status=exc.status, issues=list(exc.issues))


async def process_bundle(
    session: AsyncSession, *, organization_id: uuid.UUID, parsed: ParsedBundle
) -> BundleOutcome:
    transaction = parsed.kind == "transaction"
    if transaction and parsed.failures:
        first = min(parsed.failures)
        issues = [i for k in sorted(parsed.failures) for i in parsed.failures[k].issues]
        raise FhirError(parsed.failures[first].status, _distinct(issues))
    entries: dict[int, _Entry] = {k: _failure(v) for k, v in parsed.failures.items()}
    touched: list[Touched] = []
    patient_ids: dict[str, uuid.UUID] = {}  # fullUrl -> stored patient

    for unit in parsed.patients:
        try:
            if transaction:
                status, patient_id = await _apply_patient(session, organization_id, unit)
            else:
                async with session.begin_nested():
                    status, patient_id = await _apply_patient(session, organization_id, unit)
        except (AppError, DBAPIError) as exc:
            failure = _at_patient(exc, unit)
            if transaction:
                _reraise(failure, exc)
            entries[unit.index] = _failure(failure)
            continue
        if unit.full_url:
            patient_ids[unit.full_url] = patient_id
        entries[unit.index] = _Entry(status=status, location=f"Patient/{patient_id}")
        touched.append(Touched("patient", patient_id, patient_id, status == 201))

    for report in parsed.reports:
        try:
            if transaction:
                outcome = await _apply_report(session, organization_id, report, patient_ids)
            else:
                async with session.begin_nested():
                    outcome = await _apply_report(session, organization_id, report, patient_ids)
        except (AppError, DBAPIError) as exc:
            failure = _at_report(exc, report)
            if transaction:
                _reraise(failure, exc)
            for index in (report.index, *report.observation_indexes):
                entries[index] = _failure(failure)
            continue
        panel = outcome.panel
        status = 201 if outcome.created else 200
        entries[report.index] = _Entry(status=status, location=f"DiagnosticReport/{panel.id}")
        for index, result in zip(report.observation_indexes, panel.results, strict=True):
            entries[index] = _Entry(status=status, location=f"Observation/{result.id}")
        touched.append(Touched("panel", panel.id, panel.patient_id, outcome.created))

    response = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": f"{parsed.kind}-response",
            "entry": [{"response": entries[i].response()} for i in range(parsed.size)],
        }
    )
    return BundleOutcome(response=response, touched=touched)


def _reraise(failure: FhirError, cause: Exception) -> NoReturn:
    if failure is cause:
        raise failure
    raise failure from cause


def _distinct(issues: list[Issue]) -> list[Issue]:
    return list(dict.fromkeys(issues))


async def _apply_patient(
    session: AsyncSession, organization_id: uuid.UUID, unit: PatientUnit
) -> tuple[int, uuid.UUID]:
    """Conditional create (FHIR semantics): no match creates (201), one match is returned
    (200), more than one is refused (412)."""
    if unit.if_none_exist is None:
        patient = await patients.create(session, organization_id=organization_id, data=unit.data)
        return 201, patient.id
    match = await _conditional_match(session, organization_id, unit)
    if match is not None:
        return 200, match
    try:
        patient = await patients.create(session, organization_id=organization_id, data=unit.data)
    except patients.IdentifierInUseError:
        # A concurrent request created the patient between our search and our create (its
        # insert won the unique key): the condition now matches it, as a retry would find.
        match = await _conditional_match(session, organization_id, unit)
        if match is None:
            raise
        return 200, match
    return 201, patient.id


async def _conditional_match(
    session: AsyncSession, organization_id: uuid.UUID, unit: PatientUnit
) -> uuid.UUID | None:
    """The one patient `ifNoneExist` names, None for no match; 412 for several."""
    token = unit.if_none_exist
    assert token is not None
    # `|value` asks for identifiers without a system; every identifier here has one.
    if token.system == "":
        return None
    matches = await repository.patient_ids_by_identifier(
        session,
        organization_id=organization_id,
        system=token.system,
        value=token.value,
        limit=2,
    )
    if len(matches) > 1:
        raise FhirError(
            412,
            [
                Issue(
                    "ifNoneExist matches more than one patient; make the criterion "
                    "specific (system|value).",
                    "multiple-matches",
                    "error",
                    (f"Bundle.entry[{unit.index}].request.ifNoneExist",),
                )
            ],
        )
    return matches[0] if matches else None


async def _apply_report(
    session: AsyncSession,
    organization_id: uuid.UUID,
    unit: ReportUnit,
    patient_ids: dict[str, uuid.UUID],
) -> panels.IngestOutcome:
    if unit.subject_entry is not None:
        patient_id = patient_ids.get(unit.subject_entry)
        if patient_id is None:
            raise FhirError(
                422,
                [
                    Issue(
                        "The Patient entry this report's subject references was not stored.",
                        "processing",
                        "error",
                        (f"Bundle.entry[{unit.index}].resource.subject",),
                    )
                ],
            )
        patient = PatientRef(id=patient_id)
    else:
        assert unit.subject is not None
        patient = unit.subject
    return await panels.ingest(
        session, organization_id=organization_id, data=unit.panel(patient), source_format="fhir"
    )


def _as_issues(exc: AppError | DBAPIError) -> tuple[int, list[Issue]]:
    if isinstance(exc, AppError):
        return exc.status, issues_for_app_error(exc)
    status, issues, _ = outcome_of(exc)
    return status, issues


def _at_patient(exc: AppError | DBAPIError, unit: PatientUnit) -> FhirError:
    if isinstance(exc, FhirError):
        return exc
    status, issues = _as_issues(exc)
    where = f"Bundle.entry[{unit.index}].resource"
    if status == 409:
        where += ".identifier"
    return FhirError(status, [_with_expression(i, where) for i in issues])


def _at_report(exc: AppError | DBAPIError, unit: ReportUnit) -> FhirError:
    if isinstance(exc, FhirError):
        return exc
    status, issues = _as_issues(exc)
    return FhirError(
        status,
        [
            Issue(
                diagnostics=i.diagnostics,
                code=i.code,
                severity=i.severity,
                expression=tuple(unit.expression_for(e) for e in i.expression)
                or (unit.expression_for(""),),
            )
            for i in issues
        ],
    )


def _with_expression(issue: Issue, where: str) -> Issue:
    return Issue(issue.diagnostics, issue.code, issue.severity, issue.expression or (where,))
