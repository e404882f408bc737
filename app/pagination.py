"""Keyset pagination: opaque cursors that encode the sort key of the last item returned."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

import orjson
from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from app.errors import AppError


class InvalidCursorError(AppError):
    status = 400
    type_slug = "invalid-cursor"
    title = "Invalid pagination cursor"


def encode_cursor(moment: datetime, row_id: uuid.UUID) -> str:
    raw = orjson.dumps([moment.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment, row_id = orjson.loads(base64.urlsafe_b64decode(padded))
        moment_at = datetime.fromisoformat(moment)
        if moment_at.tzinfo is None:  # every cursor we issue has an offset; the columns need one
            raise ValueError("cursor time without a UTC offset")
        return moment_at, uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidCursorError("The cursor is not one this API returned.") from exc


def encode_keyset(*parts: str) -> str:
    """A cursor over any sort key given as strings (for lists not keyed by time + id)."""
    return base64.urlsafe_b64encode(orjson.dumps(["k", *parts])).decode().rstrip("=")


def decode_keyset(cursor: str, size: int) -> tuple[str, ...]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = orjson.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidCursorError("The cursor is not one this API returned.") from exc
    if (
        not isinstance(raw, list)
        or len(raw) != size + 1
        or raw[0] != "k"
        or not all(isinstance(p, str) for p in raw[1:])
    ):
        raise InvalidCursorError("The cursor is not one this API returned.")
    return tuple(raw[1:])


Limit = Annotated[int, Query(ge=1, le=200, description="Page size (1-200).")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=200,
        description="Opaque cursor from the previous page's `next_cursor`; omit it for the "
        "first page.",
    ),
]


class PageMeta(BaseModel):
    limit: int = Field(description="The page size applied.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` to fetch the next page; null on the last page."
    )


def link_next(request: Request, response: Response, next_cursor: str | None) -> None:
    """Sets the RFC 8288 ``Link: <...>; rel="next"`` header beside the body's `next_cursor`:
    the request's own URL with `cursor` replaced (every other query parameter kept). Nothing is
    set on the last page."""
    if next_cursor is None:
        return
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    url = request.url.replace(query=urlencode([*kept, ("cursor", next_cursor)]))
    response.headers.append("Link", f'<{url}>; rel="next"')
