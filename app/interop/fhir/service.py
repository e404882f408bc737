"""What the FHIR endpoints do, apart from HTTP: reads, searches and the posted Bundle.

The router parses the request and writes the response; these functions load and map the
records. ``base`` is the server's FHIR base URL (``https://host/fhir/R4``), which every
``fullUrl`` starts with.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.audit.entries import build_entry
from app.audit.service import AuditEntry
from app.auth.principal import Principal
from app.core.errors import NotFoundError
from app.domain.catalog import Catalog, default_catalog
from app.interop.chunks import Chunks
from app.interop.fhir import outbound, repository
from app.interop.fhir.careplan import care_plan_resource
from app.interop.fhir.inbound import parse_bundle, parse_token
from app.interop.fhir.search import analyte_codes, bad_parameter, date_bounds
from app.interop.fhir.search_params import Search, as_uuids, reference_ids
from app.interop.fhir.transaction import BundleOutcome, Touched, process_bundle
from app.kit.pagination import decode_optional, keyset
from app.models.plan import PLAN_STATUSES
from app.patients import service as patients
from app.plans import repository as plan_repository
from app.ranges import service as ranges

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

Match = tuple[str | None, Any]  # (fullUrl, resource) of one searchset entry
T = TypeVar("T")


@dataclass(frozen=True)
class Found:
    """One page of search matches, and the patients it discloses (one audit row each)."""

    matches: list[Match]
    total: int
    next_cursor: str | None = None
    disclosed: list[uuid.UUID] = field(default_factory=list)
    included: list[tuple[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Read:
    """A read's resource, the patient it is about and its version (the ETag), if versioned."""

    resource: Any
    patient_id: uuid.UUID
    version: int | None = None


def fhir_id(value: str, message: str) -> uuid.UUID:
    """A logical id; one that is not a UUID names nothing here (404, not 400)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundError(message) from None


async def _load(raw_id: str, message: str, get: Callable[[uuid.UUID], Awaitable[T | None]]) -> T:
    """The record ``get`` finds by the logical id, else 404 (also for an id that is not ours)."""
    found = await get(fhir_id(raw_id, message))
    if found is None:
        raise NotFoundError(message)
    return found


# --- reads ------------------------------------------------------------------------------------


async def read_patient(session: AsyncSession, organization_id: uuid.UUID, raw_id: str) -> Read:
    patient = await patients.get_or_raise(
        session,
        organization_id=organization_id,
        patient_id=fhir_id(raw_id, "No patient with this id."),
    )
    return Read(outbound.patient_resource(patient), patient.id, patient.version)


async def read_observation(session: AsyncSession, organization_id: uuid.UUID, raw_id: str) -> Read:
    def get(result_id: uuid.UUID) -> Awaitable[repository.ObservationRow | None]:
        return repository.get_observation(
            session, organization_id=organization_id, result_id=result_id
        )

    row = await _load(raw_id, "No Observation with this id.", get)
    catalog = default_catalog()
    resource = outbound.observation_resource(
        row.result, status=row.status, specimen=row.specimen, catalog=catalog
    )
    return Read(resource, row.result.patient_id)


async def read_report(session: AsyncSession, organization_id: uuid.UUID, raw_id: str) -> Read:
    panel = await _load(
        raw_id,
        "No DiagnosticReport with this id.",
        lambda panel_id: repository.get_report(
            session, organization_id=organization_id, panel_id=panel_id
        ),
    )
    return Read(outbound.diagnostic_report_resource(panel, panel.results), panel.patient_id)


async def read_care_plan(session: AsyncSession, organization_id: uuid.UUID, raw_id: str) -> Read:
    get = functools.partial(plan_repository.get, session, organization_id=organization_id)
    plan = await _load(raw_id, "No CarePlan with this id.", lambda plan_id: get(plan_id=plan_id))
    return Read(care_plan_resource(plan), plan.patient_id, plan.version)


# --- search parameters as filters ------------------------------------------------------------


def _ids(search: Search, name: str) -> tuple[uuid.UUID, ...] | None:
    """Logical ids from ``_id`` (None when not searched)."""
    if not search.has(name):
        return None
    return as_uuids(set(search.values(name)))


def _patient_ids(search: Search, base: str) -> tuple[uuid.UUID, ...] | None:
    """Patients named by ``patient``, ``subject`` and ``patient._id`` (ANDed across them)."""
    chosen: set[uuid.UUID] | None = None
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


def _dated(search: Search, base: str) -> dict[str, Any]:
    """The filters of results by collection time (Observation, DiagnosticReport): ``date``,
    ``_id``, the patients, and the sort order (checked in this order, as before)."""
    starts, ends = date_bounds("date", search.raw("date"))
    return {
        "starts": starts,
        "ends": ends,
        "ids": _ids(search, "_id"),
        "patient_ids": _patient_ids(search, base),
        "descending": search.descending,
    }


def _date_end(moment: datetime) -> date:
    """The exclusive end date for a [start, end) bound on a date column."""
    day = moment.date()
    return day if moment.time() == datetime.min.time() else day + timedelta(days=1)


def _paging(search: Search) -> repository.Paging:
    """One row more than the page (it says whether a next page exists), none for
    ``_count=0`` (the total only)."""
    return repository.Paging(
        limit=0 if search.count_only else search.count + 1,
        after=decode_optional(search.cursor),
    )


async def _included_patients(
    session: AsyncSession,
    search: Search,
    organization_id: uuid.UUID,
    patient_ids: Sequence[uuid.UUID],
    base: str,
) -> list[tuple[str, Any]]:
    if not search.includes:
        return []
    found = await repository.patients_by_id(
        session, organization_id=organization_id, ids=sorted(set(patient_ids))
    )
    return [(f"{base}/Patient/{p.id}", outbound.patient_resource(p)) for p in found]


# --- searches ---------------------------------------------------------------------------------


async def search_patients(
    session: AsyncSession, organization_id: uuid.UUID, search: Search, base: str
) -> Found:
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
        session, organization_id=organization_id, where=where, page=_paging(search)
    )
    page = keyset(rows, search.count, lambda p: (p.created_at, p.id))
    return Found(
        matches=[(f"{base}/Patient/{p.id}", outbound.patient_resource(p)) for p in page.rows],
        total=total,
        next_cursor=page.next_cursor,
        disclosed=[p.id for p in page.rows],
    )


async def search_observations(
    session: AsyncSession, organization_id: uuid.UUID, search: Search, base: str
) -> Found:
    catalog = default_catalog()
    codes = search.values("code")
    where = repository.ObservationFilter(
        **_dated(search, base),
        analytes=analyte_codes(",".join(codes), catalog) if search.has("code") else None,
        codes_sent=tuple(code.rpartition("|")[2] for code in codes),
        statuses=_tokens(search, "status", _OBSERVATION_STATUSES),
    )
    rows, total = await repository.search_observations(
        session, organization_id=organization_id, where=where, page=_paging(search)
    )
    page = keyset(rows, search.count, lambda row: (row.result.collected_at, row.result.id))
    about = [(row.result.patient_id, _observation_match(row, base, catalog)) for row in page.rows]
    return await _with_patients(
        session, search, organization_id, base, where.patient_ids, total, page.next_cursor, about
    )


def _observation_match(row: repository.ObservationRow, base: str, catalog: Catalog) -> Match:
    resource = outbound.observation_resource(
        row.result, status=row.status, specimen=row.specimen, catalog=catalog
    )
    return f"{base}/Observation/{row.result.id}", resource


async def search_reports(
    session: AsyncSession, organization_id: uuid.UUID, search: Search, base: str
) -> Found:
    where = repository.ReportFilter(
        **_dated(search, base), statuses=_tokens(search, "status", _REPORT_STATUSES)
    )
    panels, total = await repository.search_reports(
        session, organization_id=organization_id, where=where, page=_paging(search)
    )
    page = keyset(panels, search.count, lambda p: (p.collected_at, p.id))
    about: list[tuple[uuid.UUID, Match]] = [
        (
            p.patient_id,
            (f"{base}/DiagnosticReport/{p.id}", outbound.diagnostic_report_resource(p, p.results)),
        )
        for p in page.rows
    ]
    return await _with_patients(
        session, search, organization_id, base, where.patient_ids, total, page.next_cursor, about
    )


async def _with_patients(
    session: AsyncSession,
    search: Search,
    organization_id: uuid.UUID,
    base: str,
    searched: tuple[uuid.UUID, ...] | None,
    total: int,
    next_cursor: str | None,
    about: Sequence[tuple[uuid.UUID, Match]],
) -> Found:
    """A page of results about patients (each match with its patient): the patients disclosed
    (those of the page, else those searched for), and the patients ``_include`` asked for."""
    patient_ids = [patient_id for patient_id, _ in about]
    return Found(
        matches=[match for _, match in about],
        total=total,
        next_cursor=next_cursor,
        disclosed=patient_ids or list(searched or ()),
        included=await _included_patients(session, search, organization_id, patient_ids, base),
    )


async def search_care_plans(
    session: AsyncSession, organization_id: uuid.UUID, search: Search, base: str
) -> Found:
    where = repository.CarePlanFilter(
        ids=_ids(search, "_id"),
        patient_ids=_patient_ids(search, base),
        statuses=_tokens(search, "status", PLAN_STATUSES),
    )
    plans, total = await repository.search_care_plans(
        session, organization_id=organization_id, where=where, page=_paging(search)
    )
    page = keyset(plans, search.count, lambda p: (p.created_at, p.id))
    return Found(
        matches=[(f"{base}/CarePlan/{p.id}", care_plan_resource(p)) for p in page.rows],
        total=total,
        next_cursor=page.next_cursor,
        disclosed=[p.patient_id for p in page.rows] or list(where.patient_ids or ()),
    )


async def observation_definitions(
    session: AsyncSession, organization_id: uuid.UUID, search: Search, base: str
) -> Found:
    """The active range set as ObservationDefinitions: no patient data, not paged."""
    catalog = default_catalog()
    range_set = await ranges.active_compiled(
        session, organization_id=organization_id, catalog=catalog
    )
    definitions = outbound.observation_definitions(range_set, catalog) if range_set else []
    return Found(
        matches=[
            (f"{base}/ObservationDefinition/{d.id}" if d.id else None, d)
            for d in ([] if search.count_only else definitions)
        ],
        total=len(definitions),
    )


# --- the posted Bundle ------------------------------------------------------------------------


async def post_bundle(
    session: AsyncSession, principal: Principal, raw: bytes, scope: Mapping[str, Any]
) -> BundleOutcome:
    """Parse, store and audit a transaction or batch Bundle: one audit row per record it
    created or found, besides the request's own row, described from the same ASGI ``scope``.

    A batch commits in chunks (``app.interop.chunks``), each with the rows of its records."""
    parsed = parse_bundle(raw, default_catalog())

    async def keep(touched: Sequence[Touched]) -> None:
        await audit.append(session, [_touched_entry(principal, t, scope) for t in touched])

    chunks = Chunks(session, keep) if parsed.kind == "batch" else None
    outcome = await process_bundle(
        session, organization_id=principal.organization_id, parsed=parsed, chunks=chunks
    )
    await keep(outcome.touched if chunks is None else chunks.pending)
    return outcome


def _touched_entry(principal: Principal, touched: Touched, scope: Mapping[str, Any]) -> AuditEntry:
    return build_entry(
        principal,
        action="create" if touched.created else "update" if touched.updated else "read",
        resource_type=touched.resource_type,
        resource_id=str(touched.resource_id),
        patient_id=touched.patient_id,
        outcome="success",
        status_code=201 if touched.created else 200,
        scope=scope,
    )
