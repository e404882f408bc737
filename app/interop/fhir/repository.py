"""All SQL of the FHIR facade: patient matching and Observation / DiagnosticReport search.

Every query is scoped by organization; pages are keyset-ordered (newest first, id as the tie
breaker), so a page boundary never skips or repeats a row while others insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.identifier_systems import system_uri
from app.models.panel import Panel, Result
from app.models.patient import Patient, PatientIdentifier
from app.models.plan import TreatmentPlan

Keyset = tuple[datetime, uuid.UUID]
_E = TypeVar("_E")
_Ts = TypeVarTuple("_Ts")


@dataclass(frozen=True)
class Paging:
    """What a search asks for: ``limit`` rows (0: the total only) after the keyset ``after``."""

    limit: int
    after: Keyset | None


def _one_of(column: Any, values: tuple[Any, ...] | None) -> list[Any]:
    """The filters' convention: None is no condition, a tuple (even empty) a set to be in."""
    return [] if values is None else [column.in_(values)]


def _half_open(column: Any, starts: tuple[Any, ...], ends: tuple[Any, ...]) -> list[Any]:
    """[start, end) bounds on ``column``; several are ANDed."""
    return [column >= start for start in starts] + [column < end for end in ends]


async def _count(session: AsyncSession, entity: Any, conditions: list[Any]) -> int:
    total = await session.scalar(select(func.count()).select_from(entity).where(*conditions))
    return int(total or 0)


def _keyset(
    moment_column: Any, id_column: Any, after: Keyset | None, *, descending: bool
) -> list[Any]:
    if after is None:
        return []
    moment, row_id = after
    if descending:
        return [(moment_column < moment) | ((moment_column == moment) & (id_column < row_id))]
    return [(moment_column > moment) | ((moment_column == moment) & (id_column > row_id))]


def _order(moment_column: Any, id_column: Any, *, descending: bool) -> tuple[Any, Any]:
    if descending:
        return moment_column.desc(), id_column.desc()
    return moment_column.asc(), id_column.asc()


def _paged(
    query: Select[*_Ts], order: tuple[Any, Any], page: Paging, *, descending: bool
) -> Select[*_Ts]:
    """``query`` (already filtered) from just past ``page.after``, in keyset ``order`` (time,
    id), ``page.limit`` rows."""
    return (
        query.where(*_keyset(*order, page.after, descending=descending))
        .order_by(*_order(*order, descending=descending))
        .limit(page.limit)
    )


async def _entities(
    session: AsyncSession,
    entity: type[_E],
    conditions: list[Any],
    order: tuple[Any, Any],
    page: Paging,
    *,
    load: Any = None,
    descending: bool = True,
) -> tuple[Sequence[_E], int]:
    """A page of ``entity`` rows (with the relationship ``load``) and the total matching."""
    total = await _count(session, entity, conditions)
    if page.limit == 0:
        return [], total
    query = select(entity).where(*conditions)
    if load is not None:
        query = query.options(selectinload(load))
    return (await session.scalars(_paged(query, order, page, descending=descending))).all(), total


@dataclass(frozen=True)
class _PatientDataFilter:
    """The conditions every search of patient data shares: ``_id``, the patients, ``status``.
    None: no condition; an empty tuple: matches nothing (e.g. ids that are not UUIDs)."""

    ids: tuple[uuid.UUID, ...] | None = None
    patient_ids: tuple[uuid.UUID, ...] | None = None
    statuses: tuple[str, ...] | None = None

    def shared(self, entity: Any, organization_id: uuid.UUID) -> list[Any]:
        """Those conditions on ``entity`` (a model with these columns), in the organization."""
        return [
            entity.organization_id == organization_id,
            *_one_of(entity.id, self.ids),
            *_one_of(entity.patient_id, self.patient_ids),
            *_one_of(entity.status, self.statuses),
        ]


def _identifier_match(
    organization_id: uuid.UUID, system: str | None, value: str | None
) -> Select[uuid.UUID]:
    query = select(PatientIdentifier.patient_id).where(
        PatientIdentifier.organization_id == organization_id
    )
    if system is not None:
        query = query.where(PatientIdentifier.system == system_uri(system))
    if value is not None:
        query = query.where(PatientIdentifier.value == value)
    return query


@dataclass(frozen=True)
class PatientFilter:
    """None: no condition; an empty tuple: matches nothing (e.g. ids that are not UUIDs)."""

    ids: tuple[uuid.UUID, ...] | None = None
    identifier: tuple[str | None, str | None] | None = None
    sexes: tuple[str, ...] | None = None
    # Half-open [start, end) bounds on the birth date; several are ANDed.
    born_from: tuple[date, ...] = ()
    born_before: tuple[date, ...] = ()


async def search_patients(
    session: AsyncSession, *, organization_id: uuid.UUID, where: PatientFilter, page: Paging
) -> tuple[Sequence[Patient], int]:
    """A page of patients (newest first) with their identifiers, and the total matching."""
    conditions: list[Any] = [
        Patient.organization_id == organization_id,
        *_one_of(Patient.id, where.ids),
        *_one_of(Patient.sex, where.sexes),
        *_half_open(Patient.birth_date, where.born_from, where.born_before),
    ]
    if where.identifier is not None:
        conditions.append(Patient.id.in_(_identifier_match(organization_id, *where.identifier)))
    order = (Patient.created_at, Patient.id)
    return await _entities(session, Patient, conditions, order, page, load=Patient.identifiers)


async def patients_by_id(
    session: AsyncSession, *, organization_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> Sequence[Patient]:
    """Patients (with identifiers) for ``_include``; unknown ids are skipped."""
    if not ids:
        return []
    query = (
        select(Patient)
        .options(selectinload(Patient.identifiers))
        .where(Patient.organization_id == organization_id, Patient.id.in_(ids))
        .order_by(Patient.id)
    )
    return (await session.scalars(query)).all()


@dataclass(frozen=True)
class ObservationRow:
    result: Result
    status: str
    specimen: str


@dataclass(frozen=True)
class ObservationFilter(_PatientDataFilter):
    analytes: tuple[str, ...] | None = None
    # Codes as the lab sent them (OR-ed with ``analytes``): a search by the lab's code finds
    # the result whatever analyte code we filed it under.
    codes_sent: tuple[str, ...] = ()
    # Half-open [start, end) bounds on the collection time; several are ANDed.
    starts: tuple[datetime, ...] = ()
    ends: tuple[datetime, ...] = ()
    descending: bool = True


def _observation_conditions(organization_id: uuid.UUID, where: ObservationFilter) -> list[Any]:
    conditions = [
        *where.shared(Result, organization_id),
        *_half_open(Result.collected_at, where.starts, where.ends),
    ]
    if where.analytes is not None:
        by_code = [Result.analyte.in_(where.analytes)]
        if where.codes_sent:
            by_code.append(Result.code_sent.in_(where.codes_sent))
        conditions.append(or_(*by_code))
    return conditions


async def get_observation(
    session: AsyncSession, *, organization_id: uuid.UUID, result_id: uuid.UUID
) -> ObservationRow | None:
    row = (
        await session.execute(
            select(Result, Panel.status, Panel.specimen)
            .join(Panel, Panel.id == Result.panel_id)
            .where(Result.organization_id == organization_id, Result.id == result_id)
        )
    ).first()
    return None if row is None else ObservationRow(row[0], row[1], row[2])


async def search_observations(
    session: AsyncSession, *, organization_id: uuid.UUID, where: ObservationFilter, page: Paging
) -> tuple[list[ObservationRow], int]:
    """A page of results (by collection time, newest first unless ``where.descending`` is
    False) and the total matching the filter."""
    conditions = _observation_conditions(organization_id, where)
    total = await _count(session, Result, conditions)
    if page.limit == 0:
        return [], total
    query = (
        select(Result, Panel.status, Panel.specimen)
        .join(Panel, Panel.id == Result.panel_id)
        .where(*conditions)
    )
    order = (Result.collected_at, Result.id)
    rows = await session.execute(_paged(query, order, page, descending=where.descending))
    return [ObservationRow(r[0], r[1], r[2]) for r in rows], total


async def get_report(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> Panel | None:
    return await session.scalar(
        select(Panel)
        .options(selectinload(Panel.results))
        .where(Panel.organization_id == organization_id, Panel.id == panel_id)
    )


@dataclass(frozen=True)
class ReportFilter(_PatientDataFilter):
    starts: tuple[datetime, ...] = ()
    ends: tuple[datetime, ...] = ()
    descending: bool = True


async def search_reports(
    session: AsyncSession, *, organization_id: uuid.UUID, where: ReportFilter, page: Paging
) -> tuple[Sequence[Panel], int]:
    """A page of panels by collection time (with their results) and the total."""
    conditions = [
        *where.shared(Panel, organization_id),
        *_half_open(Panel.collected_at, where.starts, where.ends),
    ]
    order = (Panel.collected_at, Panel.id)
    return await _entities(
        session, Panel, conditions, order, page, load=Panel.results, descending=where.descending
    )


@dataclass(frozen=True)
class CarePlanFilter(_PatientDataFilter):
    pass


async def search_care_plans(
    session: AsyncSession, *, organization_id: uuid.UUID, where: CarePlanFilter, page: Paging
) -> tuple[Sequence[TreatmentPlan], int]:
    """A page of plans (newest first) and the total."""
    conditions = where.shared(TreatmentPlan, organization_id)
    order = (TreatmentPlan.created_at, TreatmentPlan.id)
    return await _entities(session, TreatmentPlan, conditions, order, page)
