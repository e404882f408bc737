"""Optimistic concurrency: ETag on reads, If-Match required on updates (412 stale, 428 missing)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError


class PreconditionFailedError(
    AppError, status=412, slug="precondition-failed", title="The record changed since you read it"
): ...


class PreconditionRequiredError(
    AppError, status=428, slug="precondition-required", title="If-Match is required"
): ...


def etag(tag: str) -> str:
    """Quote an opaque tag as a strong entity tag. Prefer `version_etag`/`activation_etag`:
    a bare tag such as a version number is shared by every resource type."""
    return f'"{tag}"'


def scoped_etag(resource_type: str, resource_id: uuid.UUID | str, state: str) -> str:
    """The one ETag format: strong, and scoped to one record of one type
    (`"plan-<id>-v3"`), so an ETag read from one resource can never satisfy If-Match on
    another (a clinical context's `"1"` sent with a plan edit)."""
    return etag(f"{resource_type}-{resource_id}-{state}")


def version_etag(resource_type: str, resource_id: uuid.UUID | str, version: int) -> str:
    """The ETag of a record versioned by a counter: `"patient-<id>-v2"`."""
    return scoped_etag(resource_type, resource_id, f"v{version}")


def activation_etag(
    resource_type: str, resource_id: uuid.UUID | str, status: str, activated_at: datetime | None
) -> str:
    """The ETag of a versioned configuration set (range set, plan rule set): it changes when
    the set is activated or retired (`"range-set-<id>-active@2026-12-01T08:00:00+00:00"`)."""
    stamp = activated_at.isoformat() if activated_at else "never"
    return scoped_etag(resource_type, resource_id, f"{status}@{stamp}")


def if_match_candidates(header: str) -> set[str]:
    """The entity tags listed in an If-Match header (`W/` weak markers ignored)."""
    return {value.strip().removeprefix("W/") for value in header.split(",") if value.strip()}


def require_if_match(request: Request, current: str) -> None:
    """Refuse an update unless If-Match names the record's current ETag (or is `*`)."""
    header = request.headers.get("if-match")
    if header is None:
        raise PreconditionRequiredError(
            "Send If-Match with the ETag from your last read of this record."
        )
    candidates = if_match_candidates(header)
    if "*" in candidates or current in candidates:
        return
    raise PreconditionFailedError(
        "The record was changed by someone else; read it again and reapply your change.",
        current_etag=current,
    )


async def lock_for_update(session: AsyncSession, record: Any) -> None:
    """Re-read ``record``'s row under a row lock held until the transaction ends, so the
    caller checks If-Match against the row as it is now, not as an earlier read saw it.

    ``SELECT ... FOR UPDATE`` on PostgreSQL: of N concurrent writers holding the same ETag,
    one takes the lock and commits; each of the others then reads the committed row, whose
    ETag no longer matches, and gets 412. SQLite has no row locks and needs none: a write
    transaction holds the database write lock from its BEGIN IMMEDIATE."""
    await session.refresh(record, with_for_update=True)
