"""All SQL for idempotency records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.idempotency import IdempotencyRecord


async def claim(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert an in-flight record unless (principal, key) exists; its id when inserted.

    The unique constraint decides between concurrent claims. On PostgreSQL a claim that meets
    another transaction's uncommitted claim waits for it to end (bounded by lock_timeout), then
    inserts (the other rolled back) or does nothing (it committed).
    """
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert_fn(IdempotencyRecord)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["principal_id", "key"])
        .returning(IdempotencyRecord.id)
    )
    return await session.scalar(statement)


async def get(session: AsyncSession, *, principal_id: str, key: str) -> Row[Any] | None:
    # Columns, not an ORM object: a re-read after a concurrent change must not come back from
    # the session's identity map.
    record = IdempotencyRecord
    result = await session.execute(
        select(
            record.id,
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
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id)
        .values(
            status="completed", response_status=status, response_headers=headers, response_body=body
        )
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


async def current_lock_timeout(session: AsyncSession) -> str:
    """PostgreSQL only."""
    return str(await session.scalar(select(func.current_setting("lock_timeout"))))


async def set_lock_timeout(session: AsyncSession, value: str) -> None:
    """PostgreSQL only: lock_timeout for the rest of this transaction (SET LOCAL)."""
    await session.execute(select(func.set_config("lock_timeout", value, True)))
