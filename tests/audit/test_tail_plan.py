"""The audit chain's tail is read by its index whatever the statistics say (migration
c9e1a3b5d7f2): once ``audit_event`` had statistics, plpgsql's generic plan of
``WHERE chain = p_chain ORDER BY seq DESC LIMIT 1`` walked the primary key backwards, and an
append to a chain whose last row is far back (or that has none) read the whole table while
holding the chain's lock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.audit.chain import GENESIS_HASH
from app.core.config import to_async_url
from tests.conftest import alembic_config
from tests.explain import buffers

ROWS = 20_000


async def _measured(session: Any, chain: int, expected_prev: str) -> tuple[str | None, int]:
    """What ``audit_append_rows`` with no rows answers, and the buffers its EXPLAIN counted."""
    statement = text(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
        "SELECT audit_append_rows('[]'::jsonb, :prev, CAST(:chain AS smallint))"
    )
    plan = (await session.execute(statement, {"prev": expected_prev, "chain": chain})).scalar()
    touched = buffers((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    answer = (
        await session.execute(
            text("SELECT audit_append_rows('[]'::jsonb, :prev, CAST(:chain AS smallint))"),
            {"prev": expected_prev, "chain": chain},
        )
    ).scalar()
    return answer, touched


async def _in_session_of(
    url: str, fn: Callable[[AsyncSession], Any]
) -> dict[str, tuple[str | None, int]]:
    engine = create_async_engine(to_async_url(url))
    try:
        async with AsyncSession(engine) as session:
            result: dict[str, tuple[str | None, int]] = await fn(session)
            return result
    finally:
        await engine.dispose()


def test_a_chain_tail_is_one_index_read_after_analyze(
    backend: str, scratch_database: Callable[[str], str]
) -> None:
    if backend != "postgresql":
        pytest.skip("the append function and its plans are PostgreSQL's")
    # A database of its own: the session's trail is shared with tests that append to the
    # default 64 chains (each process on 8 picked at random), so no chain of it is known empty.
    url = scratch_database("postgresql")
    command.upgrade(alembic_config(url), "head")

    async def go(session: AsyncSession) -> dict[str, tuple[str | None, int]]:
        # Chain 3's one row comes first, then many rows of chain 0, newest last; chain 7 has
        # none. With statistics, the generic plan is the one plpgsql keeps.
        insert = text(
            "INSERT INTO audit_event (id, occurred_at, action, resource_type, outcome, "
            "prev_hash, hash, chain) SELECT gen_random_uuid(), now(), 'read', 'panel', "
            "'success', :genesis, CASE WHEN g = :last THEN repeat('f', 64) "
            "ELSE repeat('a', 64) END, :chain FROM generate_series(1, :rows) AS g"
        )
        await session.execute(insert, {"genesis": GENESIS_HASH, "last": 1, "chain": 3, "rows": 1})
        await session.execute(
            insert, {"genesis": GENESIS_HASH, "last": ROWS, "chain": 0, "rows": ROWS}
        )
        await session.execute(text("ANALYZE audit_event"))
        await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        seen: dict[str, tuple[str | None, int]] = {}
        for name, chain in (("warm", 7), ("empty", 7), ("far back", 3), ("newest", 0)):
            seen[name] = await _measured(session, chain, GENESIS_HASH)
        await session.rollback()  # nothing of this stays: the rows, the statistics
        return seen

    seen = asyncio.run(_in_session_of(url, go))

    # Each answer is its chain's tail (None: it was the expected one, nothing appended) ...
    assert seen["empty"][0] is None
    assert seen["far back"][0] == "f" * 64
    assert seen["newest"][0] == "f" * 64
    # ... found with a handful of buffers, not by reading the table (~280,000 before).
    for name in ("empty", "far back", "newest"):
        assert seen[name][1] < 50, (name, seen[name])
