"""Keyset pagination: opaque cursors that encode the sort key of the last item returned.

Every list fetches one row more than the page size: that extra row says whether a next page
exists without a COUNT, and `keyset` / `keyset_page` cut it off and encode the cursor.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import urlencode

import orjson
from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from app.core.errors import AppError
from app.kit.schemas_common import representable_in_utc

T = TypeVar("T")
R = TypeVar("R")


class InvalidCursorError(
    AppError, status=400, slug="invalid-cursor", title="Invalid pagination cursor"
): ...


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
        if not representable_in_utc(moment_at):  # none we issue is: stored times are UTC
            raise ValueError("cursor time outside the years 1 to 9999 in UTC")
        return moment_at, uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidCursorError("The cursor is not one this API returned.") from exc


def decode_optional(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The `after` bound of a time + id keyset list: None for the first page."""
    return decode_cursor(cursor) if cursor else None


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


def encode_tagged(tag: str, value: int) -> str:
    """A cursor over one integer sort key (an audit seq, a version), tagged with its list so a
    cursor of one list is refused by another."""
    return base64.urlsafe_b64encode(orjson.dumps([tag, value])).decode().rstrip("=")


def decode_tagged(cursor: str, tag: str, *, high: int | None = None) -> int:
    """The integer of a cursor from `encode_tagged(tag, ...)`, 1 <= value (<= high)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        found, value = orjson.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidCursorError("The cursor is not one this API returned.") from exc
    if (
        found != tag
        or not isinstance(value, int)
        or isinstance(value, bool)  # JSON true is an int to Python
        or value < 1
        or (high is not None and value > high)
    ):
        raise InvalidCursorError("The cursor is not one this API returned.")
    return value


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


class Page(PageMeta, Generic[T]):
    """A list response: `limit`, `next_cursor` and `items`, flat (the shape every list has
    always returned). Subclass it with a name (`class PatientPage(Page[PatientOut])`) so the
    OpenAPI schema keeps a readable name."""

    items: list[T]


PageT = TypeVar("PageT", bound=PageMeta)


@dataclass(frozen=True, slots=True)
class Keyset(Generic[R]):
    """One page of rows, the page size asked for and the next page's cursor (None on the
    last)."""

    rows: list[R]
    limit: int
    next_cursor: str | None

    def page(self, model: type[PageT], item: Callable[[R], Any] | None = None) -> PageT:
        """The response body: `model` (a `Page[...]`) with each row made an item by `item`
        (rows that already are items by default)."""
        return model.model_validate(
            {
                "items": self.rows if item is None else [item(row) for row in self.rows],
                "limit": self.limit,
                "next_cursor": self.next_cursor,
            }
        )


def keyset(
    rows: Sequence[R],
    limit: int,
    key: Callable[[R], tuple[datetime, uuid.UUID]] | None = None,
    *,
    cursor_of: Callable[[R], str] | None = None,
) -> Keyset[R]:
    """Cuts `rows` (fetched with `limit + 1`) to the page and encodes the next cursor from the
    last row kept: `key` gives its (time, id) sort key, or `cursor_of` the whole cursor for
    lists keyed otherwise."""
    page = list(rows[:limit])
    if len(rows) <= limit:
        return Keyset(page, limit, None)
    last = page[-1]
    if cursor_of is not None:
        return Keyset(page, limit, cursor_of(last))
    if key is None:
        raise TypeError("keyset() needs key or cursor_of")
    return Keyset(page, limit, encode_cursor(*key(last)))


def keyset_page(
    request: Request,
    response: Response,
    rows: Sequence[R],
    limit: int,
    key: Callable[[R], tuple[datetime, uuid.UUID]] | None = None,
    *,
    cursor_of: Callable[[R], str] | None = None,
) -> Keyset[R]:
    """`keyset` plus the `Link: rel="next"` header: the whole tail of a list route."""
    page = keyset(rows, limit, key, cursor_of=cursor_of)
    link_next(request, response, page.next_cursor)
    return page


def link_next(request: Request, response: Response, next_cursor: str | None) -> None:
    """Sets the RFC 8288 ``Link: <...>; rel="next"`` header beside the body's `next_cursor`:
    the request's own URL with `cursor` replaced (every other query parameter kept). Nothing is
    set on the last page."""
    if next_cursor is None:
        return
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    url = request.url.replace(query=urlencode([*kept, ("cursor", next_cursor)]))
    response.headers.append("Link", f'<{url}>; rel="next"')
