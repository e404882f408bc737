"""Concurrent appends of one process take turns on its chain: one database call each (the
tail guess is right), the trail still verifies (with a checkpoint, and striped over several
chains), and a session that never ends its turn only delays the others by the wait."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain_lock, service
from app.audit.repository import CHAIN_STRIPES
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction
from tests.audit.builders import audit_entry

pytestmark = pytest.mark.postgres


def _postgres_only(settings: Settings) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the chain's database lock and tail guess are PostgreSQL's")


async def _appends(settings: Settings, count: int) -> tuple[int, service.VerifyReport]:
    engine = make_engine(settings)
    calls: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "audit_append_rows" in statement:
            calls.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    factory = make_sessionmaker(engine)
    organization = uuid.uuid4()

    async def one(i: int) -> None:
        async with transaction(factory) as session:
            await service.append(
                session, [audit_entry(organization_id=organization, request_id=f"turn-{i}")]
            )
            await asyncio.sleep(0)  # let the others queue while this one holds its turn

    try:
        await one(-1)  # the process learns the current tail
        calls.clear()
        await asyncio.gather(*(one(i) for i in range(count)))
        async with transaction(factory) as session:
            checkpoint = await service.make_checkpoint(session, secret="x" * 40)
        async with transaction(factory) as session:
            report = await service.verify(session, checkpoint=checkpoint)
    finally:
        await engine.dispose()
    return len(calls), report


def test_concurrent_appends_make_one_call_each_and_the_chain_verifies(
    settings: Settings,
) -> None:
    _postgres_only(settings)
    calls, report = asyncio.run(_appends(settings, 24))
    assert calls == 24
    assert report.ok, report


def test_a_process_on_its_own_chain_appends_once_each_and_the_trail_verifies(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(settings)
    monkeypatch.setattr(chain_lock, "_picked", {})
    monkeypatch.setattr(chain_lock, "LANES", 1)
    striped = settings.model_copy(update={"audit_chains": 64})
    calls, report = asyncio.run(_appends(striped, 12))
    assert calls == 12
    assert report.ok, report
    # Another run of appends on the default single chain interleaves with it and verifies.
    calls, report = asyncio.run(_appends(settings, 4))
    assert report.ok, report


def test_a_process_with_several_lanes_appends_on_several_chains_at_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent appends of one process go out on its lanes (each its own turn and lock), so
    a worker's appends do not wait for one another; each lane's first append may miss its
    tail once (the chain may hold rows of earlier runs), then every append is one call."""
    _postgres_only(settings)
    monkeypatch.setattr(chain_lock, "_picked", {})
    monkeypatch.setattr(chain_lock, "LANES", 4)
    striped = settings.model_copy(update={"audit_chains": 64})
    calls, report = asyncio.run(_appends(striped, 16))
    assert report.ok, report
    assert 16 <= calls <= 16 + 4
    lanes = chain_lock.process_chains(64)
    assert len(set(lanes)) == 4
    calls, report = asyncio.run(_appends(striped, 16))  # every lane's tail now known
    assert calls == 16
    assert report.ok, report


async def _stuck_turn(settings: Settings) -> tuple[float, int]:
    engine = make_engine(settings)
    factory = make_sessionmaker(engine)
    database = str(engine.url)
    try:
        async with factory() as holder, factory() as other:
            await chain_lock.take_turn(holder.sync_session, database, chains=1, wait_seconds=1)
            loop = asyncio.get_running_loop()
            started = loop.time()
            chain = await chain_lock.take_turn(
                other.sync_session, database, chains=1, wait_seconds=0.2
            )
            waited = loop.time() - started
            await _end(holder)
            await _end(other)
        # The turn was given back: a new session gets it at once.
        async with factory() as again:
            started = asyncio.get_running_loop().time()
            await chain_lock.take_turn(again.sync_session, database, chains=1, wait_seconds=5)
            assert asyncio.get_running_loop().time() - started < 1
            await _end(again)
    finally:
        await engine.dispose()
    return waited, chain


async def _end(session: AsyncSession) -> None:
    await session.connection()  # a transaction to end
    await session.rollback()


def test_a_turn_not_given_back_delays_others_by_the_wait_only(settings: Settings) -> None:
    _postgres_only(settings)
    waited, chain = asyncio.run(_stuck_turn(settings))
    assert 0.15 <= waited < 1.0
    assert chain == 0  # appended anyway, ordered by the database's lock


def test_one_chain_means_chain_zero_and_more_a_fixed_pick_per_process() -> None:
    assert chain_lock.process_chain(1) == 0
    picked = chain_lock.process_chain(64)
    assert 0 <= picked < CHAIN_STRIPES
    assert chain_lock.process_chain(64) == picked
