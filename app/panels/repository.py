"""All SQL for panels, results and interpretation history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, exists, func, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.domain.result_status import WITHDRAWN
from app.models.panel import Panel, PanelInterpretation, Result
from app.models.patient import Patient, PatientIdentifier
from app.models.range_set import RangeSet

# A panel with the name and version of the range set that interpreted it.
PanelRow = tuple[Panel, str | None, int | None]


# Hot-path statements are built once and executed on the session's connection (Core, not the
# ORM unit of work): building and compiling a statement per request costs more than the query.
_NATURAL_KEY = ["organization_id", "source", "accession"]
_PANEL = cast(Table, Panel.__table__)
_RESULT = cast(Table, Result.__table__)
_INSERT_PANEL = {
    "postgresql": pg_insert(_PANEL)
    .on_conflict_do_nothing(index_elements=_NATURAL_KEY)
    .returning(_PANEL.c.id),
    "sqlite": sqlite_insert(_PANEL)
    .on_conflict_do_nothing(index_elements=_NATURAL_KEY)
    .returning(_PANEL.c.id),
}
_INSERT_RESULTS = insert(_RESULT)
_ACTIVE_RANGE_SET = (
    select(RangeSet.id)
    .where(RangeSet.organization_id == bindparam("org"), RangeSet.status == "active")
    .scalar_subquery()
)
_PATIENT_BY_ID = select(
    Patient.id, Patient.sex, Patient.birth_date, _ACTIVE_RANGE_SET.label("range_set_id")
).where(Patient.organization_id == bindparam("org"), Patient.id == bindparam("patient_id"))
_PATIENT_BY_IDENTIFIER = (
    select(Patient.id, Patient.sex, Patient.birth_date, _ACTIVE_RANGE_SET.label("range_set_id"))
    .join(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
    .where(
        PatientIdentifier.organization_id == bindparam("org"),
        PatientIdentifier.system == bindparam("system"),
        PatientIdentifier.value == bindparam("value"),
    )
)
_DOCUMENT = select(Panel.document).where(
    Panel.organization_id == bindparam("org"), Panel.id == bindparam("panel_id")
)


class PatientForPanel(NamedTuple):
    id: uuid.UUID
    sex: str
    birth_date: date | None
    range_set_id: uuid.UUID | None


async def patient_for_panel(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None,
    identifier: tuple[str, str] | None,
) -> PatientForPanel | None:
    """The patient a panel names, with the organization's active range set: one round trip."""
    connection = await session.connection()
    if patient_id is not None:
        result = await connection.execute(
            _PATIENT_BY_ID, {"org": organization_id, "patient_id": patient_id}
        )
    else:
        assert identifier is not None
        system, value = identifier
        result = await connection.execute(
            _PATIENT_BY_IDENTIFIER, {"org": organization_id, "system": system, "value": value}
        )
    row = result.first()
    return None if row is None else PatientForPanel(row[0], row[1], row[2], row[3])


async def insert_panel_if_new(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the panel unless (organization, source, accession) exists. True when inserted.

    ON CONFLICT DO NOTHING lets the unique constraint decide between concurrent senders of the
    same panel without an error and without a select-then-insert race.
    """
    connection = await session.connection()
    statement = _INSERT_PANEL[connection.dialect.name]
    return (await connection.execute(statement, values)).first() is not None


async def insert_results(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    connection = await session.connection()
    await connection.execute(_INSERT_RESULTS, list(rows))


async def get_document(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> tuple[bool, str | None]:
    """(found, rendered document) of a panel; found with None means "render from rows"."""
    connection = await session.connection()
    row = (
        await connection.execute(_DOCUMENT, {"org": organization_id, "panel_id": panel_id})
    ).first()
    return (False, None) if row is None else (True, row[0])


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
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    panel_id: uuid.UUID,
    for_update: bool = False,
) -> PanelRow | None:
    """The panel, its results, and the name and version of the range set applied.

    ``for_update``: hold the panel row until the transaction ends (and read it afresh), so two
    corrections of one panel apply one after the other instead of one silently overwriting
    the other (PostgreSQL; SQLite has a single writer anyway)."""
    statement = (
        select(Panel, RangeSet.name, RangeSet.version)
        .outerjoin(RangeSet, RangeSet.id == Panel.range_set_id)
        .options(_with_results())
        .where(Panel.organization_id == organization_id, Panel.id == panel_id)
    )
    if for_update:
        statement = statement.with_for_update(of=Panel).execution_options(populate_existing=True)
    result = await session.execute(statement)
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
    conditions: list[ColumnElement[bool]] = []
    if flag is not None:
        # A withdrawn result (cancelled, entered-in-error) is flagged nothing.
        conditions.append(Result.status.not_in(sorted(WITHDRAWN)))
    if analyte is not None:
        conditions.append(Result.analyte == analyte)
    if flag == "critical":
        # A possibly critical value counts wherever criticals count.
        conditions.append(or_(Result.critical.is_(True), Result.possibly_critical.is_(True)))
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
        # Trends show current results only; withdrawn ones stay readable on their panel.
        Result.status.not_in(sorted(WITHDRAWN)),
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


async def count_history_for_analyte(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    analyte: str,
    collected_from: datetime | None,
    collected_to: datetime | None,
) -> int:
    query = (
        select(func.count())
        .select_from(Result)
        .where(
            Result.organization_id == organization_id,
            Result.patient_id == patient_id,
            Result.analyte == analyte,
            Result.status.not_in(sorted(WITHDRAWN)),
        )
    )
    if collected_from is not None:
        query = query.where(Result.collected_at >= collected_from)
    if collected_to is not None:
        query = query.where(Result.collected_at < collected_to)
    return (await session.scalar(query)) or 0


async def panel_ratios_of_patient(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    collected_from: datetime | None,
    collected_to: datetime | None,
) -> list[tuple[uuid.UUID, datetime, list[dict[str, Any]]]]:
    """(panel id, collected_at, ratios) of every panel of the patient, newest first (ties by
    id, descending). Ratios are JSON on the panel, filtered by code in Python: a patient has
    tens of panels, not thousands. Cancelled panels are left out."""
    query = select(Panel.id, Panel.collected_at, Panel.ratios).where(
        Panel.organization_id == organization_id,
        Panel.patient_id == patient_id,
        Panel.status != "cancelled",
    )
    if collected_from is not None:
        query = query.where(Panel.collected_at >= collected_from)
    if collected_to is not None:
        query = query.where(Panel.collected_at < collected_to)
    query = query.order_by(Panel.collected_at.desc(), Panel.id.desc())
    return [(row[0], row[1], list(row[2] or [])) for row in await session.execute(query)]
