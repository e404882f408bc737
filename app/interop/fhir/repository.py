"""All SQL of the FHIR facade: patient matching and Observation / DiagnosticReport search.

Every query is scoped by organization; pages are keyset-ordered (newest first, id as the tie
breaker), so a page boundary never skips or repeats a row while others insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.identifier_systems import system_uri
from app.models.panel import Panel, Result
from app.models.patient import Patient, PatientIdentifier
from app.models.plan import TreatmentPlan

Keyset = tuple[datetime, uuid.UUID]


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
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    where: PatientFilter,
    limit: int,
    after: Keyset | None,
) -> tuple[Sequence[Patient], int]:
    """A page of patients (newest first) with their identifiers, and the total matching.
    ``limit`` 0 counts only."""
    condition: list[Any] = [Patient.organization_id == organization_id]
    if where.ids is not None:
        condition.append(Patient.id.in_(where.ids))
    if where.identifier is not None:
        condition.append(Patient.id.in_(_identifier_match(organization_id, *where.identifier)))
    if where.sexes is not None:
        condition.append(Patient.sex.in_(where.sexes))
    condition += [Patient.birth_date >= start for start in where.born_from]
    condition += [Patient.birth_date < end for end in where.born_before]
    total = await session.scalar(select(func.count()).select_from(Patient).where(*condition))
    if limit == 0:
        return [], int(total or 0)
    query = select(Patient).options(selectinload(Patient.identifiers)).where(*condition)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (Patient.created_at < moment) | ((Patient.created_at == moment) & (Patient.id < row_id))
        )
    query = query.order_by(Patient.created_at.desc(), Patient.id.desc()).limit(limit)
    return (await session.scalars(query)).all(), int(total or 0)


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


@dataclass(frozen=True)
class ObservationRow:
    result: Result
    status: str
    specimen: str


@dataclass(frozen=True)
class ObservationFilter:
    """None: no condition; an empty tuple: matches nothing."""

    ids: tuple[uuid.UUID, ...] | None = None
    patient_ids: tuple[uuid.UUID, ...] | None = None
    analytes: tuple[str, ...] | None = None
    # Codes as the lab sent them (OR-ed with ``analytes``): a search by the lab's code finds
    # the result whatever analyte code we filed it under.
    codes_sent: tuple[str, ...] = ()
    statuses: tuple[str, ...] | None = None
    # Half-open [start, end) bounds on the collection time; several are ANDed.
    starts: tuple[datetime, ...] = ()
    ends: tuple[datetime, ...] = ()
    descending: bool = True


def _observation_conditions(organization_id: uuid.UUID, where: ObservationFilter) -> list[Any]:
    conditions: list[Any] = [Result.organization_id == organization_id]
    if where.ids is not None:
        conditions.append(Result.id.in_(where.ids))
    if where.patient_ids is not None:
        conditions.append(Result.patient_id.in_(where.patient_ids))
    if where.analytes is not None:
        by_code = [Result.analyte.in_(where.analytes)]
        if where.codes_sent:
            by_code.append(Result.code_sent.in_(where.codes_sent))
        conditions.append(or_(*by_code))
    if where.statuses is not None:
        conditions.append(Result.status.in_(where.statuses))
    conditions += [Result.collected_at >= start for start in where.starts]
    conditions += [Result.collected_at < end for end in where.ends]
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
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    where: ObservationFilter,
    limit: int,
    after: Keyset | None,
) -> tuple[list[ObservationRow], int]:
    """A page of results (by collection time, newest first unless ``where.descending`` is
    False) and the total matching the filter. ``limit`` 0 counts only."""
    conditions = _observation_conditions(organization_id, where)
    total = await session.scalar(select(func.count()).select_from(Result).where(*conditions))
    if limit == 0:
        return [], int(total or 0)
    descending = where.descending
    query = (
        select(Result, Panel.status, Panel.specimen)
        .join(Panel, Panel.id == Result.panel_id)
        .where(*conditions, *_keyset(Result.collected_at, Result.id, after, descending=descending))
    )
    query = query.order_by(*_order(Result.collected_at, Result.id, descending=descending))
    query = query.limit(limit)
    rows = [ObservationRow(r[0], r[1], r[2]) for r in await session.execute(query)]
    return rows, int(total or 0)


async def get_report(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> Panel | None:
    return await session.scalar(
        select(Panel)
        .options(selectinload(Panel.results))
        .where(Panel.organization_id == organization_id, Panel.id == panel_id)
    )


@dataclass(frozen=True)
class ReportFilter:
    """None: no condition; an empty tuple: matches nothing."""

    ids: tuple[uuid.UUID, ...] | None = None
    patient_ids: tuple[uuid.UUID, ...] | None = None
    statuses: tuple[str, ...] | None = None
    starts: tuple[datetime, ...] = ()
    ends: tuple[datetime, ...] = ()
    descending: bool = True


async def search_reports(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    where: ReportFilter,
    limit: int,
    after: Keyset | None,
) -> tuple[Sequence[Panel], int]:
    """A page of panels by collection time and the total; ``limit`` 0 counts only."""
    conditions: list[Any] = [Panel.organization_id == organization_id]
    if where.ids is not None:
        conditions.append(Panel.id.in_(where.ids))
    if where.patient_ids is not None:
        conditions.append(Panel.patient_id.in_(where.patient_ids))
    if where.statuses is not None:
        conditions.append(Panel.status.in_(where.statuses))
    conditions += [Panel.collected_at >= start for start in where.starts]
    conditions += [Panel.collected_at < end for end in where.ends]
    total = await session.scalar(select(func.count()).select_from(Panel).where(*conditions))
    if limit == 0:
        return [], int(total or 0)
    descending = where.descending
    query = (
        select(Panel)
        .options(selectinload(Panel.results))
        .where(*conditions, *_keyset(Panel.collected_at, Panel.id, after, descending=descending))
        .order_by(*_order(Panel.collected_at, Panel.id, descending=descending))
        .limit(limit)
    )
    return (await session.scalars(query)).all(), int(total or 0)


@dataclass(frozen=True)
class CarePlanFilter:
    ids: tuple[uuid.UUID, ...] | None = None
    patient_ids: tuple[uuid.UUID, ...] | None = None
    statuses: tuple[str, ...] | None = None


async def search_care_plans(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    where: CarePlanFilter,
    limit: int,
    after: Keyset | None,
) -> tuple[Sequence[TreatmentPlan], int]:
    """A page of plans (newest first) and the total; ``limit`` 0 counts only."""
    conditions: list[Any] = [TreatmentPlan.organization_id == organization_id]
    if where.ids is not None:
        conditions.append(TreatmentPlan.id.in_(where.ids))
    if where.patient_ids is not None:
        conditions.append(TreatmentPlan.patient_id.in_(where.patient_ids))
    if where.statuses is not None:
        conditions.append(TreatmentPlan.status.in_(where.statuses))
    total = await session.scalar(select(func.count()).select_from(TreatmentPlan).where(*conditions))
    if limit == 0:
        return [], int(total or 0)
    query = (
        select(TreatmentPlan)
        .where(
            *conditions,
            *_keyset(TreatmentPlan.created_at, TreatmentPlan.id, after, descending=True),
        )
        .order_by(TreatmentPlan.created_at.desc(), TreatmentPlan.id.desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all(), int(total or 0)
