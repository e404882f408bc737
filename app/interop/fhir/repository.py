"""All SQL of the FHIR facade: patient matching and Observation / DiagnosticReport search.

Every query is scoped by organization; pages are keyset-ordered (newest first, id as the tie
breaker), so a page boundary never skips or repeats a row while others insert.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models.panel import Panel, Result
from app.models.patient import Patient, PatientIdentifier

Keyset = tuple[datetime, uuid.UUID]


def _identifier_match(
    organization_id: uuid.UUID, system: str | None, value: str | None
) -> Select[uuid.UUID]:
    query = select(PatientIdentifier.patient_id).where(
        PatientIdentifier.organization_id == organization_id
    )
    if system is not None:
        query = query.where(PatientIdentifier.system == system)
    if value is not None:
        query = query.where(PatientIdentifier.value == value)
    return query


async def patient_ids_by_identifier(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    system: str | None,
    value: str | None,
    limit: int,
) -> Sequence[uuid.UUID]:
    """Distinct patients with a matching identifier (None: any system / any value)."""
    query = _identifier_match(organization_id, system, value).distinct().limit(limit)
    return (await session.scalars(query)).all()


async def search_patients(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    identifier: tuple[str | None, str | None] | None,
    limit: int,
    after: Keyset | None,
) -> tuple[Sequence[Patient], int]:
    """A page of patients (newest first) with their identifiers, and the total matching."""
    condition: list[Any] = [Patient.organization_id == organization_id]
    if identifier is not None:
        condition.append(Patient.id.in_(_identifier_match(organization_id, *identifier)))
    total = await session.scalar(select(func.count()).select_from(Patient).where(*condition))
    query = select(Patient).options(selectinload(Patient.identifiers)).where(*condition)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (Patient.created_at < moment) | ((Patient.created_at == moment) & (Patient.id < row_id))
        )
    query = query.order_by(Patient.created_at.desc(), Patient.id.desc()).limit(limit)
    return (await session.scalars(query)).all(), int(total or 0)


@dataclass(frozen=True)
class ObservationRow:
    result: Result
    status: str
    specimen: str


@dataclass(frozen=True)
class ObservationFilter:
    patient_id: uuid.UUID | None = None
    analytes: tuple[str, ...] | None = None
    # Half-open [start, end) bounds on the collection time; several are ANDed.
    starts: tuple[datetime, ...] = ()
    ends: tuple[datetime, ...] = ()


def _observation_conditions(organization_id: uuid.UUID, where: ObservationFilter) -> list[Any]:
    conditions: list[Any] = [Result.organization_id == organization_id]
    if where.patient_id is not None:
        conditions.append(Result.patient_id == where.patient_id)
    if where.analytes is not None:
        conditions.append(Result.analyte.in_(where.analytes))
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
    """A page of results (newest collection first) and the total matching the filter."""
    conditions = _observation_conditions(organization_id, where)
    total = await session.scalar(select(func.count()).select_from(Result).where(*conditions))
    query = (
        select(Result, Panel.status, Panel.specimen)
        .join(Panel, Panel.id == Result.panel_id)
        .where(*conditions)
    )
    if after is not None:
        moment, row_id = after
        query = query.where(
            (Result.collected_at < moment)
            | ((Result.collected_at == moment) & (Result.id < row_id))
        )
    query = query.order_by(Result.collected_at.desc(), Result.id.desc()).limit(limit)
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


async def search_reports(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None,
    limit: int,
    after: Keyset | None,
) -> tuple[Sequence[Panel], int]:
    conditions: list[Any] = [Panel.organization_id == organization_id]
    if patient_id is not None:
        conditions.append(Panel.patient_id == patient_id)
    total = await session.scalar(select(func.count()).select_from(Panel).where(*conditions))
    query = select(Panel).options(selectinload(Panel.results)).where(*conditions)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (Panel.collected_at < moment) | ((Panel.collected_at == moment) & (Panel.id < row_id))
        )
    query = query.order_by(Panel.collected_at.desc(), Panel.id.desc()).limit(limit)
    return (await session.scalars(query)).all(), int(total or 0)
