"""SQLite statements run inline on the event loop (issue 15, ADR 0008): no thread hop per
statement, and a wait for SQLite's write lock is an asyncio sleep, never a blocked loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import sqlite_inline
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction
from tests.builders import MRN_SYSTEM, make_patient, panel_body, result
from tests.conftest import Database

HELD_SECONDS = 0.5


def _sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the inline connection is SQLite's")


def _settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'inline.db'}", environment="test")


async def _create_table(engine: AsyncEngine) -> None:
    async with transaction(make_sessionmaker(engine)) as session:
        await session.execute(text("CREATE TABLE IF NOT EXISTS note (n INTEGER NOT NULL)"))


class Ticker:
    """Ticks every 10 ms on the loop; the longest gap between ticks is how long the loop was
    held (a busy handler sleeping on the loop's thread would show here)."""

    def __init__(self) -> None:
        self.longest_gap = 0.0
        self.ticks = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last)
            self.ticks += 1
            last = now

    async def around(self, work: Awaitable[Any]) -> Any:
        ticking = asyncio.create_task(self.run())
        try:
            return await work
        finally:
            self._stop.set()
            await ticking


def test_a_panel_post_and_get_run_every_statement_on_the_event_loop_thread(
    client: TestClient, db: Database, backend: str
) -> None:
    _sqlite_only(backend)
    engine: AsyncEngine = db.app.state.engine
    threads: set[int] = set()

    def traced(_statement: str) -> None:  # SQLite calls it on the thread stepping the statement
        threads.add(threading.get_ident())

    def trace(callback: Callable[[str], None] | None) -> None:
        async def go() -> None:
            async with engine.connect() as connection:  # the process's one connection
                raw: Any = (await connection.get_raw_connection()).driver_connection
                getattr(raw, "_conn", raw).set_trace_callback(callback)  # aiosqlite's: _conn

        db.run(go)

    async def loop_thread() -> int:
        return threading.get_ident()

    patient = make_patient(client)
    trace(traced)
    try:
        body = panel_body(
            patient, [result("magnesium", "1.6", "mg/dL")], accession=f"INL-{uuid.uuid4()}"
        )
        posted = client.post("/api/v1/panels", json=body)
        assert posted.status_code == 201, posted.text
        read = client.get(f"/api/v1/panels/{posted.json()['id']}")
        assert read.status_code == 200, read.text
    finally:
        trace(None)

    assert threads == {db.run(loop_thread)}


def test_two_engines_contending_for_the_write_lock_both_commit_while_the_loop_keeps_ticking(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    order: list[str] = []

    async def scenario() -> list[int]:
        first_engine, second_engine = make_engine(settings), make_engine(settings)
        try:
            await _create_table(first_engine)
            holding = asyncio.Event()

            async def first() -> None:
                async with transaction(make_sessionmaker(first_engine)) as session:
                    await session.execute(text("INSERT INTO note VALUES (1)"))
                    holding.set()
                    # Holds the write lock across an await: the second engine's BEGIN IMMEDIATE
                    # is refused (SQLITE_BUSY) until this commits.
                    await asyncio.sleep(HELD_SECONDS)
                    order.append("first commits")

            async def second() -> None:
                await holding.wait()
                async with transaction(make_sessionmaker(second_engine)) as session:
                    await session.execute(text("INSERT INTO note VALUES (2)"))
                    order.append("second wrote")

            ticker = Ticker()
            await ticker.around(asyncio.wait_for(asyncio.gather(first(), second()), 30))
            assert ticker.longest_gap < HELD_SECONDS / 2, ticker.longest_gap
            async with transaction(make_sessionmaker(second_engine, read_only=True)) as session:
                rows = await session.execute(text("SELECT n FROM note ORDER BY n"))
                return [n for (n,) in rows]
        finally:
            await first_engine.dispose()
            await second_engine.dispose()

    assert asyncio.run(scenario()) == [1, 2]
    assert order == ["first commits", "second wrote"]


def test_a_write_lock_held_past_the_bound_fails_as_database_is_locked_while_reads_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_SECONDS", 0.3)
    settings = _settings(tmp_path)

    async def scenario(holder: sqlite3.Connection) -> tuple[float, list[int]]:
        engine = make_engine(settings)
        try:
            await _create_table(engine)
            async with transaction(make_sessionmaker(engine)) as session:
                await session.execute(text("INSERT INTO note VALUES (1)"))
            holder.execute("BEGIN IMMEDIATE")  # another process, say, holding the write lock

            async def write() -> float:
                started = time.monotonic()
                with pytest.raises(OperationalError, match="database is locked"):
                    async with transaction(make_sessionmaker(engine)) as session:
                        await session.execute(text("INSERT INTO note VALUES (2)"))
                return time.monotonic() - started

            async def read() -> list[int]:
                await asyncio.sleep(0.05)  # while the write waits for the lock
                async with transaction(make_sessionmaker(engine, read_only=True)) as session:
                    return [n for (n,) in await session.execute(text("SELECT n FROM note"))]

            ticker = Ticker()
            waited, rows = await ticker.around(asyncio.gather(write(), read()))
            assert ticker.longest_gap < 0.25, ticker.longest_gap
            return waited, rows
        finally:
            await engine.dispose()

    holder = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)
    try:
        waited, rows = asyncio.run(scenario(holder))
    finally:
        holder.close()

    assert 0.3 <= waited < 3, waited
    assert rows == [1]


def test_a_write_waiting_past_the_bound_answers_503(
    client: TestClient, settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sqlite_only(backend)
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = client.post(
            "/api/v1/patients",
            json={"sex": "female", "identifiers": [{"system": MRN_SYSTEM, "value": "MRN-LOCKED"}]},
        )
    finally:
        holder.close()

    assert response.status_code == 503, response.text


def test_connections_keep_wal_foreign_keys_and_leave_sqlite_no_busy_handler(
    tmp_path: Path,
) -> None:
    async def pragmas() -> list[Any]:
        engine = make_engine(_settings(tmp_path))
        try:
            async with transaction(make_sessionmaker(engine, read_only=True)) as session:
                return [
                    (await session.execute(text(f"PRAGMA {name}"))).scalar()
                    for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
                ]
        finally:
            await engine.dispose()

    assert asyncio.run(pragmas()) == ["wal", 1, 0, 1]  # synchronous 1: NORMAL


def test_a_connection_dropped_without_close_lets_its_checkpoint_thread_end(
    tmp_path: Path,
) -> None:
    import gc

    def checkpoint_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "sqlite-checkpoint"}

    before = checkpoint_threads()
    connection = sqlite_inline.InlineDBAPI().connect(str(tmp_path / "dropped.sqlite"))
    connection.execute("PRAGMA journal_mode=wal")
    connection.checkpoint_in_background()
    [started] = checkpoint_threads() - before
    assert started.is_alive()

    del connection
    gc.collect()

    started.join(timeout=5)
    assert not started.is_alive()
