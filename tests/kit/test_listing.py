"""app.kit.listing: the page size and cursor every list takes, and the one call that finishes
its page (cut, next cursor, `Link` header)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import Request, Response
from pydantic import BaseModel

from app.kit.listing import ListQuery, by_creation
from app.kit.pagination import InvalidCursorError, Page, decode_cursor, encode_cursor

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    created_at: datetime
    id: uuid.UUID


class Item(BaseModel):
    id: uuid.UUID


class ItemPage(Page[Item]):
    pass


def _rows(count: int) -> list[Row]:
    return [Row(START - timedelta(minutes=n), uuid.uuid4()) for n in range(count)]


def _query(limit: int, cursor: str | None = None, query_string: bytes = b"") -> ListQuery:
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "server": ("testserver", 80),
            "root_path": "",
            "path": "/api/v1/things",
            "query_string": query_string,
            "headers": [],
        }
    )
    return ListQuery(request, Response(), limit, cursor)


def test_a_repository_is_asked_for_one_row_more_than_the_page_after_the_cursor() -> None:
    last = _rows(1)[0]
    query = _query(3, encode_cursor(last.created_at, last.id))

    assert query.fetch == {"limit": 4, "after": (last.created_at, last.id)}
    assert query.paging == {"limit": 3, "after": (last.created_at, last.id)}


def test_the_first_page_has_no_lower_bound() -> None:
    assert _query(50).fetch == {"limit": 51, "after": None}


def test_a_cursor_this_api_never_issued_is_refused_when_read() -> None:
    with pytest.raises(InvalidCursorError):
        _ = _query(50, "not-ours").after


def test_a_page_is_cut_to_its_size_and_links_the_next_one_keeping_the_other_parameters() -> None:
    rows = _rows(4)
    query = _query(3, query_string=b"flag=L&limit=3")

    page = query.page(ItemPage, rows, by_creation, lambda row: Item(id=row.id))

    assert [item.id for item in page.items] == [row.id for row in rows[:3]]
    assert page.limit == 3
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor) == (rows[2].created_at, rows[2].id)
    assert query.response.headers["link"] == (
        f'<http://testserver/api/v1/things?flag=L&limit=3&cursor={page.next_cursor}>; rel="next"'
    )


def test_the_last_page_has_no_cursor_and_no_link() -> None:
    query = _query(3)

    page = query.page(ItemPage, _rows(3), by_creation, lambda row: Item(id=row.id))

    assert page.next_cursor is None
    assert "link" not in query.response.headers


def test_a_page_a_service_cut_itself_is_linked_as_it_is() -> None:
    query = _query(2)
    page = ItemPage(items=[], limit=2, next_cursor="abc")

    assert query.linked(page) is page
    assert query.response.headers["link"].endswith('?cursor=abc>; rel="next"')


def test_lists_newest_created_first_key_on_creation_time_then_id() -> None:
    row = _rows(1)[0]

    assert by_creation(row) == (row.created_at, row.id)
