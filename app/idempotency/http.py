"""Run a creating POST under its Idempotency-Key and audit a replay like any other read."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import orjson
from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.context import audit_target, draft_of
from app.auth.principal import Principal
from app.config import Settings
from app.idempotency.deps import request_target, stored_response
from app.idempotency.service import StoredResponse, run_idempotent


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
        # app.db sets lock_timeout to this wait on every PostgreSQL connection.
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
