"""All SQL for the audit trail: the chain's tail, inserts, the chain walk and admin queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Uuid, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.chain import HASHED_FIELDS
from app.db import UTCDateTime
from app.models.audit import AuditEvent

# pg_advisory_xact_lock key that serializes appends to the chain ("min_audi" in ASCII). Any
# other use of advisory locks in this database must pick a different key.
CHAIN_LOCK_KEY = 0x6D696E5F61756469


# The stored columns the caller supplies: exactly the hashed ones.
_COLUMNS = HASHED_FIELDS
# PostgreSQL: audit_append() (see the migration) takes the chain's lock, reads the tail with a
# fresh snapshot and inserts the row with its hash computed in the database: SHA-256 over
# exactly the bytes app.audit.chain builds, Python supplying the canonical JSON around the
# prev_hash slot. One round trip; the lock is held from this call to the commit.
_PG_APPEND = text(
    "SELECT audit_append("
    + ", ".join(f":{name}" for name in (*_COLUMNS, "before", "after", "genesis"))
    + ")"
).bindparams(
    bindparam("id", type_=Uuid()),
    bindparam("occurred_at", type_=UTCDateTime()),
    bindparam("organization_id", type_=Uuid()),
    bindparam("patient_id", type_=Uuid()),
)


# SQLite: the same in one INSERT, the tail read inside it (the write transaction already holds
# the database's only write lock); app.db registers audit_sha256() on every connection.
_SQLITE_APPEND = text(
    "INSERT INTO audit_event ("
    + ", ".join(_COLUMNS)
    + ", prev_hash, hash) SELECT "
    + ", ".join(f":{name}" for name in _COLUMNS)
    + ", tail.h, audit_sha256(:before || tail.h || :after) FROM (SELECT coalesce("
    "(SELECT hash FROM audit_event ORDER BY seq DESC LIMIT 1), :genesis) AS h) AS tail"
).bindparams(
    bindparam("id", type_=Uuid()),
    bindparam("occurred_at", type_=UTCDateTime()),
    bindparam("organization_id", type_=Uuid()),
    bindparam("patient_id", type_=Uuid()),
)


async def append_locked(
    session: AsyncSession, values: dict[str, Any], *, before: str, after: str, genesis: str
) -> None:
    """Insert one row linked to the chain's tail, in one round trip (PostgreSQL: after taking
    the chain's lock inside audit_append())."""
    connection = await session.connection()
    await connection.execute(
        _PG_APPEND if connection.dialect.name == "postgresql" else _SQLITE_APPEND,
        {
            **{name: values[name] for name in _COLUMNS},
            "before": before,
            "after": after,
            "genesis": genesis,
        },
    )


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
