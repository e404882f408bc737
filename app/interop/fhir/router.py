"""FHIR R4 endpoints under /fhir/R4 (application/fhir+json; errors as OperationOutcome).

HTTP only: content negotiation, the search parameters of a GET or a POST ``_search``, the
audit target of each request, and the response; ``app.interop.fhir.service`` does the work."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Security
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.audit.context import audit_target, audited
from app.auth.deps import CanReadRanges, CurrentPrincipal, require
from app.auth.principal import Principal, Scope
from app.core.deps import AuditedSession, ReadSession
from app.interop.fhir import outbound, service
from app.interop.fhir.capability import capability_statement
from app.interop.fhir.outcome import FhirError, FhirRoute, Issue, fhir_response
from app.interop.fhir.search_params import Search, check_format, is_strict, parse_search


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


def _base(request: Request) -> str:
    """This server's FHIR base URL, which every fullUrl starts with."""
    return f"{str(request.base_url).rstrip('/')}/fhir/R4"


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _read_response(read: service.Read) -> Response:
    # FHIR's ETag for a read: the weak form of ``meta.versionId``.
    headers = {"ETag": f'W/"{read.version}"'} if read.version is not None else None
    return fhir_response(read.resource, headers=headers)


async def _search_items(request: Request) -> list[tuple[str, str]]:
    """The search parameters of a GET (query) or a POST ``_search`` (form body and query)."""
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        if _content_type(request) != "application/x-www-form-urlencoded":
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


def _searchset(request: Request, search: Search, found: service.Found) -> Response:
    """The searchset Bundle; one audit row per patient the search disclosed (a search of no
    result names none)."""
    audit_target(request, patient_ids=list(dict.fromkeys(found.disclosed)))
    url = str(request.url)
    warnings = [
        f"search parameter {name!r} is not supported and was ignored" for name in search.ignored
    ]
    return fhir_response(
        outbound.searchset(
            found.matches,
            total=found.total,
            self_url=search.self_url(url),
            next_url=search.next_url(url, found.next_cursor),
            included=found.included,
            warnings=warnings,
        )
    )


Reader = Callable[[AsyncSession, uuid.UUID, str], Awaitable[service.Read]]
Finder = Callable[[AsyncSession, uuid.UUID, Search, str], Awaitable[service.Found]]


async def _read(
    request: Request, session: AsyncSession, principal: Principal, raw_id: str, read: Reader
) -> Response:
    """A read: the id asked for is the audit target until the record names its patient."""
    audit_target(request, resource_id=raw_id[:100])
    found = await read(session, principal.organization_id, raw_id)
    audit_target(request, patient_id=found.patient_id)
    return _read_response(found)


async def _search(
    request: Request, session: AsyncSession, principal: Principal, resource_type: str, find: Finder
) -> Response:
    search = await _parse(request, resource_type)
    found = await find(session, principal.organization_id, search, _base(request))
    return _searchset(request, search, found)


@router.get("/metadata", summary="FHIR CapabilityStatement")
async def metadata(request: Request) -> Response:
    """What this FHIR server implements (public, no credentials needed)."""
    return fhir_response(capability_statement(_base(request)))


@router.post(
    "",
    summary="Process a FHIR transaction or batch Bundle",
    dependencies=[Depends(audited("create", "bundle"))],
)
async def post_bundle(
    request: Request, session: AuditedSession, principal: CanWriteBundles
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
      on its own; failures are answered in their entries' `response.outcome`. A batch is
      committed 500 units (a Patient, or a report with its Observations) at a time, so a
      failure of the request part-way keeps the chunks before it: re-send the batch (with
      `ifNoneExist` and report identifiers nothing is stored twice). Every issue names the
      element (FHIRPath) and says what would be accepted.
    """
    if _content_type(request) not in _ACCEPTED_BODY_TYPES:
        raise FhirError(415, [Issue("Send the Bundle as application/fhir+json.", "not-supported")])
    outcome = await service.post_bundle(session, principal, await request.body(), request.scope)
    touched_patients = {t.patient_id for t in outcome.touched}
    audit_target(request, patient_id=touched_patients.pop() if len(touched_patients) == 1 else None)
    return fhir_response(outcome.response)


# --- Patient, Observation, DiagnosticReport, CarePlan: read and search ---------------------


@dataclass(frozen=True)
class _Served:
    """A resource type with the interactions FHIR defines for it here: read (GET by id), and
    search, twice: GET with a query and POST ``_search`` with a form body."""

    resource_type: str
    kind: str  # what the audit trail calls it
    id_param: str  # the read's path parameter
    scope: Scope  # what the caller's role must grant
    read: Reader
    find: Finder
    read_summary: str
    read_doc: str
    search_doc: str  # the search parameters it takes


def _serve(served: _Served) -> None:
    """Registers the read and the two searches of ``served``; each audited (a read, a search
    of ``kind``) and refused with 403 unless the caller's role grants ``scope``."""
    allowed = Security(require(served.scope))

    async def read(
        request: Request, session: AuditedSession, principal: CurrentPrincipal
    ) -> Response:
        raw_id = request.path_params[served.id_param]
        return await _read(request, session, principal, raw_id, served.read)

    async def search(
        request: Request, session: AuditedSession, principal: CurrentPrincipal
    ) -> Response:
        return await _search(request, session, principal, served.resource_type, served.find)

    read.__doc__, search.__doc__ = served.read_doc, served.search_doc
    path = f"/{served.resource_type}"
    router.get(
        f"{path}/{{{served.id_param}}}",
        summary=served.read_summary,
        name=f"read_{served.kind}",
        dependencies=[Depends(audited("read", served.kind)), allowed],
    )(read)
    searched = [Depends(audited("search", served.kind)), allowed]
    summary = f"Search {served.resource_type}s"
    router.post(
        f"{path}/_search",
        summary=f"{summary} (form body)",
        name=f"search_{served.kind}_form",
        dependencies=searched,
    )(search)
    router.get(path, summary=summary, name=f"search_{served.kind}", dependencies=searched)(search)


for _served in (
    _Served(
        "Patient",
        "patient",
        "patient_id",
        Scope.PATIENTS_READ,
        service.read_patient,
        service.search_patients,
        "Read a Patient",
        "The patient with its identifiers, gender and birth date; 404 outside your organization.",
        "Patients by `_id`, `identifier` (`system|value`, `system|` or `value`), `gender` and "
        "`birthdate`, newest first.",
    ),
    _Served(
        "Observation",
        "observation",
        "observation_id",
        Scope.PANELS_READ,
        service.read_observation,
        service.search_observations,
        "Read an Observation",
        "One result: canonical value, the value as sent, our and the lab's interpretation and "
        "reference range.",
        "Results by `_id`, `patient` / `subject` (any reference form) / `patient._id`, `code` "
        "(LOINC, ours or the code the lab sent; comma-separated), `date` (collection time with "
        "eq/ge/gt/le/lt prefixes; repeat to AND) and `status`; `_sort=date|-date` (default "
        "newest first), `_include=Observation:patient`, `_count` (0: the total only) with a "
        "`next` link (keyset paging: no result is skipped or repeated while new ones arrive).",
    ),
    _Served(
        "DiagnosticReport",
        "panel",
        "report_id",
        Scope.PANELS_READ,
        service.read_report,
        service.search_reports,
        "Read a DiagnosticReport",
        "A panel, with `result` references to its Observations.",
        "Panels by `_id`, `patient` / `subject` / `patient._id`, `date` and `status`; "
        "`_sort=date|-date` (default newest first), `_include=DiagnosticReport:patient`, "
        "`_count`.",
    ),
    _Served(
        "CarePlan",
        "plan",
        "plan_id",
        Scope.PLANS_READ,
        service.read_care_plan,
        service.search_care_plans,
        "Read a CarePlan",
        "A treatment plan, one activity per plan item.",
        "Plans by `_id`, `patient` / `subject` and `status` (comma-separated: any of), newest "
        "first.",
    ),
):
    _serve(_served)


# --- ObservationDefinition ------------------------------------------------------------------


@router.get("/ObservationDefinition", summary="The active reference ranges")
async def search_observation_definitions(
    request: Request, session: ReadSession, principal: CanReadRanges
) -> Response:
    """One ObservationDefinition per analyte of the organization's active reference-range set,
    with `qualifiedInterval`s (reference / critical / absolute, by gender and age band in
    years, limits in the canonical UCUM unit). No patient data; not paged."""
    return await _search(
        request, session, principal, "ObservationDefinition", service.observation_definitions
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
