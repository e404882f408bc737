"""Import and activation of versioned sets, both under a savepoint.

The savepoint matters: a concurrent import or activation fails on the one-active index (or on
the unique version) with an IntegrityError; rolling back to the savepoint keeps the request's
transaction usable, so the 409 and its audit row are still written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import new_id, utcnow
from app.core.errors import ConflictError, NotFoundError
from app.kit.concurrency import lock_for_update
from app.kit.versioned_sets.model import VersionedSet
from app.kit.versioned_sets.repository import VersionedSetRepository

S = TypeVar("S", bound=VersionedSet)


class SetHeader(Protocol):
    """What every set document names about itself (RangeSetDocument, RuleSetDocument)."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def source(self) -> str: ...


@asynccontextmanager
async def savepoint(session: AsyncSession, conflict: str) -> AsyncIterator[None]:
    """The block under a savepoint; an IntegrityError in it (a concurrent import or activation
    won) rolls back to the savepoint and becomes a 409 with the `conflict` message."""
    try:
        async with session.begin_nested():
            yield
    except IntegrityError as exc:
        raise ConflictError(conflict) from exc


class Importer(Protocol):
    """A domain's `import_document`."""

    def __call__(
        self, session: AsyncSession, /, *, organization_id: uuid.UUID, document: Any, activate: bool
    ) -> Awaitable[object]: ...


@dataclass(frozen=True)
class SetLifecycle(Generic[S]):
    """Storing, loading and activating one kind of set.

    `noun` names the set in a conflict ("range set"), `title` in a 404 ("reference-range
    set")."""

    repository: VersionedSetRepository[S]
    noun: str
    title: str

    async def get_or_raise(
        self, session: AsyncSession, *, organization_id: uuid.UUID, set_id: uuid.UUID
    ) -> S:
        found = await self.repository.get(session, organization_id=organization_id, set_id=set_id)
        if found is None:
            raise NotFoundError(f"No such {self.title}.")
        return found

    async def loaded_or_raise(
        self, session: AsyncSession, *, organization_id: uuid.UUID, set_id: uuid.UUID
    ) -> S:
        found = await self.repository.get_loaded(
            session, organization_id=organization_id, set_id=set_id
        )
        if found is None:
            raise NotFoundError(f"No such {self.title}.")
        return found

    async def draft(
        self,
        session: AsyncSession,
        *,
        organization_id: uuid.UUID,
        header: SetHeader,
        **columns: Any,
    ) -> S:
        """A new, unsaved draft: the next version of `header.name`, plus the model's own
        `columns`. Two concurrent imports may pick one number; the unique version refuses the
        second in `store` (409)."""
        version = await self.repository.next_version(
            session, organization_id=organization_id, name=header.name
        )
        new_set = self.repository.model(**columns)
        new_set.id = new_id()
        new_set.organization_id = organization_id
        new_set.name = header.name
        new_set.version = version
        new_set.status = "draft"
        new_set.description = header.description
        new_set.source = header.source
        new_set.created_at = utcnow()
        return new_set

    async def store(
        self,
        session: AsyncSession,
        new_set: S,
        *,
        activate: bool,
        add_children: Callable[[S], Awaitable[None]] | None = None,
    ) -> S:
        """Insert `new_set` (numbered by the caller with `repository.next_version`), its
        children, and activate it when asked: all or nothing."""
        async with savepoint(
            session, f"Another import of this {self.noun} finished at the same time; retry."
        ):
            session.add(new_set)
            await session.flush()
            if add_children is not None:
                await add_children(new_set)
            if activate:
                await self._activate(session, new_set)
        return new_set

    async def ensure_default(
        self,
        session: AsyncSession,
        organization_id: uuid.UUID,
        importer: Importer,
        default: Callable[[], object],
    ) -> bool:
        """Import and activate the shipped set (`default()`) when the organization has no set
        at all (never when it has only retired or draft ones: an admin chose those)."""
        if await self.repository.count(session, organization_id=organization_id):
            return False
        await importer(session, organization_id=organization_id, document=default(), activate=True)
        return True

    async def activate(
        self,
        session: AsyncSession,
        *,
        organization_id: uuid.UUID,
        set_id: uuid.UUID,
        precondition: Callable[[S], None] | None = None,
    ) -> S:
        """Activate the set. ``precondition`` (the caller's If-Match check) runs on the row
        locked for this transaction, so it sees every activation committed before it."""
        found = await self.get_or_raise(session, organization_id=organization_id, set_id=set_id)
        # Concurrent activations with one If-Match: exactly one wins, the others get 412.
        await lock_for_update(session, found)
        if precondition is not None:
            precondition(found)
        if found.status != "active":
            async with savepoint(
                session, f"Another {self.noun} was activated at the same time; retry."
            ):
                await self._activate(session, found)
        return found

    async def _activate(self, session: AsyncSession, target: S) -> None:
        now = utcnow()
        await self.repository.activate(
            session, organization_id=target.organization_id, set_id=target.id, now=now
        )
        target.status = "active"
        target.activated_at = now
