"""Cutting NDJSON lines out of a byte stream, whatever the chunk boundaries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from app.batches.service import split_lines


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _lines(*parts: bytes, cap: int = 10) -> list[tuple[int, bytes | None]]:
    async def collect() -> list[tuple[int, bytes | None]]:
        return [item async for item in split_lines(_chunks(*parts), cap)]

    return asyncio.run(collect())


def test_lines_split_across_chunks_are_joined_and_blank_lines_skipped() -> None:
    assert _lines(b'{"a"', b":1}\n\n{}\n", b"{}") == [(1, b'{"a":1}'), (3, b"{}"), (4, b"{}")]


def test_a_line_over_the_cap_is_dropped_as_it_streams_and_numbering_goes_on() -> None:
    assert _lines(b"{}\n" + b"x" * 25, b"y" * 25, b"z\n{}\n") == [(1, b"{}"), (2, None), (3, b"{}")]
    assert _lines(b"x" * 30) == [(1, None)]
