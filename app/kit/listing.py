"""What every keyset list route takes and how it answers: the `limit` / `cursor` query
parameters with the request and response the `Link` header needs (`ListQuery`, injected as
`Listing`; with the request's session and organization, `OrganizationListing`), the `from` /
`to` day window (`Days`), and the one call that finishes a page.

A route declares `query: Listing` (or `Annotated[ListQuery, Depends(list_query(100))]` for
another default page size), passes `**query.fetch` to its repository (one row more than the
page, after the cursor's row) and returns `query.page(Model, rows, key)`; a service that cuts
the page itself gets `**query.paging` and its page is returned through `query.linked(...)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Protocol, TypedDict, TypeVar

from fastapi import Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import CurrentOrganizationId
from app.core.deps import AuditedSession
from app.kit.pagination import (
    Cursor,
    Keyset,
    Limit,
    PageMeta,
    decode_optional,
    keyset_page,
    link_next,
)
from app.kit.schemas_common import EARLIEST_DATE

R = TypeVar("R")
PageT = TypeVar("PageT", bound=PageMeta)

LATEST_DATE = date(2999, 12, 31)


class KeysetArgs(TypedDict):
    """A time + id keyset list's page size and lower bound, as repositories take them."""

    limit: int
    after: tuple[datetime, uuid.UUID] | None


class _Paged(Protocol):
    @property
    def next_cursor(self) -> str | None: ...


P = TypeVar("P", bound=_Paged)


class _Created(Protocol):
    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> uuid.UUID: ...


def by_creation(row: _Created) -> tuple[datetime, uuid.UUID]:
    """The keyset of a list newest-created first."""
    return row.created_at, row.id


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A list route's page size and cursor, and the request and response its `Link: rel="next"`
    header is built from."""

    request: Request
    response: Response
    limit: int
    cursor: str | None

    @property
    def after(self) -> tuple[datetime, uuid.UUID] | None:
        """The (time, id) of the last row of the previous page (400 `invalid-cursor` for a
        cursor this API did not issue); None on the first page."""
        return decode_optional(self.cursor)

    @property
    def fetch(self) -> KeysetArgs:
        """One row more than the page, after the cursor's row: `page()` cuts the extra row off
        and knows from it that a next page exists."""
        return {"limit": self.limit + 1, "after": self.after}

    @property
    def paging(self) -> KeysetArgs:
        """The page size and the cursor's row, for a service that cuts the page itself."""
        return {"limit": self.limit, "after": self.after}

    def keyset(
        self,
        rows: Sequence[R],
        key: Callable[[R], tuple[datetime, uuid.UUID]] | None = None,
        *,
        cursor_of: Callable[[R], str] | None = None,
    ) -> Keyset[R]:
        """The page of `rows` (fetched with `fetch`) and its next cursor, `Link` header set."""
        return keyset_page(self.request, self.response, rows, self.limit, key, cursor_of=cursor_of)

    def page(
        self,
        model: type[PageT],
        rows: Sequence[R],
        key: Callable[[R], tuple[datetime, uuid.UUID]] | None = None,
        item: Callable[[R], Any] | None = None,
        *,
        cursor_of: Callable[[R], str] | None = None,
    ) -> PageT:
        """The response body: `model` with the page of `rows`, each made an item by `item`."""
        return self.keyset(rows, key, cursor_of=cursor_of).page(model, item)

    def linked(self, page: P) -> P:
        """`page` (cut by a service, with its `next_cursor`), `Link` header set."""
        link_next(self.request, self.response, page.next_cursor)
        return page


@dataclass(frozen=True, slots=True)
class OrganizationQuery(ListQuery):
    """A list of the caller's organization's records, read in the request's audited session."""

    session: AsyncSession
    organization_id: uuid.UUID


def list_query(default_limit: int = 50) -> Callable[..., ListQuery]:
    """The dependency reading `limit` (default `default_limit`) and `cursor`."""

    def list_query(
        request: Request, response: Response, limit: Limit = default_limit, cursor: Cursor = None
    ) -> ListQuery:
        return ListQuery(request, response, limit, cursor)

    return list_query


Listing = Annotated[ListQuery, Depends(list_query())]
"""`limit` (default 50) and `cursor`."""


def _organization_query(
    session: AuditedSession, organization_id: CurrentOrganizationId, query: Listing
) -> OrganizationQuery:
    return OrganizationQuery(
        query.request, query.response, query.limit, query.cursor, session, organization_id
    )


OrganizationListing = Annotated[OrganizationQuery, Depends(_organization_query)]
"""`limit` (default 50) and `cursor`, the audited session and the caller's organization.
Declare it after the route's scoped principal (a caller without the scope gets 403 first)."""


# `from` / `to` filters (inclusive days, UTC): the sleep assessments, the timeline, the series.
DateFrom = Annotated[
    date | None,
    Query(
        alias="from",
        ge=EARLIEST_DATE,
        le=LATEST_DATE,
        description="Only entries on or after this day (UTC).",
    ),
]
DateTo = Annotated[
    date | None,
    Query(
        alias="to",
        ge=EARLIEST_DATE,
        le=LATEST_DATE,
        description="Only entries on or before this day (UTC).",
    ),
]


class DayBounds(TypedDict):
    """The days `from`..`to`, both inclusive; either may be open."""

    start: date | None
    end: date | None


def _days(date_from: DateFrom = None, date_to: DateTo = None) -> DayBounds:
    return {"start": date_from, "end": date_to}


Days = Annotated[DayBounds, Depends(_days)]
"""The `from` and `to` query parameters, as `start` / `end` (`**days`)."""
