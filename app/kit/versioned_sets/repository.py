"""All SQL a versioned set needs, written once for every set model (Polar's kit repository)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.interfaces import ORMOption

from app.kit.versioned_sets.model import VersionedSet

S = TypeVar("S", bound=VersionedSet)


class VersionedSetRepository(Generic[S]):
    """Queries over one set model, always scoped to an organization.

    `options` (e.g. `selectinload` of a set's rows) apply to `get_loaded` and `get_active`
    loads that need the children; plain `get` loads the set row only."""

    def __init__(self, model: type[S], *, load: Sequence[ORMOption] = ()) -> None:
        self.model = model
        self.load = tuple(load)

    def _scoped(self, organization_id: uuid.UUID) -> Select[S]:
        return select(self.model).where(self.model.organization_id == organization_id)

    async def get(
        self, session: AsyncSession, *, organization_id: uuid.UUID, set_id: uuid.UUID
    ) -> S | None:
        return await session.scalar(self._scoped(organization_id).where(self.model.id == set_id))

    async def get_loaded(
        self, session: AsyncSession, *, organization_id: uuid.UUID, set_id: uuid.UUID
    ) -> S | None:
        """The set with the children named in `load`."""
        query = self._scoped(organization_id).where(self.model.id == set_id)
        return await session.scalar(query.options(*self.load))

    async def get_active(self, session: AsyncSession, *, organization_id: uuid.UUID) -> S | None:
        query = self._scoped(organization_id).where(self.model.status == "active")
        return await session.scalar(query)

    async def get_active_id(
        self, session: AsyncSession, *, organization_id: uuid.UUID
    ) -> uuid.UUID | None:
        """The active set's id only: the one-active index answers it without the row."""
        return await session.scalar(
            select(self.model.id).where(
                self.model.organization_id == organization_id, self.model.status == "active"
            )
        )

    async def list(
        self,
        session: AsyncSession,
        *,
        organization_id: uuid.UUID,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> Sequence[S]:
        """Newest first, keyset-paged on (created_at, id) (the `ix_<table>_org_created` index)."""
        model = self.model
        query = self._scoped(organization_id)
        if after is not None:
            moment, row_id = after
            query = query.where(
                (model.created_at < moment) | ((model.created_at == moment) & (model.id < row_id))
            )
        query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit)
        return (await session.scalars(query)).all()

    async def next_version(
        self, session: AsyncSession, *, organization_id: uuid.UUID, name: str
    ) -> int:
        current = await session.scalar(
            select(func.max(self.model.version)).where(
                self.model.organization_id == organization_id, self.model.name == name
            )
        )
        return (current or 0) + 1

    async def count(self, session: AsyncSession, *, organization_id: uuid.UUID) -> int:
        return (
            await session.scalar(
                select(func.count())
                .select_from(self.model)
                .where(self.model.organization_id == organization_id)
            )
        ) or 0

    async def activate(
        self, session: AsyncSession, *, organization_id: uuid.UUID, set_id: uuid.UUID, now: datetime
    ) -> None:
        """Retire the active set and activate this one. Two statements, in this order, so the
        one-active index never sees two active rows; a concurrent activation that slips in
        between fails on that index (IntegrityError) instead of leaving two."""
        model = self.model
        await session.execute(
            update(model)
            .where(
                model.organization_id == organization_id,
                model.status == "active",
                model.id != set_id,
            )
            .values(status="retired")
        )
        await session.execute(
            update(model).where(model.id == set_id).values(status="active", activated_at=now)
        )
