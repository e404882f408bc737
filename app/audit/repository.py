"""All SQL for the audit trail: the chain's tail, inserts, the chain walk and admin queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    Row,
    Uuid,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.audit.chain import HASHED_FIELDS
from app.core.db import UTCDateTime
from app.core.driver import Driver
from app.core.sqlite_raw import execute_precompiled
from app.models.audit import AuditEvent

# pg_advisory_xact_lock key that serializes appends to chain 0 ("min_audi" in ASCII); chain c
# uses CHAIN_LOCK_KEY - c. Any other use of advisory locks in this database must pick keys
# outside that range.
CHAIN_LOCK_KEY = 0x6D696E5F61756469
# The trail is striped into this many chains, each linked and locked on its own (migration
# c7e1f3a5b9d2), so appenders of different processes do not queue behind one lock. SQLite,
# with its single writer, uses chain 0 only.
CHAIN_STRIPES = 64


# The stored columns the caller supplies: the hashed ones, then the two links.
_COLUMNS = (*HASHED_FIELDS, "prev_hash", "hash")

# PostgreSQL: audit_append_rows() (see migration a8c3d5e7f901) takes the chain's lock, reads
# the tail with a fresh snapshot and, when the rows were hashed against that tail, inserts them
# (checking that they link) and returns NULL; otherwise it inserts nothing and returns the real
# tail. One round trip when the guess is right; the lock is held from this call to the commit.
_PG_APPEND = text(
    "SELECT audit_append_rows(CAST(:rows AS jsonb), :expected_prev, CAST(:chain AS smallint))"
)
# The same call for statements sent through the driver (app.core.driver): its parameters are
# the statement's first three, ``append_args``. As the last column of a SELECT that appends
# along with what it reads (append_along), it is evaluated once per row that SELECT returns
# (so never when nothing is found).
PG_APPEND_CALL = "audit_append_rows(CAST($1 AS jsonb), $2, CAST($3 AS smallint))"
_PG_APPEND_DRIVER = "SELECT " + PG_APPEND_CALL
# Every chain's lock, in order (appenders hold one each and wait for no other: no deadlock).
_PG_LOCK_ALL = text(
    f"SELECT count(pg_advisory_xact_lock({CHAIN_LOCK_KEY} - c)) "
    f"FROM generate_series(0, {CHAIN_STRIPES - 1}) AS c"
)

# SQLite: the write transaction already holds the database's only write lock (BEGIN
# IMMEDIATE), and reads are in-process: read the tail, then insert.
# Chain 0's newest hash; also a column of the SQLite hot paths' checking SELECTs
# (app.panels.repository), so their append needs no statement of its own to find it.
SQLITE_TAIL = (
    select(AuditEvent.hash).where(AuditEvent.chain == 0).order_by(AuditEvent.seq.desc()).limit(1)
)
_SQLITE_INSERT = text(
    "INSERT INTO audit_event ("
    + ", ".join(_COLUMNS)
    + ") VALUES ("
    + ", ".join(f":{name}" for name in _COLUMNS)
    + ")"
).bindparams(
    bindparam("id", type_=Uuid()),
    bindparam("occurred_at", type_=UTCDateTime()),
    bindparam("organization_id", type_=Uuid()),
    bindparam("patient_id", type_=Uuid()),
)


def _json_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()  # aware, microseconds kept: timestamptz reads it exactly
    return value


async def is_postgresql(session: AsyncSession) -> bool:
    return (await session.connection()).dialect.name == "postgresql"


async def append_if_tail(
    session: AsyncSession, rows: Sequence[dict[str, Any]], *, expected_prev: str, chain: int
) -> str | None:
    """PostgreSQL: insert `rows` (already linked and hashed, the first to `expected_prev`) into
    `chain` if its tail is `expected_prev`, after taking its lock. None when inserted, else
    the actual tail (nothing inserted; the lock is now held, so it cannot move again)."""
    connection = await session.connection()
    result = await connection.execute(
        _PG_APPEND, {"rows": rows_payload(rows), "expected_prev": expected_prev, "chain": chain}
    )
    tail: str | None = result.scalar()
    return tail


def rows_payload(rows: Sequence[dict[str, Any]]) -> str:
    """The JSON array audit_append_rows() takes."""
    return orjson.dumps(
        [{name: _json_value(row[name]) for name in _COLUMNS} for row in rows]
    ).decode()


def append_args(
    rows: Sequence[dict[str, Any]], *, expected_prev: str, chain: int
) -> tuple[str, str, int]:
    """The parameters of ``PG_APPEND_CALL`` ($1, $2, $3)."""
    return rows_payload(rows), expected_prev, chain


async def append_if_tail_on(
    driver: Driver, rows: Sequence[dict[str, Any]], *, expected_prev: str, chain: int
) -> str | None:
    """``append_if_tail`` as one statement of its own (autocommit: the chain's database lock
    held only while it runs)."""
    row = await driver.fetchrow(
        _PG_APPEND_DRIVER, *append_args(rows, expected_prev=expected_prev, chain=chain)
    )
    tail: str | None = row[0] if row is not None else None
    return tail


async def sqlite_tail(session: AsyncSession) -> str | None:
    connection = await session.connection()
    tail: str | None = (await connection.execute(SQLITE_TAIL)).scalar()
    return tail


async def sqlite_insert(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await sqlite_insert_on(await session.connection(), rows)


async def hold_every_chain(session: AsyncSession) -> None:
    """PostgreSQL: wait for every append in flight to end and hold every chain until this
    transaction ends, so what it reads next is a settled head: no row with a lower seq can
    still commit after it (appenders take their seq under their chain's lock)."""
    if await is_postgresql(session):
        await (await session.connection()).execute(_PG_LOCK_ALL)


async def chain_heads(session: AsyncSession) -> list[tuple[int, int, str, int]]:
    """Every chain that has rows: (chain, seq and hash of its newest row, its row count), by
    chain. Counted from the (chain, seq) index."""
    per_chain = (
        select(
            AuditEvent.chain,
            func.max(AuditEvent.seq).label("last_seq"),
            func.count().label("rows"),
        )
        .group_by(AuditEvent.chain)
        .subquery()
    )
    query = (
        select(per_chain.c.chain, AuditEvent.seq, AuditEvent.hash, per_chain.c.rows)
        .join(per_chain, AuditEvent.seq == per_chain.c.last_seq)
        .order_by(per_chain.c.chain)
    )
    return [
        (int(chain), int(seq), str(digest), int(rows))
        for chain, seq, digest, rows in (await session.execute(query)).all()
    ]


async def chain_batch(
    session: AsyncSession, *, after_seq: int | None, limit: int
) -> Sequence[Row[Any]]:
    """The next `limit` rows of the chain after `after_seq`, in seq order, as plain rows (no
    ORM identity map growing over a long walk)."""
    query = select(*AuditEvent.__table__.c)
    if after_seq is not None:
        query = query.where(AuditEvent.seq > after_seq)
    return (await session.execute(query.order_by(AuditEvent.seq).limit(limit))).all()


async def list_events(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None = None,
    principal_id: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    limit: int,
    before_seq: int | None = None,
) -> Sequence[AuditEvent]:
    """One organization's audit rows, newest (highest seq) first, after the keyset cursor.

    `occurred_from` is inclusive, `occurred_to` exclusive. The (organization, seq),
    (organization, patient, seq) and (organization, principal, seq) indexes serve the listing
    and its common filters in this order directly; other filters are applied along that walk.

    The organization is matched as a range of one value and ordered on: with an equality, the
    planner drops organization_id from the order, and a generic plan (a prepared statement's,
    which knows no value) may then walk the primary key backwards filtering on the
    organization, reading every newer event of every other organization (the technique and the
    measurement of migration c9e1a3b5d7f2; tests/test_generic_plans.py). With a range, only
    the indexes that lead with organization_id give the order.
    """
    query = select(AuditEvent).where(
        AuditEvent.organization_id >= organization_id,
        AuditEvent.organization_id <= organization_id,
    )
    if patient_id is not None:
        query = query.where(AuditEvent.patient_id == patient_id)
    if principal_id is not None:
        query = query.where(AuditEvent.principal_id == principal_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if outcome is not None:
        query = query.where(AuditEvent.outcome == outcome)
    if occurred_from is not None:
        query = query.where(AuditEvent.occurred_at >= occurred_from)
    if occurred_to is not None:
        query = query.where(AuditEvent.occurred_at < occurred_to)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    query = query.order_by(AuditEvent.organization_id.desc(), AuditEvent.seq.desc())
    return (await session.scalars(query.limit(limit))).all()


async def sqlite_insert_on(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """``sqlite_insert`` on a bare connection in its write transaction."""
    await execute_precompiled(
        connection, _SQLITE_INSERT, [{name: row[name] for name in _COLUMNS} for row in rows]
    )
