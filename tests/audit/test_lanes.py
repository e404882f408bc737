"""A process's audit lanes (app.audit.chain_lock.turn / give_back): any free lane is taken at
once; with every lane taken, appends wait for the FIRST lane given back, in arrival order; a
wait that runs out or is cancelled never keeps a lane from the others."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.audit import chain_lock

ALLOWED = 64


@pytest.fixture(autouse=True)
def _own_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_lock, "_picked", {})


async def _take_all(database: str) -> list[int]:
    taken = [await chain_lock.turn(database, ALLOWED, wait_seconds=1) for _ in range(8)]
    assert all(granted for _chain, granted in taken)
    chains = [chain for chain, _granted in taken]
    assert sorted(chains) == sorted(chain_lock.process_chains(ALLOWED))
    return chains


def test_a_waiting_append_gets_whichever_lane_is_given_back_first() -> None:
    async def scenario() -> None:
        database = f"lanes-{uuid.uuid4()}"
        chains = await _take_all(database)
        first = asyncio.create_task(chain_lock.turn(database, ALLOWED, wait_seconds=5))
        second = asyncio.create_task(chain_lock.turn(database, ALLOWED, wait_seconds=5))
        await asyncio.sleep(0)
        assert not first.done()
        assert not second.done()

        chain_lock.give_back(database, ALLOWED, chains[5])
        assert await asyncio.wait_for(first, 1) == (chains[5], True)
        assert not second.done()  # arrival order: the second waits for the next lane
        chain_lock.give_back(database, ALLOWED, chains[2])
        assert await asyncio.wait_for(second, 1) == (chains[2], True)

    asyncio.run(scenario())


def test_a_wait_that_runs_out_goes_ahead_without_a_turn_and_keeps_no_lane() -> None:
    async def scenario() -> None:
        database = f"lanes-{uuid.uuid4()}"
        chains = await _take_all(database)
        chain, granted = await chain_lock.turn(database, ALLOWED, wait_seconds=0.05)
        assert not granted
        assert chain in chains

        for lane in chains:
            chain_lock.give_back(database, ALLOWED, lane)
        assert sorted(await _take_all(database)) == sorted(chains)

    asyncio.run(scenario())


def test_a_cancelled_wait_takes_no_lane() -> None:
    async def scenario() -> None:
        database = f"lanes-{uuid.uuid4()}"
        chains = await _take_all(database)
        cancelled = asyncio.create_task(chain_lock.turn(database, ALLOWED, wait_seconds=5))
        waiting = asyncio.create_task(chain_lock.turn(database, ALLOWED, wait_seconds=5))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled

        chain_lock.give_back(database, ALLOWED, chains[0])
        assert await asyncio.wait_for(waiting, 1) == (chains[0], True)

    asyncio.run(scenario())
