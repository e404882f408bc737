"""Builders for Idempotency-Key tests: a counting producer and a call in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.service import StoredResponse, fingerprint, run_idempotent
from app.models.idempotency import IdempotencyRecord

RETENTION = timedelta(hours=24)
PATH = "/api/v1/panels"


class Producer:
    """Counts its calls; each call answers a new resource, so a replay is recognisable."""

    def __init__(self, status: int = 201) -> None:
        self.status = status
        self.calls = 0

    async def __call__(self) -> StoredResponse:
        self.calls += 1
        resource_id = uuid.uuid4()
        return StoredResponse(
            status=self.status,
            headers={"content-type": "application/json", "location": f"{PATH}/{resource_id}"},
            body=orjson.dumps({"id": str(resource_id), "call": self.calls}),
        )


def new_principal() -> str:
    return f"key:{uuid.uuid4()}"


def organization_of(principal_id: str) -> uuid.UUID:
    """The principal's own organization in these tests (one per principal id)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, principal_id)


def idempotent(
    *,
    key: str | None,
    principal_id: str,
    body: bytes,
    produce: Callable[[], Awaitable[StoredResponse]],
    path: str = PATH,
    wait_seconds: float = 5.0,
    retention: timedelta = RETENTION,
    organization_id: uuid.UUID | None = None,
) -> Callable[[AsyncSession], Awaitable[tuple[StoredResponse, bool]]]:
    """run_idempotent as a function of the session, for `db.in_session`. The organization is
    the principal's own (one per principal id) unless one is named."""
    organization = organization_id or organization_of(principal_id)

    async def go(session: AsyncSession) -> tuple[StoredResponse, bool]:
        return await run_idempotent(
            session,
            key=key,
            principal_id=principal_id,
            organization_id=organization,
            method="POST",
            path=path,
            body=body,
            retention=retention,
            wait_seconds=wait_seconds,
            produce=produce,
        )

    return go


async def store_record(
    session: AsyncSession,
    *,
    principal_id: str,
    key: str,
    body: bytes,
    expires_at: datetime,
) -> None:
    """A completed record as an earlier request would have left it."""
    await session.execute(
        insert(IdempotencyRecord).values(
            id=uuid.uuid4(),
            organization_id=organization_of(principal_id),
            principal_id=principal_id,
            key=key,
            method="POST",
            path=PATH,
            fingerprint=fingerprint("POST", PATH, body),
            status="completed",
            response_status=201,
            response_headers={"content-type": "application/json"},
            response_body=b'{"old": true}',
            created_at=expires_at - RETENTION,
            expires_at=expires_at,
        )
    )


async def records_of(session: AsyncSession, principal_id: str) -> list[dict[str, Any]]:
    result = await session.execute(
        select(*IdempotencyRecord.__table__.c).where(IdempotencyRecord.principal_id == principal_id)
    )
    return [row._asdict() for row in result]
