"""All SQL for organizations and API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import new_id
from app.kit.list_sql import newest_first
from app.models.api_key import ApiKey
from app.models.organization import Organization


async def insert_organization_if_new(session: AsyncSession, *, name: str, now: datetime) -> bool:
    """Insert the organization unless the name exists. True when inserted.

    ON CONFLICT DO NOTHING lets the unique name decide between concurrent creators without an
    error and without a select-then-insert race.
    """
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert_fn(Organization)
        .values(id=new_id(), name=name, created_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Organization.id)
    )
    return (await session.scalar(statement)) is not None


async def get_organization_by_name(session: AsyncSession, *, name: str) -> Organization | None:
    return await session.scalar(select(Organization).where(Organization.name == name))


async def add_api_key(session: AsyncSession, api_key: ApiKey) -> None:
    session.add(api_key)
    await session.flush()


async def get_api_key(
    session: AsyncSession, *, organization_id: uuid.UUID, key_id: uuid.UUID
) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey).where(ApiKey.organization_id == organization_id, ApiKey.id == key_id)
    )


async def get_api_key_by_id(session: AsyncSession, *, key_id: uuid.UUID) -> ApiKey | None:
    """Any organization's key: for the operator's command line only."""
    return await session.get(ApiKey, key_id)


async def get_api_key_by_prefix(session: AsyncSession, *, prefix: str) -> ApiKey | None:
    """Any organization's key by its public prefix (unique index): the authentication lookup."""
    return await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))


async def list_api_keys(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[ApiKey]:
    """The organization's keys, newest first (keyset pagination on created_at, id)."""
    query = select(ApiKey).where(ApiKey.organization_id == organization_id)
    query = newest_first(query, ApiKey.created_at, ApiKey.id, after=after, limit=limit)
    return (await session.scalars(query)).all()


async def touch_api_key(
    session: AsyncSession, *, key_id: uuid.UUID, now: datetime, older_than: datetime
) -> bool:
    """Set last_used_at unless it is already newer than `older_than`. True when written.

    The condition is in the UPDATE itself, so concurrent requests on one key write it once per
    interval, and a request that finds it fresh writes nothing at all.
    """
    result = await session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < older_than),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
