"""One statement straight through asyncpg on a pooled connection (app.core.driver), as the
panel hot paths send theirs: autocommit, the pool's connection handed back (or thrown away
when a statement was cut off), errors exactly as SQLAlchemy raises them (SQLSTATE, DETAIL,
a lost connection recycling the pool and answering 503), no named statements when the
statement cache is off (PgBouncer), and the engine's statement listeners still told."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import make_engine
from app.core.driver import Driver
from app.core.errors import is_database_unavailable

pytestmark = pytest.mark.postgres

T = TypeVar("T")

_RAISE_TAIL_MOVED = (
    "DO $$BEGIN RAISE EXCEPTION 'tail moved' USING ERRCODE = 'MP005', DETAIL = 'the tail'; END$$"
)


@pytest.fixture
def pg_settings(settings: Settings) -> Settings:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the driver path is PostgreSQL's")
    return settings


def _with_engine(settings: Settings, body: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = make_engine(settings)
        try:
            return await body(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _checked_out(engine: AsyncEngine) -> int:
    checked: int = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
    return checked


def test_each_statement_commits_on_its_own_and_the_connection_goes_back_to_the_pool(
    pg_settings: Settings,
) -> None:
    async def body(engine: AsyncEngine) -> None:
        async with Driver(engine) as driver:
            first = await driver.fetchrow("SELECT pg_current_xact_id()::text, pg_backend_pid()")
            second = await driver.fetchrow("SELECT pg_current_xact_id()::text, $1::int + 1", 41)
            none = await driver.fetchrow("SELECT 1 WHERE false")
            assert _checked_out(engine) == 1
        assert first is not None
        assert second is not None
        assert first[0] != second[0]  # two transactions: no BEGIN around them
        assert second[1] == 42
        assert none is None
        assert _checked_out(engine) == 0
        async with Driver(engine) as driver:  # the same pooled connection, still good
            again = await driver.fetchrow("SELECT pg_backend_pid()")
        assert again is not None
        assert again[0] == first[1]

    _with_engine(pg_settings, body)


def test_a_database_error_is_sqlalchemys_dbapi_error_with_its_sqlstate_and_detail(
    pg_settings: Settings,
) -> None:
    async def body(engine: AsyncEngine) -> None:
        async with Driver(engine) as driver:
            pid = await driver.fetchrow("SELECT pg_backend_pid()")
            with pytest.raises(DBAPIError) as raised:
                await driver.fetchrow(_RAISE_TAIL_MOVED)
            after = await driver.fetchrow("SELECT pg_backend_pid()")  # still usable
        error = raised.value
        assert error.orig is not None
        assert getattr(error.orig, "sqlstate", None) == "MP005"
        assert getattr(error.orig, "detail", None) == "the tail"
        assert not error.connection_invalidated
        assert not is_database_unavailable(error)
        assert "the tail" not in str(error.params)  # parameters hidden, as the engine's are
        assert pid is not None
        assert after is not None
        assert pid[0] == after[0]
        assert _checked_out(engine) == 0

    _with_engine(pg_settings, body)


def test_a_lost_connection_is_a_disconnect_answered_503_and_the_pool_recovers(
    pg_settings: Settings,
) -> None:
    async def body(engine: AsyncEngine) -> None:
        async with Driver(engine) as driver:
            pid = await driver.fetchrow("SELECT pg_backend_pid()")
            assert pid is not None
            async with engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid[0]})
            await asyncio.sleep(0.2)
            with pytest.raises((DBAPIError, OSError)) as raised:
                await driver.fetchrow("SELECT 1")
        assert is_database_unavailable(raised.value), repr(raised.value)
        assert _checked_out(engine) == 0
        async with Driver(engine) as driver:
            fresh = await driver.fetchrow("SELECT pg_backend_pid()")
        assert fresh is not None
        assert fresh[0] != pid[0]

    _with_engine(pg_settings, body)


def test_a_statement_cut_off_by_cancellation_is_cancelled_on_the_server_too(
    pg_settings: Settings,
) -> None:
    """A request cancelled mid-statement (the client went away): asyncpg asks the server to
    cancel the statement, and the connection, back in the pool, serves the next request as
    soon as that is done, long before the statement would have ended."""

    async def body(engine: AsyncEngine) -> None:
        started = asyncio.Event()
        pids: list[int] = []

        async def slow() -> None:
            async with Driver(engine) as driver:
                row = await driver.fetchrow("SELECT pg_backend_pid()")
                assert row is not None
                pids.append(row[0])
                started.set()
                await driver.fetchrow("SELECT pg_sleep(30)")

        task = asyncio.create_task(slow())
        await started.wait()
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _checked_out(engine) == 0
        answered = await asyncio.wait_for(_next_statement(engine), timeout=10)
        assert answered == pids[0]  # the same connection, its statement cancelled

    _with_engine(pg_settings, body)


async def _next_statement(engine: AsyncEngine) -> int:
    async with Driver(engine) as driver:
        row = await driver.fetchrow("SELECT pg_backend_pid()")
    assert row is not None
    pid: int = row[0]
    return pid


@pytest.mark.parametrize(("cache_size", "named"), [(0, False), (100, True)])
def test_with_the_statement_cache_off_no_statement_is_prepared_by_name(
    pg_settings: Settings, cache_size: int, named: bool
) -> None:
    """PgBouncer in transaction mode: the next statement may reach another server session,
    so a named prepared statement must never be relied on."""
    settings = pg_settings.model_copy(update={"database_statement_cache_size": cache_size})

    async def body(engine: AsyncEngine) -> None:
        async with Driver(engine) as driver:
            for _ in range(3):
                await driver.fetchrow("SELECT $1::int + 1", 1)
            found = await driver.fetchrow(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%$1::int + 1%'"
            )
        assert found is not None
        assert (found[0] > 0) is named

    _with_engine(settings, body)


def test_the_engines_statement_listeners_see_each_statement_and_open_no_transaction(
    pg_settings: Settings,
) -> None:
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))
        cursor.execute("SELECT 1")  # as tests/test_query_plans.py's EXPLAIN does

    async def body(engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", listener)
        try:
            async with Driver(engine) as driver:
                first = await driver.fetchrow("SELECT pg_current_xact_id()::text, $1::int", 7)
                second = await driver.fetchrow("SELECT pg_current_xact_id()::text")
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", listener)
        assert seen[0] == ("SELECT pg_current_xact_id()::text, $1::int", (7,))
        assert len(seen) == 2
        assert first is not None
        assert second is not None
        assert first[0] != second[0]

    _with_engine(pg_settings, body)


def test_connections_beyond_the_pool_size_are_closed_when_handed_back(
    pg_settings: Settings,
) -> None:
    """Under more concurrent requests than the pool keeps, the extra (overflow) connections
    are closed on the server as they come back, never left open or half-closed."""
    small = pg_settings.model_copy(update={"database_pool_size": 2, "database_max_overflow": 6})
    tag = f"driver-overflow-{id(small)}"

    async def body(engine: AsyncEngine) -> None:
        async def one() -> None:
            async with Driver(engine) as driver:
                await driver.fetchrow(f"SELECT pg_sleep(0.1) /* {tag} */")

        await asyncio.gather(*(one() for _ in range(8)))
        assert _checked_out(engine) == 0
        async with engine.connect() as connection:
            backend = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar()
            # Every backend whose last statement was ours, other than the one asking.
            left = (
                await connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE :tag "
                        "AND pid <> :pid AND query NOT LIKE '%pg_stat_activity%'"
                    ),
                    {"tag": f"%{tag}%", "pid": backend},
                )
            ).scalar()
        assert left is not None
        assert left <= 2  # the pool's own connections; the 6 overflow ones are gone

    _with_engine(small, body)
