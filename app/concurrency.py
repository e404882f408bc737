"""Optimistic concurrency: ETag on reads, If-Match required on updates (412 stale, 428 missing)."""

from __future__ import annotations

from datetime import datetime

from fastapi import Request

from app.errors import AppError


class PreconditionFailedError(AppError):
    status = 412
    type_slug = "precondition-failed"
    title = "The record changed since you read it"


class PreconditionRequiredError(AppError):
    status = 428
    type_slug = "precondition-required"
    title = "If-Match is required"


def etag(tag: str) -> str:
    return f'"{tag}"'


def activation_etag(status: str, activated_at: datetime | None) -> str:
    """The ETag of a versioned configuration set (range set, plan rule set): it changes when
    the set is activated or retired."""
    return etag(f"{status}@{activated_at.isoformat() if activated_at else 'never'}")


def require_if_match(request: Request, current: str) -> None:
    """Refuse an update unless If-Match names the record's current ETag (or is `*`)."""
    header = request.headers.get("if-match")
    if header is None:
        raise PreconditionRequiredError(
            "Send If-Match with the ETag from your last read of this record."
        )
    candidates = {value.strip().removeprefix("W/") for value in header.split(",")}
    if "*" in candidates or current in candidates:
        return
    raise PreconditionFailedError(
        "The record was changed by someone else; read it again and reapply your change.",
        current_etag=current,
    )
