"""Moved to app.kit.pagination; this re-export stays until every import points there."""

from app.kit.pagination import (
    Cursor,
    InvalidCursorError,
    Keyset,
    Limit,
    Page,
    PageMeta,
    decode_cursor,
    decode_keyset,
    decode_optional,
    encode_cursor,
    encode_keyset,
    keyset,
    keyset_page,
    link_next,
)

__all__ = [
    "Cursor",
    "InvalidCursorError",
    "Keyset",
    "Limit",
    "Page",
    "PageMeta",
    "decode_cursor",
    "decode_keyset",
    "decode_optional",
    "encode_cursor",
    "encode_keyset",
    "keyset",
    "keyset_page",
    "link_next",
]
