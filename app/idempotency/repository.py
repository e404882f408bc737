"""All SQL for idempotency records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Row,
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.util.typing import TupleAny

from app.core.db import keep_read, take_read_along
from app.core.sqlite_raw import execute_precompiled
from app.models.idempotency import IdempotencyRecord

_RECORD = cast(Table, IdempotencyRecord.__table__)
_CLAIM = {
    name: insert_fn(_RECORD)
    .on_conflict_do_nothing(index_elements=["principal_id", "key"])
    .returning(_RECORD.c.id)
    for name, insert_fn in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_INSERT_RECORD = insert(_RECORD)
_COMPLETE = (
    update(_RECORD)
    .where(_RECORD.c.id == bindparam("record_id"))
    .values(
        status="completed",
        response_status=bindparam("response_status"),
        response_headers=bindparam("response_headers", type_=_RECORD.c.response_headers.type),
        response_body=bindparam("response_body"),
    )
)
# Reads the caller's lock_timeout and sets the new one in one round trip (select-list items
# are evaluated in order).
_SWAP_LOCK_TIMEOUT = select(
    func.current_setting("lock_timeout"), func.set_config("lock_timeout", bindparam("v"), True)
)


# PostgreSQL: the claim as a data-modifying CTE, so a read registered with
# app.core.db.read_along goes out in the same statement (one round trip fewer on POST panel).
_CLAIM_CTE = (
    pg_insert(_RECORD)
    .values(
        {
            column.key: bindparam(f"idem_{column.key}", type_=column.type)
            for column in _RECORD.c
            if not column.key.startswith("response_")  # stored by `complete`
        }
    )
    .on_conflict_do_nothing(index_elements=["principal_id", "key"])
    .returning(_RECORD.c.id)
    .cte("claim")
)
_claims_with: dict[int, tuple[Select[*TupleAny], Select[*TupleAny]]] = {}


def _claim_with(read: Select[*TupleAny]) -> Select[*TupleAny]:
    """SELECT (the claimed id or NULL), the read's columns..., found: always one row (the
    read's first row, or NULLs and found NULL). Built once per read statement."""
    built = _claims_with.get(id(read))
    if built is None or built[0] is not read:
        along = read.add_columns(true().label("mineral_found")).limit(1).subquery("along")
        claimed = select(select(_CLAIM_CTE.c.id).scalar_subquery().label("claim_id")).subquery(
            "claimed"
        )
        combined = select(claimed.c.claim_id, *along.c).select_from(
            claimed.outerjoin(along, true())
        )
        built = (read, combined)
        _claims_with[id(read)] = built
    return built[1]


async def claim(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert an in-flight record unless (principal, key) exists; its id when inserted.

    The unique constraint decides between concurrent claims. On PostgreSQL a claim that meets
    another transaction's uncommitted claim waits for it to end (bounded by lock_timeout), then
    inserts (the other rolled back) or does nothing (it committed). A read registered with
    ``read_along`` goes out with the claim; its row is kept only when the key was claimed (a
    replay or refusal never gets to use it).
    """
    connection = await session.connection()
    along = take_read_along(session) if connection.dialect.name == "postgresql" else None
    if along is None:
        row = (await connection.execute(_CLAIM[connection.dialect.name], values)).first()
        return None if row is None else cast(uuid.UUID, row[0])
    params = {f"idem_{name}": value for name, value in values.items()}
    combined = (
        await connection.execute(_claim_with(along.statement), {**params, **along.params})
    ).one()
    claimed = cast(uuid.UUID | None, combined[0])
    if claimed is not None:
        found = combined[-1] is not None
        keep_read(session, along.key, tuple(combined[1:-1]) if found else None)
    return claimed


async def insert_record_on(connection: AsyncConnection, values: dict[str, Any]) -> None:
    """Insert a completed record as it is (the SQLite one-transaction POST, which checked under
    the write lock that (principal, key) is not stored: no claim can be in flight)."""
    await execute_precompiled(connection, _INSERT_RECORD, values)


async def get(session: AsyncSession, *, principal_id: str, key: str) -> Row[Any] | None:
    # Columns, not an ORM object: a re-read after a concurrent change must not come back from
    # the session's identity map.
    record = IdempotencyRecord
    result = await session.execute(
        select(
            record.id,
            record.organization_id,
            record.fingerprint,
            record.status,
            record.response_status,
            record.response_headers,
            record.response_body,
            record.expires_at,
        ).where(record.principal_id == principal_id, record.key == key)
    )
    return result.first()


async def complete(
    session: AsyncSession,
    *,
    record_id: uuid.UUID,
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    connection = await session.connection()
    await connection.execute(
        _COMPLETE,
        {
            "record_id": record_id,
            "response_status": status,
            "response_headers": headers,
            "response_body": body,
        },
    )


async def delete_record(
    session: AsyncSession, *, record_id: uuid.UUID, expired_before: datetime | None = None
) -> None:
    statement = delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id)
    if expired_before is not None:
        statement = statement.where(IdempotencyRecord.expires_at < expired_before)
    await session.execute(statement)


async def delete_expired(session: AsyncSession, *, now: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < now)
    )
    return cast(CursorResult[Any], result).rowcount


async def swap_lock_timeout(session: AsyncSession, value: str) -> str:
    """PostgreSQL only: set lock_timeout for this transaction; returns the previous value."""
    connection = await session.connection()
    return str((await connection.execute(_SWAP_LOCK_TIMEOUT, {"v": value})).one()[0])


async def set_lock_timeout(session: AsyncSession, value: str) -> None:
    """PostgreSQL only: lock_timeout for the rest of this transaction (SET LOCAL)."""
    connection = await session.connection()
    await connection.execute(select(func.set_config("lock_timeout", value, True)))
