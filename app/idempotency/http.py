"""Run a creating POST under its Idempotency-Key and audit a replay like any other read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, TypeVar

import orjson
from fastapi import Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.context import audit_target, draft_of
from app.auth.deps import CurrentPrincipal
from app.auth.principal import Principal
from app.core.config import Settings
from app.core.deps import AuditedSession, SettingsDep, audited_transaction
from app.idempotency.deps import IdempotencyKey, request_target, stored_response
from app.idempotency.service import StoredResponse, run_idempotent

M = TypeVar("M", bound=BaseModel)


def json_response(body: bytes, status: int, **headers: str) -> StoredResponse:
    return StoredResponse(
        status=status, headers={"content-type": "application/json", **headers}, body=body
    )


async def idempotent(
    request: Request,
    session: AsyncSession,
    *,
    principal: Principal,
    settings: Settings,
    key: str | None,
    produce: Callable[[], Awaitable[StoredResponse]],
) -> Response:
    stored, replayed = await run_idempotent(
        session,
        key=key,
        principal_id=principal.id,
        organization_id=principal.organization_id,
        method=request.method,
        path=request_target(request),
        body=await request.body(),
        retention=timedelta(hours=settings.idempotency_retention_hours),
        wait_seconds=settings.idempotency_wait_seconds,
        # app.core.db sets lock_timeout to this wait on every PostgreSQL connection.
        lock_timeout_preset=True,
        produce=produce,
    )
    if replayed:
        _audit_replay(request, stored)
    return stored_response(stored, replayed=replayed)


def _audit_replay(request: Request, stored: StoredResponse) -> None:
    """A replay discloses the stored record again: audit it as a read of that record."""
    draft = draft_of(request.state)
    if draft is None:
        return
    document = orjson.loads(stored.body) if stored.body else {}
    record_id = document.get("id") if isinstance(document, dict) else None
    patient = document.get("patient_id") if isinstance(document, dict) else None
    if draft.resource_type == "patient":
        patient = record_id
    audit_target(
        request,
        action="read",
        resource_id=record_id,
        patient_id=uuid.UUID(patient) if patient else None,
        status_code=stored.status,
    )


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A creating route's Idempotency-Key, with everything needed to honour it (inject it as
    `idem: Idem`): the route only says what it creates and where it lives."""

    request: Request
    session: AsyncSession
    principal: Principal
    settings: Settings
    key: str | None

    async def run(self, produce: Callable[[], Awaitable[StoredResponse]]) -> Response:
        """For responses that are not a plain 201 (e.g. a panel re-posted answers 200)."""
        return await idempotent(
            self.request,
            self.session,
            principal=self.principal,
            settings=self.settings,
            key=self.key,
            produce=produce,
        )

    async def created(
        self,
        produce: Callable[[], Awaitable[M]],
        *,
        location: Callable[[M], str],
        etag: Callable[[M], str] | None = None,
    ) -> Response:
        """201 with the produced model as JSON, its `Location` (and `ETag`), stored under the
        key so a retry replays it byte for byte."""

        async def stored() -> StoredResponse:
            out = await produce()
            headers = {"location": location(out)}
            if etag is not None:
                headers["etag"] = etag(out)
            return json_response(out.model_dump_json().encode(), 201, **headers)

        return await self.run(stored)


# The same session and principal the route gets (FastAPI caches both per request), so the key
# is claimed in the request's own transaction.
async def _idempotency(
    request: Request,
    session: AuditedSession,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Idempotency:
    return Idempotency(request, session, principal, settings, idempotency_key)


Idem = Annotated[Idempotency, Depends(_idempotency)]


@dataclass(slots=True)
class DeferredIdempotency:
    """A creating route's Idempotency-Key for a route with a hot path that answers without
    the request's session (inject it as `idem: DeferredIdem`): the key and the settings now,
    the audited transaction only when the plain path runs, opened once:

        async with idem.transaction(principal) as bound:
            return await bound.run(produce)  # bound.session is the request's session

    The block is the `AuditedSession` transaction: the audit row is its last statement, it
    commits when the block ends (before the answer leaves) and rolls back on any error."""

    request: Request
    settings: Settings
    key: str | None
    _opened: bool = field(default=False, repr=False)

    @asynccontextmanager
    async def transaction(self, principal: Principal) -> AsyncIterator[Idempotency]:
        if self._opened:
            raise RuntimeError("one transaction per request")
        self._opened = True
        async with audited_transaction(self.request) as session:
            yield Idempotency(self.request, session, principal, self.settings, self.key)


# One dependency node, the header its only input. The transaction opens in the route's body,
# after every dependency (authentication included): no credential lookup ever waits while
# this request holds a pool connection.
async def _deferred_idempotency(
    request: Request, idempotency_key: IdempotencyKey = None
) -> DeferredIdempotency:
    return DeferredIdempotency(request, request.app.state.settings, idempotency_key)


DeferredIdem = Annotated[DeferredIdempotency, Depends(_deferred_idempotency)]
