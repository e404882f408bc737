"""FHIR R4 endpoints under /fhir/R4 (application/fhir+json; errors as OperationOutcome)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Security
from starlette.responses import Response

from app.audit import service as audit
from app.audit.context import audit_target, audited
from app.auth.deps import CanReadPanels, CanReadPatients, CanReadPlans, CanReadRanges, require
from app.auth.principal import Principal, Scope
from app.deps import ReadSession, WriteSession
from app.domain.catalog import default_catalog
from app.errors import NotFoundError
from app.interop.fhir import outbound, repository
from app.interop.fhir.capability import capability_statement
from app.interop.fhir.careplan import care_plan_resource
from app.interop.fhir.inbound import parse_bundle, parse_token
from app.interop.fhir.outcome import FhirError, FhirRoute, Issue, fhir_response
from app.interop.fhir.search import analyte_codes, bad_parameter, date_bounds, reference_id
from app.interop.fhir.transaction import Touched, process_bundle
from app.models.plan import PLAN_STATUSES
from app.pagination import decode_cursor, encode_cursor
from app.patients import service as patients
from app.plans import repository as plan_repository
from app.ranges import service as ranges

# Not in the OpenAPI document: FHIR clients discover the server through /metadata, and every
# error here is an OperationOutcome, not the problem+json the OpenAPI document promises.
router = APIRouter(prefix="/fhir/R4", tags=["fhir"], route_class=FhirRoute, include_in_schema=False)

CanWriteBundles = Annotated[Principal, Security(require(Scope.PANELS_WRITE, Scope.PATIENTS_WRITE))]
Count = Annotated[
    int, Query(alias="_count", ge=1, le=200, description="Page size (1-200, default 50).")
]
PageCursor = Annotated[
    str | None,
    Query(alias="_cursor", max_length=200, description="Opaque; taken from a `next` link."),
]
_ACCEPTED_BODY_TYPES = ("application/fhir+json", "application/json")


def _fhir_id(value: str, message: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundError(message) from None


def _full_url(request: Request, path: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/fhir/R4/{path}"


def _next_url(request: Request, cursor: str | None) -> str | None:
    return None if cursor is None else str(request.url.include_query_params(_cursor=cursor))


@router.get("/metadata", summary="FHIR CapabilityStatement")
async def metadata(request: Request) -> Response:
    """What this FHIR server implements (public, no credentials needed)."""
    return fhir_response(capability_statement(_full_url(request, "").rstrip("/")))


@router.post(
    "",
    summary="Process a FHIR transaction or batch Bundle",
    dependencies=[Depends(audited("create", "bundle"))],
)
async def post_bundle(
    request: Request, session: WriteSession, principal: CanWriteBundles
) -> Response:
    """Stores Patient, DiagnosticReport and Observation entries (POST only).

    * `urn:uuid:` references between entries are resolved; a DiagnosticReport's subject may
      also be `Patient/<id>`, `Patient?identifier=system|value` or a logical identifier.
    * A Patient with `request.ifNoneExist: identifier=system|value` is created when nothing
      matches (201), returned when one patient matches (200), refused with 412 when several do.
    * A DiagnosticReport and the Observations in its `result` become one panel, through the
      same validation, unit conversion, interpretation and dedupe as `POST /api/v1/panels`.
      Its identifier (else the Bundle's; `meta.source` may name the system) is the panel's
      source + accession: re-sending the Bundle stores nothing new (200 entries).
    * `transaction`: all or nothing; any problem answers one OperationOutcome and nothing is
      stored. `batch`: each Patient, and each report with its Observations, succeeds or fails
      on its own; failures are answered in their entries' `response.outcome`.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _ACCEPTED_BODY_TYPES:
        raise FhirError(415, [Issue("Send the Bundle as application/fhir+json.", "not-supported")])
    parsed = parse_bundle(await request.body(), default_catalog())
    outcome = await process_bundle(
        session, organization_id=principal.organization_id, parsed=parsed
    )
    touched_patients = {t.patient_id for t in outcome.touched}
    audit_target(request, patient_id=touched_patients.pop() if len(touched_patients) == 1 else None)
    await _audit_touched(session, request, principal, outcome.touched)
    return fhir_response(outcome.response)


async def _audit_touched(
    session: WriteSession, request: Request, principal: Principal, touched: list[Touched]
) -> None:
    """One audit row per record a Bundle created or found, besides the request's own row."""
    client = request.client
    await audit.append(
        session,
        [
            audit.AuditEntry(
                organization_id=principal.organization_id,
                principal_id=principal.id,
                principal_kind=principal.kind,
                role=str(principal.role),
                action="create" if t.created else "read",
                resource_type=t.resource_type,
                resource_id=str(t.resource_id),
                patient_id=t.patient_id,
                outcome="success",
                status_code=201 if t.created else 200,
                method=request.method,
                path=request.url.path,
                request_id=getattr(request.state, "request_id", None),
                client_address=client.host if client else None,
            )
            for t in touched
        ],
    )


# --- Patient --------------------------------------------------------------------------------


@router.get(
    "/Patient/{patient_id}",
    summary="Read a Patient",
    dependencies=[Depends(audited("read", "patient"))],
)
async def read_patient(
    patient_id: str, request: Request, session: WriteSession, principal: CanReadPatients
) -> Response:
    """The patient with its identifiers, gender and birth date; 404 outside your organization."""
    audit_target(request, resource_id=patient_id[:100])
    patient = await patients.get_or_raise(
        session,
        organization_id=principal.organization_id,
        patient_id=_fhir_id(patient_id, "No patient with this id."),
    )
    audit_target(request, patient_id=patient.id)
    return fhir_response(outbound.patient_resource(patient))


@router.get(
    "/Patient",
    summary="Search Patients",
    dependencies=[Depends(audited("search", "patient"))],
)
async def search_patients(
    request: Request,
    session: WriteSession,
    principal: CanReadPatients,
    identifier: Annotated[str | None, Query(max_length=512)] = None,
    count: Count = 50,
    cursor: PageCursor = None,
) -> Response:
    """Patients by `identifier` (`system|value`, `system|` or `value`), newest first."""
    token = parse_token(identifier) if identifier is not None else None
    rows, total = await repository.search_patients(
        session,
        organization_id=principal.organization_id,
        identifier=(token.system, token.value) if token else None,
        limit=count + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    page = list(rows[:count])
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > count else None
    if len(page) == 1:
        audit_target(request, patient_id=page[0].id)
    bundle = outbound.searchset(
        [(_full_url(request, f"Patient/{p.id}"), outbound.patient_resource(p)) for p in page],
        total=total,
        self_url=str(request.url),
        next_url=_next_url(request, next_cursor),
    )
    return fhir_response(bundle)


# --- Observation ----------------------------------------------------------------------------


@router.get(
    "/Observation/{observation_id}",
    summary="Read an Observation",
    dependencies=[Depends(audited("read", "observation"))],
)
async def read_observation(
    observation_id: str, request: Request, session: WriteSession, principal: CanReadPanels
) -> Response:
    """One result: canonical value, the value as sent, our and the lab's interpretation and
    reference range."""
    audit_target(request, resource_id=observation_id[:100])
    row = await repository.get_observation(
        session,
        organization_id=principal.organization_id,
        result_id=_fhir_id(observation_id, "No Observation with this id."),
    )
    if row is None:
        raise NotFoundError("No Observation with this id.")
    audit_target(request, patient_id=row.result.patient_id)
    return fhir_response(
        outbound.observation_resource(
            row.result, status=row.status, specimen=row.specimen, catalog=default_catalog()
        )
    )


@router.get(
    "/Observation",
    summary="Search Observations",
    dependencies=[Depends(audited("search", "observation"))],
)
async def search_observations(
    request: Request,
    session: WriteSession,
    principal: CanReadPanels,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    code: Annotated[str | None, Query(max_length=1000)] = None,
    date: Annotated[list[str] | None, Query(max_length=10)] = None,
    count: Count = 50,
    cursor: PageCursor = None,
) -> Response:
    """Results by `patient`, `code` (LOINC, comma-separated) and `date` (collection time with
    eq/ge/gt/le/lt prefixes; repeat to AND), newest first, `_count` per page with a `next`
    link (keyset paging: no result is skipped or repeated while new ones arrive)."""
    catalog = default_catalog()
    patient_id = reference_id("patient", patient, "Patient") if patient else None
    starts, ends = date_bounds("date", date or [])
    where = repository.ObservationFilter(
        patient_id=patient_id,
        analytes=analyte_codes(code, catalog) if code is not None else None,
        starts=starts,
        ends=ends,
    )
    if patient_id is not None:
        audit_target(request, patient_id=patient_id)
    rows, total = await repository.search_observations(
        session,
        organization_id=principal.organization_id,
        where=where,
        limit=count + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    page = rows[:count]
    next_cursor = (
        encode_cursor(page[-1].result.collected_at, page[-1].result.id)
        if len(rows) > count
        else None
    )
    bundle = outbound.searchset(
        [
            (
                _full_url(request, f"Observation/{row.result.id}"),
                outbound.observation_resource(
                    row.result, status=row.status, specimen=row.specimen, catalog=catalog
                ),
            )
            for row in page
        ],
        total=total,
        self_url=str(request.url),
        next_url=_next_url(request, next_cursor),
    )
    return fhir_response(bundle)


# --- DiagnosticReport -----------------------------------------------------------------------


@router.get(
    "/DiagnosticReport/{report_id}",
    summary="Read a DiagnosticReport",
    dependencies=[Depends(audited("read", "panel"))],
)
async def read_report(
    report_id: str, request: Request, session: WriteSession, principal: CanReadPanels
) -> Response:
    """A panel, with `result` references to its Observations."""
    audit_target(request, resource_id=report_id[:100])
    panel = await repository.get_report(
        session,
        organization_id=principal.organization_id,
        panel_id=_fhir_id(report_id, "No DiagnosticReport with this id."),
    )
    if panel is None:
        raise NotFoundError("No DiagnosticReport with this id.")
    audit_target(request, patient_id=panel.patient_id)
    return fhir_response(outbound.diagnostic_report_resource(panel, panel.results))


@router.get(
    "/DiagnosticReport",
    summary="Search DiagnosticReports",
    dependencies=[Depends(audited("search", "panel"))],
)
async def search_reports(
    request: Request,
    session: WriteSession,
    principal: CanReadPanels,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    count: Count = 50,
    cursor: PageCursor = None,
) -> Response:
    """Panels by `patient`, newest collection first."""
    patient_id = reference_id("patient", patient, "Patient") if patient else None
    if patient_id is not None:
        audit_target(request, patient_id=patient_id)
    panels, total = await repository.search_reports(
        session,
        organization_id=principal.organization_id,
        patient_id=patient_id,
        limit=count + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    page = list(panels[:count])
    next_cursor = encode_cursor(page[-1].collected_at, page[-1].id) if len(panels) > count else None
    bundle = outbound.searchset(
        [
            (
                _full_url(request, f"DiagnosticReport/{p.id}"),
                outbound.diagnostic_report_resource(p, p.results),
            )
            for p in page
        ],
        total=total,
        self_url=str(request.url),
        next_url=_next_url(request, next_cursor),
    )
    return fhir_response(bundle)


# --- CarePlan -------------------------------------------------------------------------------

_PLAN_STATUSES = frozenset(PLAN_STATUSES)


@router.get(
    "/CarePlan/{plan_id}",
    summary="Read a CarePlan",
    dependencies=[Depends(audited("read", "plan"))],
)
async def read_care_plan(
    plan_id: str, request: Request, session: WriteSession, principal: CanReadPlans
) -> Response:
    """A treatment plan, one activity per plan item."""
    audit_target(request, resource_id=plan_id[:100])
    plan = await plan_repository.get(
        session,
        organization_id=principal.organization_id,
        plan_id=_fhir_id(plan_id, "No CarePlan with this id."),
    )
    if plan is None:
        raise NotFoundError("No CarePlan with this id.")
    audit_target(request, patient_id=plan.patient_id)
    return fhir_response(care_plan_resource(plan))


@router.get(
    "/CarePlan",
    summary="Search CarePlans",
    dependencies=[Depends(audited("search", "plan"))],
)
async def search_care_plans(
    request: Request,
    session: WriteSession,
    principal: CanReadPlans,
    patient: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=200)] = None,
    count: Count = 50,
    cursor: PageCursor = None,
) -> Response:
    """Plans by `patient` and `status` (comma-separated: any of), newest first."""
    patient_id = reference_id("patient", patient, "Patient") if patient else None
    if patient_id is not None:
        audit_target(request, patient_id=patient_id)
    statuses = [s.strip() for s in status.split(",")] if status else None
    unknown = sorted(set(statuses or ()) - _PLAN_STATUSES)
    if unknown:
        raise bad_parameter(
            "status", f"unknown status {unknown[0]!r}; use {', '.join(PLAN_STATUSES)}"
        )
    organization_id = principal.organization_id
    plans = await plan_repository.search(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        statuses=statuses,
        limit=count + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    total = await plan_repository.count(
        session, organization_id=organization_id, patient_id=patient_id, statuses=statuses
    )
    page = list(plans[:count])
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(plans) > count else None
    bundle = outbound.searchset(
        [(_full_url(request, f"CarePlan/{p.id}"), care_plan_resource(p)) for p in page],
        total=total,
        self_url=str(request.url),
        next_url=_next_url(request, next_cursor),
    )
    return fhir_response(bundle)


# --- ObservationDefinition ------------------------------------------------------------------


@router.get("/ObservationDefinition", summary="The active reference ranges")
async def search_observation_definitions(
    request: Request, session: ReadSession, principal: CanReadRanges
) -> Response:
    """One ObservationDefinition per analyte of the organization's active reference-range set,
    with `qualifiedInterval`s (reference / critical / absolute, by gender and age band in
    years, limits in the canonical UCUM unit). No patient data; not paged."""
    catalog = default_catalog()
    range_set = await ranges.active_compiled(
        session, organization_id=principal.organization_id, catalog=catalog
    )
    definitions = outbound.observation_definitions(range_set, catalog) if range_set else []
    bundle = outbound.searchset(
        [(None, d) for d in definitions],
        total=len(definitions),
        self_url=str(request.url),
        next_url=None,
    )
    return fhir_response(bundle)


# --- everything else ------------------------------------------------------------------------

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.api_route("/{path:path}", methods=_METHODS, include_in_schema=False)
async def not_supported(path: str, request: Request) -> Response:
    """Unknown resource types and interactions: 404 or 405 as an OperationOutcome."""
    allowed = [
        route
        for route in router.routes
        if isinstance(route, FhirRoute)
        and route.endpoint is not not_supported
        and route.path_regex.match(request.url.path)
    ]
    if allowed:
        methods = sorted({m for route in allowed for m in route.methods or ()})
        raise FhirError(
            405,
            [
                Issue(
                    f"{request.method} is not supported here (allowed: {', '.join(methods)}).",
                    "not-supported",
                )
            ],
        )
    raise FhirError(404, [Issue(f"{path!r} is not a supported FHIR endpoint.", "not-supported")])
