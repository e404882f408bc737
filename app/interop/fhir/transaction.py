"""Process a transaction or batch Bundle through the native services.

Patients go through ``app.patients.service.create`` (after the ifNoneExist search), panels
through ``app.panels.corrections.ingest_or_correct(..., source_format="fhir")``: the one
ingestion path, with its validation, unit conversion, interpretation and (organization, source,
accession) dedupe, where a report re-sent as a correction corrects the stored panel.

* transaction: all or nothing. Any failing entry raises; the request's transaction rolls back
  and the caller gets one OperationOutcome naming every problem found.
* batch: each unit of work (a Patient; a DiagnosticReport with its Observations) runs in its
  own SAVEPOINT, so a failure undoes only that unit and is answered in its entries; a large
  batch commits in chunks of units (``app.interop.chunks``).
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from http import HTTPStatus
from itertools import zip_longest
from typing import Any, NoReturn

from fhir.resources.R4B.bundle import Bundle
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError
from app.domain.patient_matching import TypedIdentifier
from app.interop.chunks import Chunks, unchunked
from app.interop.fhir.inbound import IdentifierToken, ParsedBundle, PatientUnit, ReportUnit
from app.interop.fhir.outcome import (
    FhirError,
    Issue,
    issues_for_app_error,
    operation_outcome,
    outcome_of,
)
from app.panels import corrections
from app.panels import service as panels
from app.panels.schemas import PanelCreate, PatientRef
from app.patients import matching
from app.patients import repository as patients_repository
from app.patients import service as patients


@dataclass(frozen=True)
class Touched:
    """A record the Bundle created or found: one audit row each."""

    resource_type: str
    resource_id: uuid.UUID
    patient_id: uuid.UUID
    created: bool
    updated: bool = False  # a stored panel corrected by the Bundle


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
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    parsed: ParsedBundle,
    chunks: Chunks[Touched] | None = None,
) -> BundleOutcome:
    """The Bundle's entries stored, unit by unit, and its response Bundle.

    With ``chunks``, a batch commits every ``chunks.size`` units (``app.interop.chunks``),
    each chunk with the audit rows ``chunks.keep`` writes for the records it touched; the
    records of the last chunk are left in ``chunks.pending`` for the caller's commit."""
    transaction = parsed.kind == "transaction"
    if transaction and parsed.failures:
        first = min(parsed.failures)
        issues = [i for k in sorted(parsed.failures) for i in parsed.failures[k].issues]
        raise FhirError(parsed.failures[first].status, _distinct(issues))
    entries: dict[int, _Entry] = {k: _failure(v) for k, v in parsed.failures.items()}
    touched: list[Touched] = []
    patient_ids: dict[str, uuid.UUID] = {}  # fullUrl -> stored patient
    # A transaction is all or nothing: never committed in chunks.
    units = chunks if chunks is not None and not transaction else unchunked(session)

    def touch(record: Touched) -> None:
        touched.append(record)
        units.add(record)

    for unit in parsed.patients:
        await units.start_unit()
        try:
            async with _unit_scope(session, transaction):
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
        touch(Touched("patient", patient_id, patient_id, status == 201))

    for report in parsed.reports:
        await units.start_unit()
        try:
            async with _unit_scope(session, transaction):
                outcome, sent = await _apply_report(session, organization_id, report, patient_ids)
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
        # After a correction the panel may also hold results this Bundle did not send.
        results = corrections.results_as_sent(panel, sent)
        stored: dict[int, list[uuid.UUID]] = {}
        for source, result in zip(report.sources, results, strict=True):
            stored.setdefault(source.entry, []).append(result.id)
        for index in report.observation_indexes:
            entries[index] = _observation_entry(
                status, stored.get(index, []), report.notes.get(index, [])
            )
        touch(Touched("panel", panel.id, panel.patient_id, outcome.created, outcome.corrected))

    response = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": f"{parsed.kind}-response",
            "entry": [{"response": entries[i].response()} for i in range(parsed.size)],
        }
    )
    return BundleOutcome(response=response, touched=touched)


def _observation_entry(status: int, ids: list[uuid.UUID], notes: list[Issue]) -> _Entry:
    """An Observation entry's response: the result it became (a component panel: its first
    component's, every one named in an information issue), or, for an Observation with
    dataAbsentReason, 200 without a location and a warning that nothing was stored."""
    if not ids:
        return _Entry(status=200, issues=notes)
    issues = list(notes)
    if len(ids) > 1:
        issues.insert(
            0,
            Issue(
                "Stored as one result per component: "
                + ", ".join(f"Observation/{i}" for i in ids)
                + ".",
                "informational",
                "information",
            ),
        )
    return _Entry(status=status, location=f"Observation/{ids[0]}", issues=issues)


def _unit_scope(session: AsyncSession, transaction: bool) -> AbstractAsyncContextManager[object]:
    """A batch unit runs in its own SAVEPOINT (a failure undoes only that unit); the units of
    a transaction share the request's transaction."""
    return nullcontext() if transaction else session.begin_nested()


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
    (200), more than one is refused (412).

    Only matching keys count (``app/data/patient_matching.yaml``): a new patient keeps only
    those identifiers (with their types), and a match whose recorded gender or birthDate
    contradicts the resource, or whose other identifiers name another patient, is 409."""
    try:
        claim = matching.claim_of(
            [
                TypedIdentifier(i.system, i.value, kind)
                for i, kind in zip_longest(unit.data.identifiers, unit.identifier_types)
                if i is not None
            ],
            sex=unit.data.sex,
            birth_date=unit.data.birth_date,
            channel="fhir",
            name=unit.data.name,
        )
        if not claim.keys:
            raise _no_key(unit)
        if unit.if_none_exist is None:
            return 201, (
                await matching.register(session, organization_id=organization_id, claim=claim)
            ).id
        match = await _conditional_match(session, organization_id, unit)
        if match is not None:
            return 200, await _matched(session, organization_id, claim, match)
        try:
            patient = await matching.register(session, organization_id=organization_id, claim=claim)
        except patients.IdentifierInUseError:
            # A concurrent request created the patient between our search and our create (its
            # insert won the unique key): the condition now matches it, as a retry would find.
            match = await _conditional_match(session, organization_id, unit)
            if match is None:
                raise
            return 200, await _matched(session, organization_id, claim, match)
        return 201, patient.id
    except matching.MatchError as exc:
        raise _match_refused(exc, unit) from exc


async def _matched(
    session: AsyncSession, organization_id: uuid.UUID, claim: matching.Claim, match: uuid.UUID
) -> uuid.UUID:
    """The patient ifNoneExist found, once the resource's own keys and demographics agree."""
    found = await matching.find(session, organization_id=organization_id, claim=claim, also=[match])
    assert found is not None
    return found.id


def _no_key(unit: PatientUnit) -> FhirError:
    return FhirError(
        422,
        [
            Issue(
                "No identifier can name this patient: identifiers of an excluded type (SS) or "
                "system, with a placeholder value, or of a type that is not a matching key "
                "(e.g. MR) are never used to match or register a patient.",
                "processing",
                "error",
                (f"Bundle.entry[{unit.index}].resource.identifier",),
            )
        ],
    )


def _match_refused(exc: matching.MatchError, unit: PatientUnit) -> FhirError:
    where = f"Bundle.entry[{unit.index}].resource"
    if isinstance(exc, matching.DemographicsConflictError):
        fields = {"sex": "gender", "birth_date": "birthDate"}
        return FhirError(
            409,
            [
                Issue(
                    f"Patient.{fields[name]} differs from the registered patient these "
                    "identifiers name; nothing was stored. Check that the identifier belongs to "
                    "this person.",
                    "conflict",
                    "error",
                    (f"{where}.{fields[name]}",),
                )
                for name in exc.fields
            ],
        )
    if isinstance(exc, matching.IdentifiersConflictError):
        return FhirError(
            409,
            [
                Issue(
                    "The Patient's identifiers (and ifNoneExist) name different registered "
                    "patients; nothing was stored.",
                    "conflict",
                    "error",
                    tuple(f"{where}.identifier[{p}]" for p in exc.positions)
                    or (f"{where}.identifier",),
                )
            ],
        )
    return _no_key(unit)


async def _conditional_match(
    session: AsyncSession, organization_id: uuid.UUID, unit: PatientUnit
) -> uuid.UUID | None:
    """The one patient the criteria (``ifNoneExist`` or ``PUT Patient?...``) name, None for no
    match; 412 for several. The criteria are ANDed: each identifier narrows the candidates,
    then birthdate and gender. Only matching keys are searched: never an excluded system or
    type, never a placeholder value."""
    conditions = unit.if_none_exist
    assert conditions is not None
    candidates: set[uuid.UUID] | None = None
    for token in conditions.identifiers:
        found = await _token_matches(session, organization_id, token, conditions.where)
        candidates = found if candidates is None else candidates & found
        if not candidates:
            return None
    matches = sorted(candidates or set())
    if conditions.birthdate is not None or conditions.gender is not None:
        kept = []
        for patient_id in matches:
            patient = await patients_repository.get_plain(
                session, organization_id=organization_id, patient_id=patient_id
            )
            if patient is None:
                continue
            if conditions.birthdate is not None and patient.birth_date != conditions.birthdate:
                continue
            if conditions.gender is not None and str(patient.sex) != conditions.gender:
                continue
            kept.append(patient_id)
        matches = kept
    if len(matches) > 1:
        raise FhirError(
            412,
            [
                Issue(
                    "The criterion matches more than one patient; make it specific "
                    "(system|value, or several parameters joined by '&').",
                    "multiple-matches",
                    "error",
                    (conditions.where,),
                )
            ],
        )
    return matches[0] if matches else None


async def _token_matches(
    session: AsyncSession, organization_id: uuid.UUID, token: IdentifierToken, where: str
) -> set[uuid.UUID]:
    """The patients one ``identifier`` criterion names (matching keys only)."""
    # `|value` asks for identifiers without a system; every identifier here has one.
    if token.system == "" or token.value is None:
        return set()
    policy = matching.current_policy()
    reason = policy.never_matches(TypedIdentifier(token.system or "", token.value))
    if reason is not None:
        raise FhirError(
            422,
            [
                Issue(
                    f"The criterion cannot name a patient: {reason}.",
                    "processing",
                    "error",
                    (where,),
                )
            ],
        )
    rows = await patients_repository.identifiers_with_value(
        session, organization_id=organization_id, system=token.system, value=token.value
    )
    return {
        patient_id
        for system, stored_type, patient_id in rows
        if system not in policy.excluded_systems and policy.stored_may_match(stored_type)
    }


async def _apply_report(
    session: AsyncSession,
    organization_id: uuid.UUID,
    unit: ReportUnit,
    patient_ids: dict[str, uuid.UUID],
) -> tuple[panels.IngestOutcome, PanelCreate]:
    """Store the report's panel, or apply it to the panel stored under its identifier as a
    correction (DiagnosticReport.status corrected / amended, final after preliminary, or
    Observations entered-in-error / cancelled / corrected / amended: the same correction path
    as the native API and HL7 v2, ``app.panels.corrections``)."""
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
    data = unit.panel(patient)
    outcome = await corrections.ingest_or_correct(
        session, organization_id=organization_id, data=data, source_format="fhir", via="FHIR"
    )
    return outcome, data


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
