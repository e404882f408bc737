"""SQLite's hot writes without SQLAlchemy's per-statement machinery (issue 15): precompiled
statements send exactly what ``connection.execute`` sends, ``write_transaction`` writes all or
nothing and waits for the lock without holding the loop, and WAL checkpoints run on a thread
of their own while the log stays bounded."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    bindparam,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import sqlite_inline, sqlite_raw
from app.core.config import Settings
from app.core.db import DecimalType, UTCDateTime, make_engine
from app.core.sqlite_raw import Precompiled, execute_precompiled, write_transaction

_METADATA = MetaData()
_SAMPLE = Table(
    "sample",
    _METADATA,
    Column("id", Uuid(), primary_key=True),
    Column("taken_at", UTCDateTime(), nullable=False),
    Column("born", Date(), nullable=True),
    Column("value", DecimalType(), nullable=True),
    Column("extra", JSON(), nullable=True),
    Column("note", String(40), nullable=True),
)
_WITH_DEFAULT = Table(
    "with_default",
    _METADATA,
    Column("id", Integer, primary_key=True),
    Column("made", String(10), default="python"),
)
_INSERT = insert(_SAMPLE)
_READ = select(_SAMPLE.c.id, _SAMPLE.c.taken_at, _SAMPLE.c.born, _SAMPLE.c.value).where(
    _SAMPLE.c.note == bindparam("note"), _SAMPLE.c.extra.is_not(None), _SAMPLE.c.value != "0"
)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Any:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'raw.db'}", environment="test")

    async def made() -> AsyncEngine:
        engine = make_engine(settings)
        async with engine.begin() as connection:
            await connection.run_sync(_METADATA.create_all)
        return engine

    engine = asyncio.run(made())
    yield engine
    asyncio.run(engine.dispose())


def _row(number: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "taken_at": datetime(2026, 11, 20, 8, 30, number % 60, 123456, tzinfo=UTC),
        "born": date(1980, 1, 1),
        "value": Decimal("0.62000"),
        "extra": {"low": "0.7", "n": number},
        "note": f"n-{number}",
    }


def _sent(engine: AsyncEngine, run: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def before(_c: Any, _cur: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if not statement.startswith(("BEGIN", "COMMIT")):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        asyncio.run(run())
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
    return seen


def test_precompiled_statements_send_the_sql_and_values_sqlalchemy_sends(
    sqlite_engine: AsyncEngine,
) -> None:
    rows = [_row(1), _row(2)]
    one = _row(3)

    async def ordinary() -> None:
        async with sqlite_engine.begin() as connection:
            await connection.execute(_INSERT, rows)
            await connection.execute(_INSERT, one)
            await connection.execute(_READ, {"note": "n-3"})
            await connection.rollback()

    async def precompiled() -> None:
        async with sqlite_engine.begin() as connection:
            await execute_precompiled(connection, _INSERT, rows)
            await execute_precompiled(connection, _INSERT, one)
            await execute_precompiled(connection, _READ, {"note": "n-3"})
            await connection.rollback()

    expected = _sent(sqlite_engine, ordinary)
    assert len(expected) == 3
    # SQLAlchemy hands sqlite3 lists or tuples: the values, in order, are what must agree.
    assert [
        (sql, [tuple(p) for p in ps] if isinstance(ps, list) else tuple(ps))
        for sql, ps in _sent(sqlite_engine, precompiled)
    ] == [
        (sql, [tuple(p) for p in ps] if isinstance(ps, list) else tuple(ps)) for sql, ps in expected
    ]


def test_precompiled_rows_come_back_typed_as_sqlalchemys_do(sqlite_engine: AsyncEngine) -> None:
    stored = _row(4)

    async def both() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        async with sqlite_engine.begin() as connection:
            await connection.execute(_INSERT, stored)
            ordinary = [tuple(r) for r in await connection.execute(_READ, {"note": "n-4"})]
            ours = await execute_precompiled(connection, _READ, {"note": "n-4"})
            return ordinary, ours

    ordinary, ours = asyncio.run(both())
    assert (
        ours == ordinary == [(stored["id"], stored["taken_at"], date(1980, 1, 1), Decimal("0.62"))]
    )


def test_a_statement_with_python_side_defaults_keeps_the_ordinary_path(
    sqlite_engine: AsyncEngine,
) -> None:
    with pytest.raises(sqlite_raw.NotPrecompilable):
        Precompiled(insert(_WITH_DEFAULT), sqlite_engine.dialect, ("id",))

    async def go() -> list[tuple[Any, ...]]:
        async with sqlite_engine.begin() as connection:
            await execute_precompiled(connection, insert(_WITH_DEFAULT), {"id": 1})
            return [tuple(r) for r in await connection.execute(select(_WITH_DEFAULT))]

    assert asyncio.run(go()) == [(1, "python")]


def _count(engine: AsyncEngine) -> int:
    async def go() -> int:
        async with engine.connect() as connection:
            return int((await connection.execute(text("SELECT count(*) FROM sample"))).scalar_one())

    return asyncio.run(go())


def test_a_write_transaction_commits_all_or_nothing_and_is_seen_by_listeners(
    sqlite_engine: AsyncEngine,
) -> None:
    seen: list[str] = []
    event.listen(
        sqlite_engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_rest: seen.append(statement),
    )

    async def written() -> None:
        async with sqlite_engine.connect() as connection, write_transaction(connection):
            await execute_precompiled(connection, _INSERT, [_row(5), _row(6)])

    async def refused() -> None:
        async with sqlite_engine.connect() as connection, write_transaction(connection):
            await execute_precompiled(connection, _INSERT, _row(7))
            raise LookupError("refused after a write")

    asyncio.run(written())
    with pytest.raises(LookupError):
        asyncio.run(refused())

    assert _count(sqlite_engine) == 2
    assert seen[0] == "BEGIN IMMEDIATE"
    assert seen[1].startswith("INSERT INTO sample ")


def test_a_write_transaction_waits_for_the_lock_on_the_loop_then_gives_up_as_locked(
    sqlite_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_SECONDS", 0.3)
    holder = sqlite3.connect(tmp_path / "raw.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def write(release_after: float | None) -> None:
        ticking = asyncio.create_task(tick())
        if release_after is not None:
            asyncio.get_running_loop().call_later(release_after, holder.rollback)
        try:
            async with sqlite_engine.connect() as connection, write_transaction(connection):
                await execute_precompiled(connection, _INSERT, _row(8))
        finally:
            ticking.cancel()

    try:
        with pytest.raises(OperationalError, match="database is locked"):
            asyncio.run(write(None))
        assert ticks >= 10  # the loop went on while the write waited
        asyncio.run(write(0.1))  # released within the bound: written
    finally:
        holder.close()
    assert _count(sqlite_engine) == 1


def test_commits_are_checkpointed_by_a_thread_and_the_log_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BACKSTOP_PAGES", 100)
    monkeypatch.setattr(sqlite_inline, "PAUSE_SECONDS", 0.005)
    path = tmp_path / "wal.db"
    engine = make_engine(Settings(database_url=f"sqlite:///{path}", environment="test"))
    checkpointing: list[str] = []
    real_run = sqlite_inline.WalCheckpointer._run

    def spied(self: sqlite_inline.WalCheckpointer) -> None:
        checkpointing.append(threading.current_thread().name)
        real_run(self)

    monkeypatch.setattr(sqlite_inline.WalCheckpointer, "_run", spied)
    largest = 0

    async def go() -> list[Any]:
        nonlocal largest
        async with engine.begin() as connection:
            await connection.run_sync(_METADATA.create_all)
            autocheckpoint = (await connection.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
        for number in range(400):  # constant writes, ~10 pages each
            async with engine.connect() as connection, write_transaction(connection):
                rows = [dict(_row(number), note="x" * 40) for _ in range(20)]
                await execute_precompiled(connection, _INSERT, rows)
            largest = max(largest, os.path.getsize(f"{path}-wal"))
        await asyncio.sleep(0.2)  # the thread copies what the last commits wrote
        return [autocheckpoint]

    try:
        assert asyncio.run(go()) == [100]
        probe = sqlite3.connect(path)
        busy, log, copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
    finally:
        asyncio.run(engine.dispose())
    assert checkpointing == ["sqlite-checkpoint"]
    assert (busy, log) == (0, copied)  # nothing left to copy: the thread did it
    # Without the backstop a log under constant writes never restarts (hundreds of pages here).
    assert largest < 6 * 100 * 4200, largest


def test_the_checkpoint_thread_ends_with_its_connection(tmp_path: Path) -> None:
    engine = make_engine(
        Settings(database_url=f"sqlite:///{tmp_path / 'end.db'}", environment="test")
    )

    async def go() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (n INTEGER)"))
        await engine.dispose()

    asyncio.run(go())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(
        t.name == "sqlite-checkpoint" and t.is_alive() for t in threading.enumerate()
    ):
        time.sleep(0.02)
    alive = [t for t in threading.enumerate() if t.name == "sqlite-checkpoint" and t.is_alive()]
    assert not alive
