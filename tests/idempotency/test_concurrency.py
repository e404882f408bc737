"""Concurrent requests with one Idempotency-Key: the unique constraint decides who runs.

On PostgreSQL a retry blocks on the first attempt's uncommitted claim, for at most its wait
bound; on SQLite the write lock queues the retry behind the whole first transaction.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from app.core.db import transaction
from app.idempotency.errors import IdempotencyKeyInFlightError
from app.idempotency.service import StoredResponse
from tests.conftest import Database
from tests.idempotency.builders import Producer, idempotent, new_principal

BODY = b'{"accession": "ACC-CONCURRENT"}'


class FirstAttempt:
    """A request that claims the key, then keeps its transaction open until released."""

    def __init__(self, db: Database, *, principal_id: str, fail: bool = False) -> None:
        self.db = db
        self.principal_id = principal_id
        self.fail = fail
        self.producer = Producer()
        self.claimed = asyncio.Event()
        self.release = asyncio.Event()

    async def _produce(self) -> StoredResponse:
        self.claimed.set()
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the first attempt failed")
        return await self.producer()

    async def run(self) -> StoredResponse:
        async with transaction(self.db.app.state.sessionmaker) as session:
            call = idempotent(
                key="k-1", principal_id=self.principal_id, body=BODY, produce=self._produce
            )
            response, _ = await call(session)
            return response


async def _retry(
    db: Database, principal_id: str, produce: Producer, *, wait_seconds: float
) -> tuple[StoredResponse, bool]:
    async with transaction(db.app.state.sessionmaker) as session:
        call = idempotent(
            key="k-1",
            principal_id=principal_id,
            body=BODY,
            produce=produce,
            wait_seconds=wait_seconds,
        )
        return await call(session)


async def _until_blocked(db: Database) -> None:
    """Return once another transaction waits on a lock (PostgreSQL) or, on SQLite, after a
    pause long enough for the retry to be queued on the write lock."""
    if db.app.state.engine.dialect.name != "postgresql":
        await asyncio.sleep(0.3)
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        async with transaction(db.app.state.sessionmaker) as session:
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the retry never waited for the first attempt")


def _require_postgresql(db: Database) -> None:
    if db.app.state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serializes whole write transactions: a retry never sees one in flight")


def test_a_retry_while_the_first_is_in_flight_is_409_after_the_wait(db: Database) -> None:
    _require_postgresql(db)
    principal_id = new_principal()
    retry_producer = Producer()

    async def scenario() -> tuple[IdempotencyKeyInFlightError, float, StoredResponse]:
        first = FirstAttempt(db, principal_id=principal_id)
        first_task = asyncio.create_task(first.run())
        await first.claimed.wait()
        started = time.monotonic()
        try:
            with pytest.raises(IdempotencyKeyInFlightError) as refused:
                # wait_for: should the wait bound ever break, fail instead of hanging.
                await asyncio.wait_for(
                    _retry(db, principal_id, retry_producer, wait_seconds=0.2), timeout=5
                )
            waited = time.monotonic() - started
        finally:
            first.release.set()
        return refused.value, waited, await first_task

    refused, waited, first_response = db.run(scenario)

    assert refused.status == 409
    assert refused.type_slug == "idempotency-key-in-flight"
    assert refused.headers() == {"Retry-After": "1"}
    assert 0.2 <= waited < 3
    assert retry_producer.calls == 0
    later, replayed = db.run(lambda: _retry(db, principal_id, retry_producer, wait_seconds=0.2))
    assert replayed
    assert later == first_response


def test_a_waiting_retry_replays_the_first_response_once_it_commits(db: Database) -> None:
    principal_id = new_principal()
    retry_producer = Producer()

    async def scenario() -> tuple[StoredResponse, tuple[StoredResponse, bool], bool]:
        first = FirstAttempt(db, principal_id=principal_id)
        first_task = asyncio.create_task(first.run())
        await first.claimed.wait()
        retry_task = asyncio.create_task(_retry(db, principal_id, retry_producer, wait_seconds=10))
        await _until_blocked(db)
        still_waiting = not retry_task.done()
        first.release.set()
        return await first_task, await retry_task, still_waiting

    first_response, (retried, replayed), still_waiting = db.run(scenario)

    assert still_waiting
    assert replayed
    assert retried == first_response
    assert retry_producer.calls == 0


def test_a_waiting_retry_runs_itself_when_the_first_rolls_back(db: Database) -> None:
    principal_id = new_principal()
    retry_producer = Producer()

    async def scenario() -> tuple[StoredResponse, bool]:
        first = FirstAttempt(db, principal_id=principal_id, fail=True)
        first_task = asyncio.create_task(first.run())
        await first.claimed.wait()
        retry_task = asyncio.create_task(_retry(db, principal_id, retry_producer, wait_seconds=10))
        await _until_blocked(db)
        first.release.set()
        with pytest.raises(RuntimeError):
            await first_task
        return await retry_task

    retried, replayed = db.run(scenario)

    assert not replayed
    assert retry_producer.calls == 1
    again, replayed_again = db.run(lambda: _retry(db, principal_id, retry_producer, wait_seconds=1))
    assert replayed_again
    assert again == retried


def test_twenty_concurrent_requests_with_one_key_produce_once(db: Database) -> None:
    principal_id = new_principal()
    produce = Producer()

    async def scenario() -> list[tuple[StoredResponse, bool]]:
        return list(
            await asyncio.gather(
                *(_retry(db, principal_id, produce, wait_seconds=20) for _ in range(20))
            )
        )

    outcomes = db.run(scenario)

    assert produce.calls == 1
    assert sorted(replayed for _, replayed in outcomes) == [False] + [True] * 19
    assert len({(r.status, r.body, tuple(sorted(r.headers.items()))) for r, _ in outcomes}) == 1


def test_the_wait_bound_applies_to_the_claim_only(db: Database) -> None:
    _require_postgresql(db)
    seen: list[str] = []

    async def scenario() -> None:
        async with transaction(db.app.state.sessionmaker) as session:
            before = await session.scalar(text("SELECT current_setting('lock_timeout')"))

            async def produce() -> StoredResponse:
                seen.append(await session.scalar(text("SELECT current_setting('lock_timeout')")))
                return await Producer()()

            await idempotent(
                key="k-1",
                principal_id=new_principal(),
                body=BODY,
                produce=produce,
                wait_seconds=0.25,
            )(session)
            seen.insert(0, before)

    db.run(scenario)

    assert seen[1] == seen[0]
