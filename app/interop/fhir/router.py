"""FHIR R4 endpoints under /fhir/R4 (application/fhir+json; errors as OperationOutcome)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Security
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
from app.interop.fhir.search import analyte_codes, bad_parameter, date_bounds
from app.interop.fhir.search_params import (
    Search,
    as_uuids,
    check_format,
    is_strict,
    parse_search,
    reference_ids,
)
from app.interop.fhir.transaction import Touched, process_bundle
from app.models.plan import PLAN_STATUSES
from app.pagination import decode_cursor, encode_cursor
from app.patients import service as patients
from app.plans import repository as plan_repository
from app.ranges import service as ranges


# Not in the OpenAPI document: FHIR clients discover the server through /metadata, and every
# error here is an OperationOutcome, not the problem+json the OpenAPI document promises.
def _negotiate(request: Request) -> None:
    """JSON only: an Accept or `_format` asking for XML (or anything else) is a 406."""
    check_format(request.headers.get("accept"), request.query_params.getlist("_format"))


router = APIRouter(
    prefix="/fhir/R4",
    tags=["fhir"],
    route_class=FhirRoute,
    include_in_schema=False,
    dependencies=[Depends(_negotiate)],
)

CanWriteBundles = Annotated[Principal, Security(require(Scope.PANELS_WRITE, Scope.PATIENTS_WRITE))]
_ACCEPTED_BODY_TYPES = ("application/fhir+json", "application/json")


def _fhir_id(value: str, message: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundError(message) from None


def _etag(version: int) -> dict[str, str]:
    """FHIR's ETag for a read: the weak form of ``meta.versionId``."""
    return {"ETag": f'W/"{version}"'}


def _full_url(request: Request, path: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/fhir/R4/{path}"


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
    """Stores Patient, DiagnosticReport and Observation entries (POST; PUT Patient?...).

    * `urn:uuid:` references between entries are resolved; a DiagnosticReport's subject may
      also be `Patient/<id>`, `Patient?identifier=system|value` or a logical identifier.
    * A Patient with `request.ifNoneExist` is created when nothing matches (201), returned
      when one patient matches (200), refused with 412 when several do. The criteria:
      `identifier=[system|]value` (repeatable), optionally `birthdate=YYYY-MM-DD` and
      `gender`, joined by `&` and ANDed (every one must match).
    * Conditional update `PUT Patient?identifier=...` (same criteria): created when none
      matches (201), else the match is answered (200); its demographics are never overwritten
      (a contradicting gender or birthDate is 409). `PUT Observation` / `PUT DiagnosticReport`
      and updates by id are refused (422): results are created by POSTing a DiagnosticReport.
    * A DiagnosticReport and the Observations in its `result` become one panel, through the
      same validation, unit conversion, interpretation and dedupe as `POST /api/v1/panels`.
      Its identifier (else the Bundle's) is the panel's source (the identifier's system, else
      `meta.source` of the report or the Bundle, else `Bundle.identifier.system`, else
      `urn:mineral:fhir:unnamed-sender`: dedupe is per organization) + accession: re-sending
      the Bundle stores nothing new (200 entries). A report without any identifier is keyed
      by its natural key: that source + accession `<resource.id, else entry fullUrl>@<collection
      time in UTC, ISO 8601>`, so a re-send with the same id (or fullUrl) is a no-op.
    * Observation values: `valueQuantity` (with comparator), or `valueString` holding a number
      as the native API parses it (`0.62`, `<0.5`), its unit after a space (`<0.5 mg/L`) or
      else from `referenceRange[0].low/high`. A `component` panel Observation becomes one
      result per component (each component code must be an analyte we store). An Observation
      or component with `dataAbsentReason` and no value is NOT stored (a result needs a
      value): its entry answers 200 with a warning naming `...dataAbsentReason`, and the
      report's other results are stored. A `referenceRange` in another unit of the analyte is
      converted to the value's unit. Collection time: the report's `effectiveDateTime` /
      `effectivePeriod.start`, else the Observations' (`effectivePeriod.start` too), else
      `issued`.
    * `transaction`: all or nothing; any problem answers one OperationOutcome and nothing is
      stored. `batch`: each Patient, and each report with its Observations, succeeds or fails
      on its own; failures are answered in their entries' `response.outcome`. Every issue
      names the element (FHIRPath) and says what would be accepted.
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
                action="create" if t.created else "update" if t.updated else "read",
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
    return fhir_response(outbound.patient_resource(patient), headers=_etag(patient.version))


async def _search_items(request: Request) -> list[tuple[str, str]]:
    """The search parameters of a GET (query) or a POST ``_search`` (form body and query)."""
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise FhirError(
                415,
                [Issue("POST _search takes application/x-www-form-urlencoded.", "not-supported")],
            )
        body = (await request.body()).decode("utf-8", errors="replace")
        items += parse_qsl(body, keep_blank_values=True, max_num_fields=200)
    return items


async def _parse(request: Request, resource_type: str) -> Search:
    return parse_search(
        resource_type,
        await _search_items(request),
        strict=is_strict(request.headers.get("prefer")),
    )


def _ids(search: Search, name: str) -> tuple[uuid.UUID, ...] | None:
    """Logical ids from ``_id`` (None when not searched)."""
    if not search.has(name):
        return None
    return as_uuids(set(search.values(name)))


def _patient_ids(search: Search, request: Request) -> tuple[uuid.UUID, ...] | None:
    """Patients named by ``patient``, ``subject`` and ``patient._id`` (ANDed across them)."""
    chosen: set[uuid.UUID] | None = None
    base = _full_url(request, "").rstrip("/")
    for name in ("patient", "subject"):
        if search.has(name):
            named = set(as_uuids(reference_ids(name, search.values(name), "Patient", base)))
            chosen = named if chosen is None else chosen & named
    if search.has("patient._id"):
        named = set(as_uuids(set(search.values("patient._id"))))
        chosen = named if chosen is None else chosen & named
    return None if chosen is None else tuple(chosen)


def _tokens(search: Search, name: str, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    if not search.has(name):
        return None
    values = tuple(v.rpartition("|")[2] for v in search.values(name))
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise bad_parameter(name, f"unknown value {unknown[0]!r}; use {', '.join(allowed)}.")
    return values


def _audit_patients(request: Request, patient_ids: Sequence[uuid.UUID]) -> None:
    """One audit row per patient a search disclosed (a search of no result names none)."""
    audit_target(request, patient_ids=list(dict.fromkeys(patient_ids)))


def _bundle(
    request: Request,
    search: Search,
    *,
    matches: Sequence[tuple[str | None, Any]],
    total: int,
    next_cursor: str | None,
    included: Sequence[tuple[str, Any]] = (),
) -> Response:
    url = str(request.url)
    warnings = [
        f"search parameter {name!r} is not supported and was ignored" for name in search.ignored
    ]
    return fhir_response(
        outbound.searchset(
            matches,
            total=total,
            self_url=search.self_url(url),
            next_url=search.next_url(url, next_cursor),
            included=included,
            warnings=warnings,
        )
    )


async def _included_patients(
    session: WriteSession,
    request: Request,
    search: Search,
    organization_id: uuid.UUID,
    patient_ids: Sequence[uuid.UUID],
) -> list[tuple[str, Any]]:
    if not search.includes:
        return []
    found = await repository.patients_by_id(
        session, organization_id=organization_id, ids=sorted(set(patient_ids))
    )
    return [(_full_url(request, f"Patient/{p.id}"), outbound.patient_resource(p)) for p in found]


_GENDERS = ("male", "female", "other", "unknown")
_OBSERVATION_STATUSES = (
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
)
_REPORT_STATUSES = ("preliminary", "final", "corrected", "amended", "cancelled")


@router.get(
    "/Patient",
    summary="Search Patients",
    dependencies=[Depends(audited("search", "patient"))],
)
@router.post(
    "/Patient/_search",
    summary="Search Patients (form body)",
    dependencies=[Depends(audited("search", "patient"))],
)
async def search_patients(
    request: Request, session: WriteSession, principal: CanReadPatients
) -> Response:
    """Patients by `_id`, `identifier` (`system|value`, `system|` or `value`), `gender` and
    `birthdate`, newest first."""
    search = await _parse(request, "Patient")
    identifier = search.raw("identifier")
    token = parse_token(identifier[0]) if identifier else None
    born_from, born_before = date_bounds("birthdate", search.raw("birthdate"))
    where = repository.PatientFilter(
        ids=_ids(search, "_id"),
        identifier=(token.system, token.value) if token else None,
        sexes=_tokens(search, "gender", _GENDERS),
        born_from=tuple(moment.date() for moment in born_from),
        born_before=tuple(_date_end(moment) for moment in born_before),
    )
    rows, total = await repository.search_patients(
        session,
        organization_id=principal.organization_id,
        where=where,
        limit=0 if search.count_only else search.count + 1,
        after=decode_cursor(search.cursor) if search.cursor else None,
    )
    page = list(rows[: search.count])
    next_cursor = (
        encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > search.count else None
    )
    _audit_patients(request, [p.id for p in page])
    return _bundle(
        request,
        search,
        matches=[
            (_full_url(request, f"Patient/{p.id}"), outbound.patient_resource(p)) for p in page
        ],
        total=total,
        next_cursor=next_cursor,
    )


def _date_end(moment: datetime) -> date:
    """The exclusive end date for a [start, end) bound on a date column."""
    day = moment.date()
    return day if moment.time() == datetime.min.time() else day + timedelta(days=1)


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
@router.post(
    "/Observation/_search",
    summary="Search Observations (form body)",
    dependencies=[Depends(audited("search", "observation"))],
)
async def search_observations(
    request: Request, session: WriteSession, principal: CanReadPanels
) -> Response:
    """Results by `_id`, `patient` / `subject` (any reference form) / `patient._id`, `code`
    (LOINC, ours or the code the lab sent; comma-separated), `date` (collection time with
    eq/ge/gt/le/lt prefixes; repeat to AND) and `status`; `_sort=date|-date` (default newest
    first), `_include=Observation:patient`, `_count` (0: the total only) with a `next` link
    (keyset paging: no result is skipped or repeated while new ones arrive)."""
    catalog = default_catalog()
    search = await _parse(request, "Observation")
    starts, ends = date_bounds("date", search.raw("date"))
    codes = search.values("code")
    where = repository.ObservationFilter(
        ids=_ids(search, "_id"),
        patient_ids=_patient_ids(search, request),
        analytes=analyte_codes(",".join(codes), catalog) if search.has("code") else None,
        codes_sent=tuple(code.rpartition("|")[2] for code in codes),
        statuses=_tokens(search, "status", _OBSERVATION_STATUSES),
        starts=starts,
        ends=ends,
        descending=search.descending,
    )
    rows, total = await repository.search_observations(
        session,
        organization_id=principal.organization_id,
        where=where,
        limit=0 if search.count_only else search.count + 1,
        after=decode_cursor(search.cursor) if search.cursor else None,
    )
    page = rows[: search.count]
    next_cursor = (
        encode_cursor(page[-1].result.collected_at, page[-1].result.id)
        if len(rows) > search.count
        else None
    )
    patient_ids = [row.result.patient_id for row in page]
    _audit_patients(request, patient_ids or list(where.patient_ids or ()))
    return _bundle(
        request,
        search,
        matches=[
            (
                _full_url(request, f"Observation/{row.result.id}"),
                outbound.observation_resource(
                    row.result, status=row.status, specimen=row.specimen, catalog=catalog
                ),
            )
            for row in page
        ],
        total=total,
        next_cursor=next_cursor,
        included=await _included_patients(
            session, request, search, principal.organization_id, patient_ids
        ),
    )


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
@router.post(
    "/DiagnosticReport/_search",
    summary="Search DiagnosticReports (form body)",
    dependencies=[Depends(audited("search", "panel"))],
)
async def search_reports(
    request: Request, session: WriteSession, principal: CanReadPanels
) -> Response:
    """Panels by `_id`, `patient` / `subject` / `patient._id`, `date` and `status`;
    `_sort=date|-date` (default newest first), `_include=DiagnosticReport:patient`, `_count`."""
    search = await _parse(request, "DiagnosticReport")
    starts, ends = date_bounds("date", search.raw("date"))
    where = repository.ReportFilter(
        ids=_ids(search, "_id"),
        patient_ids=_patient_ids(search, request),
        statuses=_tokens(search, "status", _REPORT_STATUSES),
        starts=starts,
        ends=ends,
        descending=search.descending,
    )
    panels, total = await repository.search_reports(
        session,
        organization_id=principal.organization_id,
        where=where,
        limit=0 if search.count_only else search.count + 1,
        after=decode_cursor(search.cursor) if search.cursor else None,
    )
    page = list(panels[: search.count])
    next_cursor = (
        encode_cursor(page[-1].collected_at, page[-1].id) if len(panels) > search.count else None
    )
    patient_ids = [p.patient_id for p in page]
    _audit_patients(request, patient_ids or list(where.patient_ids or ()))
    return _bundle(
        request,
        search,
        matches=[
            (
                _full_url(request, f"DiagnosticReport/{p.id}"),
                outbound.diagnostic_report_resource(p, p.results),
            )
            for p in page
        ],
        total=total,
        next_cursor=next_cursor,
        included=await _included_patients(
            session, request, search, principal.organization_id, patient_ids
        ),
    )


# --- CarePlan -------------------------------------------------------------------------------


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
    return fhir_response(care_plan_resource(plan), headers=_etag(plan.version))


@router.get(
    "/CarePlan",
    summary="Search CarePlans",
    dependencies=[Depends(audited("search", "plan"))],
)
@router.post(
    "/CarePlan/_search",
    summary="Search CarePlans (form body)",
    dependencies=[Depends(audited("search", "plan"))],
)
async def search_care_plans(
    request: Request, session: WriteSession, principal: CanReadPlans
) -> Response:
    """Plans by `_id`, `patient` / `subject` and `status` (comma-separated: any of), newest
    first."""
    search = await _parse(request, "CarePlan")
    where = repository.CarePlanFilter(
        ids=_ids(search, "_id"),
        patient_ids=_patient_ids(search, request),
        statuses=_tokens(search, "status", PLAN_STATUSES),
    )
    plans, total = await repository.search_care_plans(
        session,
        organization_id=principal.organization_id,
        where=where,
        limit=0 if search.count_only else search.count + 1,
        after=decode_cursor(search.cursor) if search.cursor else None,
    )
    page = list(plans[: search.count])
    next_cursor = (
        encode_cursor(page[-1].created_at, page[-1].id) if len(plans) > search.count else None
    )
    _audit_patients(request, [p.patient_id for p in page] or list(where.patient_ids or ()))
    return _bundle(
        request,
        search,
        matches=[(_full_url(request, f"CarePlan/{p.id}"), care_plan_resource(p)) for p in page],
        total=total,
        next_cursor=next_cursor,
    )


# --- ObservationDefinition ------------------------------------------------------------------


@router.get("/ObservationDefinition", summary="The active reference ranges")
async def search_observation_definitions(
    request: Request, session: ReadSession, principal: CanReadRanges
) -> Response:
    """One ObservationDefinition per analyte of the organization's active reference-range set,
    with `qualifiedInterval`s (reference / critical / absolute, by gender and age band in
    years, limits in the canonical UCUM unit). No patient data; not paged."""
    search = await _parse(request, "ObservationDefinition")
    catalog = default_catalog()
    range_set = await ranges.active_compiled(
        session, organization_id=principal.organization_id, catalog=catalog
    )
    definitions = outbound.observation_definitions(range_set, catalog) if range_set else []
    return _bundle(
        request,
        search,
        matches=[
            (_full_url(request, f"ObservationDefinition/{d.id}") if d.id else None, d)
            for d in ([] if search.count_only else definitions)
        ],
        total=len(definitions),
        next_cursor=None,
    )


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
