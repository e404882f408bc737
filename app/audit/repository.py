"""All SQL for the audit trail: the chain's tail, inserts, the chain walk and admin queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.audit import AuditEvent

# pg_advisory_xact_lock key that serializes appends to the chain ("min_audi" in ASCII). Any
# other use of advisory locks in this database must pick a different key.
CHAIN_LOCK_KEY = 0x6D696E5F61756469


_LOCK_CHAIN = select(
    func.pg_advisory_xact_lock(CHAIN_LOCK_KEY), func.current_setting("transaction_isolation")
)

_COLUMNS = (
    "id",
    "occurred_at",
    "organization_id",
    "principal_id",
    "principal_kind",
    "role",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "outcome",
    "status_code",
    "method",
    "path",
    "request_id",
    "client_address",
)
_PG_CASTS = {
    "id": "uuid",
    "occurred_at": "timestamptz",
    "organization_id": "uuid",
    "patient_id": "uuid",
    "status_code": "integer",
}
# PostgreSQL: read the chain's tail and compute this row's hash inside the INSERT, one round
# trip instead of two. The hash is SHA-256 over exactly the bytes app.audit.chain builds:
# Python supplies the canonical JSON around the prev_hash slot, the database the tail hash.
_PG_APPEND = text(
    "INSERT INTO audit_event ("
    + ", ".join(_COLUMNS)
    + ", prev_hash, hash) SELECT "
    + ", ".join(
        f"CAST(:{name} AS {_PG_CASTS[name]})" if name in _PG_CASTS else f":{name}"
        for name in _COLUMNS
    )
    + ", tail.h, encode(sha256(convert_to(:before || tail.h || :after, 'UTF8')), 'hex') "
    "FROM (SELECT coalesce((SELECT hash FROM audit_event ORDER BY seq DESC LIMIT 1), :genesis)"
    " AS h) AS tail"
)


async def append_with_tail_hash(
    session: AsyncSession, values: dict[str, Any], *, before: str, after: str, genesis: str
) -> None:
    """PostgreSQL only, after lock_chain: insert one row linked to the current tail."""
    connection = await session.connection()
    await connection.execute(
        _PG_APPEND,
        {
            **{name: values[name] for name in _COLUMNS},
            "before": before,
            "after": after,
            "genesis": genesis,
        },
    )


async def lock_chain(session: AsyncSession) -> str | None:
    """Make this transaction the only appender until it ends; returns PostgreSQL's isolation
    level (in the same round trip) so the caller can check it.

    PostgreSQL: a transaction-scoped advisory lock, released by COMMIT or ROLLBACK. SQLite:
    nothing to do, the write transaction already holds the database's single write lock
    (BEGIN IMMEDIATE, see app.db).
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    connection = await session.connection()
    row = (await connection.execute(_LOCK_CHAIN)).one()
    return str(row[1])


async def last_hash(session: AsyncSession) -> str | None:
    return await session.scalar(select(AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1))


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> None:
    # One statement per row, in chain order, so `seq` (assigned by the database) follows it.
    await session.execute(insert(AuditEvent).values(**values))


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

    `occurred_from` is inclusive, `occurred_to` exclusive. The (organization, patient, seq) and
    (organization, principal, seq) indexes serve the common filters in this order directly.
    """
    query = select(AuditEvent).where(AuditEvent.organization_id == organization_id)
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
    query = query.order_by(AuditEvent.seq.desc()).limit(limit)
    return (await session.scalars(query)).all()
