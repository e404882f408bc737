"""Idempotency-Key (IETF httpapi idempotency-key draft, Stripe semantics) for POSTs that create.

The key is claimed by inserting a row under the unique (principal, key) constraint in the
request's own transaction, never by looking first: whichever transaction inserts first owns
the key, across processes and replicas. The response is stored on that row in the same
transaction, so a key is either absent (the first attempt rolled back, a retry runs again) or
committed with its response (a retry replays it).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import new_id, utcnow
from app.idempotency import repository
from app.idempotency.errors import (
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
)
from app.models.idempotency import IdempotencyRecord

MAX_KEY_LENGTH = 255
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired
_PATH_COLUMN = IdempotencyRecord.__table__.c.path.type
_PATH_LENGTH = (_PATH_COLUMN.length if isinstance(_PATH_COLUMN, String) else None) or 500
# Claim attempts: a second one is needed only when an expired record was removed and a
# concurrent request claimed the key in between.
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class StoredResponse:
    """A response as it went out, replayed byte for byte."""

    status: int
    headers: dict[str, str]
    body: bytes


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of the request: method, path (with the query string, when it changes the
    meaning) and the exact body bytes, length-prefixed so no two requests share an encoding."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode()):
        digest.update(f"{len(part)}:".encode())
        digest.update(part)
    digest.update(f"{len(body)}:".encode())
    digest.update(body)
    return digest.hexdigest()


def validate_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= char <= "~" for char in key):
        raise InvalidIdempotencyKeyError(
            f"The Idempotency-Key header must be 1-{MAX_KEY_LENGTH} printable ASCII characters."
        )
    return key


def _lock_timeout(wait_seconds: float) -> str:
    # 0 would mean "wait forever" to PostgreSQL.
    return f"{max(1, round(wait_seconds * 1000))}ms"


async def run_idempotent(
    session: AsyncSession,
    *,
    key: str | None,
    principal_id: str,
    organization_id: uuid.UUID,
    method: str,
    path: str,
    body: bytes,
    retention: timedelta,
    wait_seconds: float,
    lock_timeout_preset: bool = False,
    produce: Callable[[], Awaitable[StoredResponse]],
) -> tuple[StoredResponse, bool]:
    """The response for this request and whether it is a replay of a stored one.

    No key: `produce()` runs. A key claimed now: `produce()` runs and its 2xx response is stored
    (any other status releases the key). A key already used by this principal with the same
    method, path and body: the stored response, `produce()` is not called. With another
    request: 422. While the first request is still running (PostgreSQL; SQLite serializes
    writers, so a retry there waits for the first to commit): 409 after `wait_seconds`.
    An exception from `produce()` must roll the transaction back, which also frees the key.
    """
    if key is None:
        return await produce(), False
    validate_key(key)
    request_fingerprint = fingerprint(method, path, body)
    now = utcnow()

    postgres = session.get_bind().dialect.name == "postgresql"
    previous_timeout = None
    try:
        if postgres and not lock_timeout_preset:
            previous_timeout = await repository.swap_lock_timeout(
                session, _lock_timeout(wait_seconds)
            )
        record_id, replay = await _claim_or_find(
            session,
            key=key,
            principal_id=principal_id,
            organization_id=organization_id,
            method=method,
            path=path,
            fingerprint=request_fingerprint,
            now=now,
            retention=retention,
        )
        if previous_timeout is not None:
            # Only the claim is bounded by wait_seconds: produce() and a later audit append
            # (which queues on the chain's lock) keep the caller's own timeout.
            await repository.set_lock_timeout(session, previous_timeout)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise _in_flight(wait_seconds) from exc
        raise

    if replay is not None:
        return replay, True
    assert record_id is not None
    response = await produce()
    if 200 <= response.status < 300:
        await repository.complete(
            session,
            record_id=record_id,
            status=response.status,
            headers=response.headers,
            body=response.body,
        )
    else:
        await repository.delete_record(session, record_id=record_id)
    return response, False


def _in_flight(wait_seconds: float) -> IdempotencyKeyInFlightError:
    return IdempotencyKeyInFlightError(
        "A request with this Idempotency-Key is still being processed; retry it later.",
        retry_after_seconds=max(1, math.ceil(wait_seconds)),
    )


def claim_values(
    *,
    key: str,
    principal_id: str,
    organization_id: uuid.UUID,
    method: str,
    path: str,
    fingerprint: str,
    now: datetime,
    retention: timedelta,
) -> dict[str, Any]:
    """The columns of a new in-flight record (a fresh id each call)."""
    return {
        "id": new_id(),
        "organization_id": organization_id,
        "principal_id": principal_id,
        "key": key,
        "method": method.upper()[:10],
        "path": path[:_PATH_LENGTH],
        "fingerprint": fingerprint,
        "status": "in_flight",
        "created_at": now,
        "expires_at": now + retention,
    }


def completed_values(claim: dict[str, Any], response: StoredResponse) -> dict[str, Any]:
    """The record ``claim_values`` describes once ``complete`` stored `response` on it: what a
    one-statement writer inserts directly (app.panels.fast_post)."""
    return {
        **claim,
        "status": "completed",
        "response_status": response.status,
        "response_headers": response.headers,
        "response_body": response.body,
    }


async def _claim_or_find(
    session: AsyncSession,
    *,
    key: str,
    principal_id: str,
    organization_id: uuid.UUID,
    method: str,
    path: str,
    fingerprint: str,
    now: datetime,
    retention: timedelta,
) -> tuple[uuid.UUID | None, StoredResponse | None]:
    """(id of our new claim, None) or (None, the stored response to replay)."""
    for _attempt in range(_CLAIM_ATTEMPTS):
        record_id = await repository.claim(
            session,
            claim_values(
                key=key,
                principal_id=principal_id,
                organization_id=organization_id,
                method=method,
                path=path,
                fingerprint=fingerprint,
                now=now,
                retention=retention,
            ),
        )
        if record_id is not None:
            return record_id, None
        existing = await repository.get(session, principal_id=principal_id, key=key)
        if existing is None:
            continue  # removed (purged) between the two statements: claim again
        if existing.expires_at < now:
            # Expired records count as absent. The expiry condition makes a concurrent
            # replacement (a fresh record under the same id cannot exist) safe to race.
            await repository.delete_record(session, record_id=existing.id, expired_before=now)
            continue
        # A principal can act for more than one organization (an OIDC user's token names it):
        # a key used in another organization is another request, never a replay there.
        if existing.fingerprint != fingerprint or existing.organization_id != organization_id:
            raise IdempotencyKeyReusedError(
                "This Idempotency-Key was already used with a different request; "
                "use a new key for a new request."
            )
        if existing.status != "completed":
            # Only reachable if a transaction committed its claim without a response.
            raise _in_flight(1)
        return None, StoredResponse(
            status=existing.response_status,
            headers=dict(existing.response_headers or {}),
            body=bytes(existing.response_body or b""),
        )
    raise _in_flight(1)


async def purge_expired(session: AsyncSession, *, now: datetime) -> int:
    """Delete the records whose retention ended before `now`; how many were deleted."""
    return await repository.delete_expired(session, now=now)
