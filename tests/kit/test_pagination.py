"""app.kit.pagination: the keyset tail every list shares, and the cursors it encodes."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from app.kit.pagination import (
    InvalidCursorError,
    Page,
    decode_cursor,
    decode_optional,
    decode_tagged,
    encode_keyset,
    encode_tagged,
    keyset,
)

START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    at: datetime
    id: uuid.UUID


class Item(BaseModel):
    id: uuid.UUID


class ItemPage(Page[Item]):
    pass


def _rows(count: int) -> list[Row]:
    return [Row(START - timedelta(minutes=n), uuid.uuid4()) for n in range(count)]


def test_a_fetch_of_limit_plus_one_rows_is_cut_and_points_at_the_last_row_kept() -> None:
    rows = _rows(4)

    page = keyset(rows, 3, lambda row: (row.at, row.id))

    assert page.rows == rows[:3]
    assert page.limit == 3
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor) == (rows[2].at, rows[2].id)


@pytest.mark.parametrize("count", [0, 2, 3])
def test_the_last_page_has_no_cursor(count: int) -> None:
    page = keyset(_rows(count), 3, lambda row: (row.at, row.id))

    assert len(page.rows) == count
    assert page.next_cursor is None


def test_a_list_keyed_otherwise_gives_its_own_cursor() -> None:
    rows = _rows(3)

    page = keyset(rows, 2, cursor_of=lambda row: encode_keyset(str(row.id)))

    assert page.next_cursor == encode_keyset(str(rows[1].id))


def test_the_page_body_keeps_the_flat_shape_of_every_list() -> None:
    rows = _rows(3)

    body = keyset(rows, 2, lambda row: (row.at, row.id)).page(ItemPage, lambda r: Item(id=r.id))

    assert list(body.model_dump()) == ["limit", "next_cursor", "items"]
    assert [item.id for item in body.items] == [rows[0].id, rows[1].id]
    assert body.limit == 2
    assert body.next_cursor is not None
    assert ItemPage.model_json_schema()["title"] == "ItemPage"


def test_no_cursor_means_the_first_page() -> None:
    assert decode_optional(None) is None
    assert decode_optional("") is None


def test_a_tagged_cursor_round_trips_and_is_refused_by_another_list() -> None:
    cursor = encode_tagged("audit", 41)

    assert decode_tagged(cursor, "audit") == 41
    with pytest.raises(InvalidCursorError):
        decode_tagged(cursor, "v")


@pytest.mark.parametrize(
    "cursor",
    [
        encode_tagged("v", 0),
        encode_tagged("v", 11),
        "not base64 at all!",
        encode_keyset("1"),
    ],
)
def test_a_tagged_cursor_out_of_range_or_forged_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_tagged(cursor, "v", high=10)


def test_json_true_is_not_a_version() -> None:
    forged = base64.urlsafe_b64encode(b'["v", true]').decode().rstrip("=")

    with pytest.raises(InvalidCursorError):
        decode_tagged(forged, "v")
