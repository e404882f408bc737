"""A read sent along with the Idempotency-Key claim (app.core.db.read_along, PostgreSQL): one
statement, and the claim decides exactly as alone. The read is kept only for a request that
claimed the key: never for a replay, never for a retry refused while the first is in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import Integer, bindparam, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import ReadAlong, read_along, read_kept, transaction
from app.idempotency.errors import IdempotencyKeyInFlightError
from app.idempotency.service import StoredResponse
from tests.conftest import Database
from tests.idempotency.builders import Producer, idempotent, new_principal

BODY = b'{"accession": "ACC-READ-ALONG"}'
_PLUS_ONE = select((bindparam("n", type_=Integer) + 1).label("n_plus_one"))
_NOTHING = select(bindparam("n", type_=Integer).label("n")).where(false())


def _require_postgresql(db: Database) -> None:
    if db.app.state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps the plain path: nothing is read along")


class Observed:
    """What the producer saw of the read kept for it."""

    def __init__(self, session: AsyncSession, key: Any) -> None:
        self.session = session
        self.key = key
        self.kept: tuple[bool, tuple[Any, ...] | None] | None = None
        self.producer = Producer()

    async def __call__(self) -> StoredResponse:
        self.kept = read_kept(self.session, self.key)
        return await self.producer()


def _claim_with_read(
    db: Database, principal_id: str, read: ReadAlong, *, wait_seconds: float = 5.0
) -> tuple[Observed, StoredResponse, bool]:
    async def go() -> tuple[Observed, StoredResponse, bool]:
        async with transaction(db.app.state.sessionmaker) as session:
            read_along(session, read)
            observed = Observed(session, read.key)
            call = idempotent(
                key="k-read",
                principal_id=principal_id,
                body=BODY,
                produce=observed,
                wait_seconds=wait_seconds,
            )
            response, replayed = await call(session)
            return observed, response, replayed

    return db.run(go)


def test_a_claimed_key_hands_the_read_to_the_request_and_a_replay_gets_none(db: Database) -> None:
    principal_id = new_principal()

    observed, first, replayed = _claim_with_read(
        db, principal_id, ReadAlong(("plus", 41), _PLUS_ONE, {"n": 41})
    )
    again, second, replayed_again = _claim_with_read(
        db, principal_id, ReadAlong(("plus", 41), _PLUS_ONE, {"n": 41})
    )

    assert not replayed
    assert observed.producer.calls == 1
    if db.app.state.engine.dialect.name == "postgresql":
        assert observed.kept == (True, (42,))
    else:
        assert observed.kept == (False, None)  # the reader runs its own query
    assert replayed_again
    assert second == first
    assert again.producer.calls == 0


def test_a_read_that_finds_nothing_is_kept_as_nothing(db: Database) -> None:
    _require_postgresql(db)

    observed, _, replayed = _claim_with_read(
        db, new_principal(), ReadAlong(("nothing", 1), _NOTHING, {"n": 1})
    )

    assert not replayed
    assert observed.kept == (True, None)


def test_a_retry_with_a_read_along_is_409_while_the_first_is_in_flight(db: Database) -> None:
    _require_postgresql(db)
    principal_id = new_principal()

    async def scenario() -> tuple[IdempotencyKeyInFlightError, Observed]:
        claimed = asyncio.Event()
        release = asyncio.Event()

        async def slow() -> StoredResponse:
            claimed.set()
            await release.wait()
            return await Producer()()

        async def first() -> None:
            async with transaction(db.app.state.sessionmaker) as session:
                call = idempotent(key="k-read", principal_id=principal_id, body=BODY, produce=slow)
                await call(session)

        first_task = asyncio.create_task(first())
        await claimed.wait()
        try:
            async with transaction(db.app.state.sessionmaker) as session:
                read = ReadAlong(("plus", 1), _PLUS_ONE, {"n": 1})
                read_along(session, read)
                observed = Observed(session, read.key)
                call = idempotent(
                    key="k-read",
                    principal_id=principal_id,
                    body=BODY,
                    produce=observed,
                    wait_seconds=0.2,
                )
                with pytest.raises(IdempotencyKeyInFlightError) as refused:
                    await asyncio.wait_for(call(session), timeout=5)
        finally:
            release.set()
            await first_task
        return refused.value, observed

    refused, observed = db.run(scenario)

    assert refused.status == 409
    assert observed.producer.calls == 0
    assert observed.kept is None
