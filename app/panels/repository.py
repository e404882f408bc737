"""All SQL for panels, results and interpretation history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models.panel import Panel, PanelInterpretation, Result
from app.models.range_set import RangeSet

# A panel with the name and version of the range set that interpreted it.
PanelRow = tuple[Panel, str | None, int | None]


async def insert_panel_if_new(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the panel unless (organization, source, accession) exists. True when inserted.

    ON CONFLICT DO NOTHING lets the unique constraint decide between concurrent senders of the
    same panel without an error and without a select-then-insert race.
    """
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert_fn(Panel)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["organization_id", "source", "accession"])
        .returning(Panel.id)
    )
    return (await session.scalar(statement)) is not None


async def insert_results(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await session.execute(insert(Result), list(rows))


async def get_by_natural_key(
    session: AsyncSession, *, organization_id: uuid.UUID, source: str, accession: str
) -> Panel | None:
    return await session.scalar(
        select(Panel).where(
            Panel.organization_id == organization_id,
            Panel.source == source,
            Panel.accession == accession,
        )
    )


def _with_results() -> Any:
    return selectinload(Panel.results)


async def get_with_results(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> PanelRow | None:
    """The panel, its results, and the name and version of the range set applied."""
    result = await session.execute(
        select(Panel, RangeSet.name, RangeSet.version)
        .outerjoin(RangeSet, RangeSet.id == Panel.range_set_id)
        .options(_with_results())
        .where(Panel.organization_id == organization_id, Panel.id == panel_id)
    )
    row = result.first()
    return None if row is None else (row[0], row[1], row[2])


async def list_for_patient(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    collected_from: datetime | None,
    collected_to: datetime | None,
    analyte: str | None,
    flag: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[PanelRow]:
    query = (
        select(Panel, RangeSet.name, RangeSet.version)
        .outerjoin(RangeSet, RangeSet.id == Panel.range_set_id)
        .options(_with_results())
        .where(Panel.organization_id == organization_id, Panel.patient_id == patient_id)
    )
    if collected_from is not None:
        query = query.where(Panel.collected_at >= collected_from)
    if collected_to is not None:
        query = query.where(Panel.collected_at < collected_to)
    conditions = []
    if analyte is not None:
        conditions.append(Result.analyte == analyte)
    if flag == "critical":
        conditions.append(Result.critical.is_(True))
    elif flag is not None:
        conditions.append(Result.interpretation == flag)
    if conditions:
        query = query.where(exists().where(Result.panel_id == Panel.id, and_(*conditions)))
    if after is not None:
        moment, row_id = after
        query = query.where(
            (Panel.collected_at < moment) | ((Panel.collected_at == moment) & (Panel.id < row_id))
        )
    query = query.order_by(Panel.collected_at.desc(), Panel.id.desc()).limit(limit)
    return [(row[0], row[1], row[2]) for row in await session.execute(query)]


async def history_for_analyte(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    analyte: str,
    collected_from: datetime | None,
    collected_to: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[Result]:
    query = select(Result).where(
        Result.organization_id == organization_id,
        Result.patient_id == patient_id,
        Result.analyte == analyte,
    )
    if collected_from is not None:
        query = query.where(Result.collected_at >= collected_from)
    if collected_to is not None:
        query = query.where(Result.collected_at < collected_to)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (Result.collected_at > moment)
            | ((Result.collected_at == moment) & (Result.id > row_id))
        )
    query = query.order_by(Result.collected_at.asc(), Result.id.asc()).limit(limit)
    return (await session.scalars(query)).all()


async def superseded_interpretations(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> Sequence[PanelInterpretation]:
    return (
        await session.scalars(
            select(PanelInterpretation)
            .where(
                PanelInterpretation.organization_id == organization_id,
                PanelInterpretation.panel_id == panel_id,
            )
            .order_by(PanelInterpretation.version.desc())
        )
    ).all()


def add_superseded(session: AsyncSession, record: PanelInterpretation) -> None:
    session.add(record)
