"""Two processes appending to one chain (one chain allowed, or two picked the same stripe):
an append along a read that loses the race for the tail, even again on its retry, appends
its row exactly once, linked (never a 500), and the process moves off a shared stripe."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.audit import chain_lock, repository, service
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction
from app.core.driver import Driver
from tests.audit.builders import audit_entry

pytestmark = pytest.mark.postgres

_READ = "SELECT 1, " + repository.PG_APPEND_CALL


async def _other_process_appends(engine: AsyncEngine, organization: uuid.UUID, tag: str) -> bool:
    """A row appended to this process's chain as another process would: its own session, its
    own tail read under the chain's lock (never this process's guess). False when the chain's
    lock is held (by this process's retry): the other process would wait, so it gives up."""
    factory = make_sessionmaker(engine)
    try:
        async with transaction(factory) as session:
            await session.execute(text("SET LOCAL lock_timeout = '200ms'"))
            await _append_other(session, engine, organization, tag)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == "55P03":
            return False
        raise
    return True


async def _append_other(
    session: AsyncSession, engine: AsyncEngine, organization: uuid.UUID, tag: str
) -> None:
    rows = service._linked(
        [service._row(audit_entry(organization_id=organization, request_id=tag))],
        await _tail(engine),
        service._facts(engine)[0],
    )
    # Hashed against the tail read a moment ago: if it moved meanwhile, against the real one.
    actual = await repository.append_if_tail(
        session, rows, expected_prev=rows[0]["prev_hash"], chain=_chain(engine)
    )
    if actual is not None:
        rows = service._linked(
            [{k: v for k, v in rows[0].items() if k not in ("prev_hash", "hash")}],
            actual,
            service._facts(engine)[0],
        )
        assert (
            await repository.append_if_tail(
                session, rows, expected_prev=actual, chain=_chain(engine)
            )
            is None
        )


def _chain(engine: AsyncEngine) -> int:
    return chain_lock.process_chain(service._facts(engine)[2])


async def _tail(engine: AsyncEngine) -> str:
    async with Driver(engine) as driver:
        row = await driver.fetchrow(
            "SELECT hash FROM audit_event WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
            _chain(engine),
        )
    return str(row[0]) if row is not None else "0" * 64


async def _race(settings: Settings, losses: int) -> tuple[int, int, int, service.VerifyReport]:
    engine = make_engine(settings)
    organization = uuid.uuid4()
    real = repository.append_if_tail_on
    lost = 0

    async def racing(driver: Driver, rows: Any, *, expected_prev: str, chain: int) -> str | None:
        nonlocal lost
        if lost < losses:  # another process appends just before this retry, when it can
            lost += 1
            await _other_process_appends(engine, organization, f"other-{lost}")
        return await real(driver, rows, expected_prev=expected_prev, chain=chain)

    try:
        # This process learns its chain's tail.
        await service.append_along(
            engine, [audit_entry(organization_id=organization, request_id="learn")], _READ
        )
        before = _chain(engine)
        await _other_process_appends(engine, organization, "other-0")  # the guess is now wrong
        repository.append_if_tail_on = racing
        try:
            found = await service.append_along(
                engine, [audit_entry(organization_id=organization, request_id="ours")], _READ
            )
        finally:
            repository.append_if_tail_on = real
        assert found is not None
        after = _chain(engine)
        async with transaction(make_sessionmaker(engine)) as session:
            report = await service.verify(session)
        async with Driver(engine) as driver:
            row = await driver.fetchrow(
                "SELECT count(*) FROM audit_event WHERE organization_id = $1 "
                "AND request_id = 'ours'",
                organization,
            )
    finally:
        await engine.dispose()
    assert row is not None
    return before, after, int(row[0]), report


# 1: the tail moves again between the lost read-along and the retry; 8: another process tries
# to append before every retry (once the chain's lock is held by the retry, it cannot).
@pytest.mark.parametrize("losses", [0, 1, 8])
def test_an_append_along_that_loses_the_race_appends_once_and_the_trail_verifies(
    settings: Settings, losses: int
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the chain's database lock and tail guess are PostgreSQL's")
    before, after, ours, report = asyncio.run(_race(settings, losses))
    assert ours == 1
    assert report.ok, report
    assert before == after == 0  # one chain allowed: nowhere to move


def test_a_process_sharing_a_stripe_moves_to_another(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the chain's database lock and tail guess are PostgreSQL's")
    monkeypatch.setattr(chain_lock, "_picked", {})
    monkeypatch.setattr(chain_lock, "LANES", 1)  # the process's one chain is the shared one
    striped = settings.model_copy(update={"audit_chains": 64})
    before, after, ours, report = asyncio.run(_race(striped, 1))
    assert ours == 1
    assert report.ok, report
    assert before != after
