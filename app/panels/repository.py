"""All SQL for panels, results and interpretation history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.util.typing import TupleAny

from app.audit import repository as audit_repository
from app.core.db import ReadAlong, read_along, read_kept
from app.core.sqlite_raw import execute_precompiled
from app.kit.list_sql import not_cancelled, not_withdrawn
from app.models.idempotency import IdempotencyRecord
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


def _patient_read(
    organization_id: uuid.UUID, patient_id: uuid.UUID | None, identifier: tuple[str, str] | None
) -> ReadAlong:
    key = ("patient_for_panel", organization_id, patient_id, identifier)
    if patient_id is not None:
        return ReadAlong(key, _PATIENT_BY_ID, {"org": organization_id, "patient_id": patient_id})
    assert identifier is not None
    system, value = identifier
    return ReadAlong(
        key, _PATIENT_BY_IDENTIFIER, {"org": organization_id, "system": system, "value": value}
    )


def read_patient_along(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None,
    identifier: tuple[str, str] | None,
) -> None:
    """PostgreSQL: look the panel's patient up with the Idempotency-Key claim, in the same
    statement (app.core.db.read_along); ``patient_for_panel`` then uses that row."""
    read_along(session, _patient_read(organization_id, patient_id, identifier))


async def patient_for_panel(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None,
    identifier: tuple[str, str] | None,
) -> PatientForPanel | None:
    """The patient a panel names, with the organization's active range set: one round trip
    (none when it was read along with the Idempotency-Key claim)."""
    read = _patient_read(organization_id, patient_id, identifier)
    kept, row = read_kept(session, read.key)
    if not kept:
        connection = await session.connection()
        row = (await connection.execute(read.statement, read.params)).first()
    return None if row is None else PatientForPanel(row[0], row[1], row[2], row[3])


class NewPanelCheck(NamedTuple):
    """What the SQLite one-transaction POST (app.panels.sqlite_once) re-reads under the write
    lock before writing a panel it prepared: the patient as the plain path would read it."""

    patient: PatientForPanel | None
    key_exists: bool
    accession_exists: bool
    audit_tail: str | None


# SQLite appends to chain 0 only (app.audit.repository).
_SQLITE_AUDIT_TAIL = audit_repository.SQLITE_TAIL.scalar_subquery()
_DOCUMENT_AND_AUDIT_TAIL = select(Panel.document, _SQLITE_AUDIT_TAIL.label("audit_tail")).where(
    Panel.organization_id == bindparam("org"),
    Panel.id == bindparam("panel_id"),
    Panel.patient_id == bindparam("patient_id"),
    Panel.document.is_not(None),
)


async def document_and_audit_tail(
    connection: AsyncConnection,
    *,
    organization_id: uuid.UUID,
    panel_id: uuid.UUID,
    patient_id: uuid.UUID,
) -> tuple[str, str | None] | None:
    """SQLite, in a write transaction: the panel's stored document, if it is that
    organization's and that patient's, and the audit chain's tail; one SELECT."""
    row = (
        await connection.execute(
            _DOCUMENT_AND_AUDIT_TAIL,
            {"org": organization_id, "panel_id": panel_id, "patient_id": patient_id},
        )
    ).first()
    return None if row is None else (row[0], row[1])


def _with_new_panel_facts(patient_read: Select[*TupleAny]) -> Select[*TupleAny]:
    key_exists = exists().where(
        IdempotencyRecord.principal_id == bindparam("principal_id"),
        IdempotencyRecord.key == bindparam("key"),
    )
    accession_exists = exists().where(
        Panel.organization_id == bindparam("org"),
        Panel.source == bindparam("source"),
        Panel.accession == bindparam("accession"),
    )
    return patient_read.add_columns(
        key_exists.label("key_exists"),
        accession_exists.label("accession_exists"),
        _SQLITE_AUDIT_TAIL.label("audit_tail"),
    )


_CHECK_BY_ID = _with_new_panel_facts(_PATIENT_BY_ID)
_CHECK_BY_IDENTIFIER = _with_new_panel_facts(_PATIENT_BY_IDENTIFIER)


async def new_panel_check(
    connection: AsyncConnection,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None,
    identifier: tuple[str, str] | None,
    principal_id: str,
    key: str | None,
    source: str,
    accession: str,
) -> NewPanelCheck:
    """The patient the panel names (None: no such patient now), whether the Idempotency-Key
    (None: no key, never found) and the natural key are stored, and the audit chain's tail:
    one SELECT."""
    params: dict[str, Any] = {
        "org": organization_id,
        "principal_id": principal_id,
        "key": key,
        "source": source,
        "accession": accession,
    }
    if identifier is not None:
        statement = _CHECK_BY_IDENTIFIER
        params.update(system=identifier[0], value=identifier[1])
    else:
        statement = _CHECK_BY_ID
        params["patient_id"] = patient_id
    rows = await execute_precompiled(connection, statement, params)
    if not rows:
        return NewPanelCheck(None, False, False, None)
    row = rows[0]
    return NewPanelCheck(
        PatientForPanel(row[0], row[1], row[2], row[3]), bool(row[4]), bool(row[5]), row[6]
    )


async def insert_new_panel_on(
    connection: AsyncConnection, panel: dict[str, Any], rows: Sequence[dict[str, Any]]
) -> None:
    """A new panel and its results (SQLite one-transaction POST: the natural key was checked
    under the write lock, so the insert cannot meet a stored panel)."""
    inserted = await execute_precompiled(connection, _INSERT_PANEL["sqlite"], panel)
    if not inserted:
        raise RuntimeError("the panel's natural key was stored under the write lock")
    if rows:
        await execute_precompiled(connection, _INSERT_RESULTS, rows)


async def insert_panel_if_new(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the panel unless (organization, source, accession) exists. True when inserted.

    ON CONFLICT DO NOTHING lets the unique constraint decide between concurrent senders of the
    same panel without an error and without a select-then-insert race.
    """
    connection = await session.connection()
    statement = _INSERT_PANEL[connection.dialect.name]
    return (await connection.execute(statement, values)).first() is not None


# Panel rows as JSON (app.panels.fast_post): ids read from the database and decimals as text.
def json_default(value: object) -> str:
    # asyncpg's UUID (ids read from the database) subclasses uuid.UUID, which orjson only
    # encodes exactly.
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


async def insert_results(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """The new panel's results."""
    if rows:
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


@dataclass(frozen=True, slots=True)
class PatientWindow:
    """One patient's rows collected in the half-open [collected_from, collected_to); either
    bound may be open. The panel list, trends and ratio history all read through one."""

    organization_id: uuid.UUID
    patient_id: uuid.UUID
    collected_from: datetime | None
    collected_to: datetime | None

    def of(self, model: type[Panel] | type[Result]) -> list[ColumnElement[bool]]:
        """The conditions on ``model`` (panels and results both carry these columns)."""
        conditions = [
            model.organization_id == self.organization_id,
            model.patient_id == self.patient_id,
        ]
        if self.collected_from is not None:
            conditions.append(model.collected_at >= self.collected_from)
        if self.collected_to is not None:
            conditions.append(model.collected_at < self.collected_to)
        return conditions


async def list_for_patient(
    session: AsyncSession,
    window: PatientWindow,
    *,
    analyte: str | None,
    flag: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[PanelRow]:
    query = (
        select(Panel, RangeSet.name, RangeSet.version)
        .outerjoin(RangeSet, RangeSet.id == Panel.range_set_id)
        .options(_with_results())
        .where(*window.of(Panel))
    )
    conditions: list[ColumnElement[bool]] = []
    if flag is not None:
        # A withdrawn result (cancelled, entered-in-error) is flagged nothing.
        conditions.append(not_withdrawn(Result.status))
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


def _current_history(window: PatientWindow, analyte: str) -> list[ColumnElement[bool]]:
    # Trends show current results only; withdrawn ones stay readable on their panel.
    return [
        *window.of(Result),
        Result.analyte == analyte,
        not_withdrawn(Result.status),
    ]


async def history_for_analyte(
    session: AsyncSession,
    window: PatientWindow,
    *,
    analyte: str,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[Result]:
    query = select(Result).where(*_current_history(window, analyte))
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
    session: AsyncSession, window: PatientWindow, *, analyte: str
) -> int:
    query = select(func.count()).select_from(Result).where(*_current_history(window, analyte))
    return (await session.scalar(query)) or 0


async def panel_ratios_of_patient(
    session: AsyncSession, window: PatientWindow
) -> list[tuple[uuid.UUID, datetime, list[dict[str, Any]]]]:
    """(panel id, collected_at, ratios) of every panel of the patient, newest first (ties by
    id, descending). Ratios are JSON on the panel, filtered by code in Python: a patient has
    tens of panels, not thousands. Cancelled panels are left out."""
    query = select(Panel.id, Panel.collected_at, Panel.ratios).where(
        *window.of(Panel), not_cancelled(Panel.status)
    )
    query = query.order_by(Panel.collected_at.desc(), Panel.id.desc())
    return [(row[0], row[1], list(row[2] or [])) for row in await session.execute(query)]


# --- chunk-level reads and writes (app.panels.bulk, for app.batches) ---------------------------


def _patient_columns() -> Any:
    return select(
        Patient.id, Patient.sex, Patient.birth_date, _ACTIVE_RANGE_SET.label("range_set_id")
    )


async def patients_for_panels(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    identifiers: Sequence[tuple[str, str]],
) -> tuple[dict[uuid.UUID, PatientForPanel], dict[tuple[str, str], PatientForPanel]]:
    """``patient_for_panel`` for many references at once: by id, and by (system, value)."""
    connection = await session.connection()
    by_id: dict[uuid.UUID, PatientForPanel] = {}
    by_identifier: dict[tuple[str, str], PatientForPanel] = {}
    if ids:
        query = _patient_columns().where(
            Patient.organization_id == bindparam("org"), Patient.id.in_(sorted(set(ids)))
        )
        for row in await connection.execute(query, {"org": organization_id}):
            by_id[row[0]] = PatientForPanel(row[0], row[1], row[2], row[3])
    if identifiers:
        query = (
            _patient_columns()
            .add_columns(PatientIdentifier.system, PatientIdentifier.value)
            .join(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
            .where(
                PatientIdentifier.organization_id == bindparam("org"),
                tuple_(PatientIdentifier.system, PatientIdentifier.value).in_(
                    sorted(set(identifiers))
                ),
            )
        )
        for row in await connection.execute(query, {"org": organization_id}):
            by_identifier[(row[4], row[5])] = PatientForPanel(row[0], row[1], row[2], row[3])
    return by_id, by_identifier


async def existing_natural_keys(
    session: AsyncSession, *, organization_id: uuid.UUID, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The (source, accession) pairs of ``keys`` the organization already has a panel for."""
    if not keys:
        return set()
    connection = await session.connection()
    query = select(Panel.source, Panel.accession).where(
        Panel.organization_id == organization_id,
        tuple_(Panel.source, Panel.accession).in_(sorted(set(keys))),
    )
    return {(row[0], row[1]) for row in await connection.execute(query)}


async def insert_panels_if_new(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    """``insert_panel_if_new`` for many panels in one statement: the ids of those inserted
    (a panel whose natural key a concurrent sender stored meanwhile is left out)."""
    if not rows:
        return set()
    connection = await session.connection()
    statement = _INSERT_PANEL[connection.dialect.name]
    result = await connection.execute(statement, list(rows))
    return {row[0] for row in result}
