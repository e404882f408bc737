"""This process's turn on the audit trail: an in-process lock in front of the database's.

The trail may be striped into up to CHAIN_STRIPES chains, each linked and locked on its own
(see app.audit.repository). A process appends to chain 0 when the settings allow one chain
(``MINERAL_AUDIT_CHAINS=1``: a single chain, as before), else (the default, 64) to its own
LANES chains, picked at random among the first ``audit_chains``, so that processes (workers,
replicas) rarely share a lock. Within the process, requests take turns on each of its chains
and keep the turn until their transaction ends (or their one autocommit statement returns):
the process then knows each chain's tail, so the hash it computes is right the first time
(one round trip). Before turns, concurrent appenders of one process raced for the database
lock with the same guess: nearly every append under load was a second round trip made while
holding the lock (measured: 1.98 ``audit_append_rows`` calls per request at 16 connections;
1.00 with turns). With ONE chain per process, though, a turn is held for a whole statement's
round trip (a POST's commit included), so a worker appended one row at a time whatever its
CPU: measured, one worker sat at ~230 POST/s with half a core idle. With several lanes, an
append takes the next lane whose turn is free, so that many appends are in flight at once.

Purely an optimization: the database still checks every link under the chain's lock, so a
wrong guess (another process on the same chain) costs a round trip, never a fork. A turn not
granted within the wait is skipped, not waited for: the database lock then orders the append
as before.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
import weakref
from collections import deque

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from app.audit.repository import CHAIN_STRIPES

_HELD = "mineral_audit_chain_turn"

# The chains one process appends to at once (with more than one chain allowed), each with its
# own turn: how many of a worker's appends (one per POST or GET) may be in flight together.
LANES = 8

# (pid, chains allowed) -> this process's chains: picked again after a fork.
_picked: dict[tuple[int, int], list[int]] = {}
_rotation = itertools.count()


class _Lanes:
    """One process's lanes on one database, in one event loop: the chains whose turn is taken,
    and the appends waiting for any turn, first come first served (asyncio objects belong to
    the loop they first wait in, and tests run several loops in one process)."""

    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.busy: set[int] = set()
        self.waiting: deque[asyncio.Future[int]] = deque()


_lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Lanes]] = (
    weakref.WeakKeyDictionary()
)


def process_chains(allowed: int) -> list[int]:
    """The chains this process appends to: [0] when one is allowed, else LANES (at most
    `allowed`) of the first `allowed`, picked at random once per process."""
    if allowed <= 1:
        return [0]
    key = (os.getpid(), min(allowed, CHAIN_STRIPES))
    lanes = _picked.get(key)
    if lanes is None:
        rng = random.Random(f"{key[0]}-{time.time_ns()}")
        lanes = _picked[key] = rng.sample(range(key[1]), min(LANES, key[1]))
    return lanes


def process_chain(allowed: int) -> int:
    """The first of this process's chains."""
    return process_chains(allowed)[0]


def move_away(allowed: int, chain: int) -> int:
    """Another process appends to `chain` too: this process stops appending there and takes
    another of the first `allowed` that is not already one of its own, picked at random (with
    64 chains two processes share one now and then; sharing, nearly every append of both
    misses its tail guess: one more statement each). The chain taken instead; `chain` itself
    when there is nowhere to go (one chain allowed, or all of them already this process's);
    when `chain` was left already (a late report), the first of this process's chains.

    Call it only on a miss against a tail this process learned (its own last append there):
    a first append to a chain misses by design, and moving then would never settle."""
    lanes = process_chains(allowed)
    if chain not in lanes:
        return lanes[0]
    free = [c for c in range(min(allowed, CHAIN_STRIPES)) if c not in lanes]
    if not free:
        return chain
    taken = random.Random(f"{os.getpid()}-{time.time_ns()}").choice(free)
    lanes[lanes.index(chain)] = taken
    return taken


def _lanes_of(database: str) -> _Lanes:
    per_loop = _lanes.setdefault(asyncio.get_running_loop(), {})
    lanes = per_loop.get(database)
    if lanes is None:
        lanes = per_loop[database] = _Lanes()
    return lanes


def _free_lane(state: _Lanes, chains: list[int]) -> int | None:
    """The first of `chains`, in rotation, whose turn is free, now taken; None when all are."""
    start = next(_rotation)
    for offset in range(len(chains)):
        chain = chains[(start + offset) % len(chains)]
        if chain not in state.busy:
            state.busy.add(chain)
            return chain
    return None


async def turn(database: str, allowed: int, *, wait_seconds: float) -> tuple[int, bool]:
    """A turn on one of this process's chains: the chain, and whether the turn is held (hand it
    back with ``give_back``). Any free lane is taken at once; with every lane taken, the append
    waits for the first lane given back, in arrival order (waiting for one given lane instead
    let a request sit behind a slow one while others freed up: the tail latency). Not granted
    within `wait_seconds`, the append goes ahead without a turn (the database's lock orders
    it; a wrong tail guess costs a statement)."""
    state = _lanes_of(database)
    chains = process_chains(allowed)
    chain = _free_lane(state, chains)
    if chain is not None:
        return chain, True
    waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    state.waiting.append(waiter)
    try:
        async with asyncio.timeout(wait_seconds):
            return await waiter, True
    except TimeoutError:
        if waiter.done() and not waiter.cancelled():
            return waiter.result(), True  # given a lane as the wait ran out
        return chains[next(_rotation) % len(chains)], False
    except asyncio.CancelledError:
        if waiter.done() and not waiter.cancelled():
            give_back(database, allowed, waiter.result())
        raise
    finally:
        if not waiter.done():
            waiter.cancel()
            state.waiting.remove(waiter)


def give_back(database: str, allowed: int, chain: int) -> None:
    """End a turn ``turn`` granted: the lane goes to the longest-waiting append, if any (the
    lane given back itself, or another free one when this process moved off that chain)."""
    state = _lanes_of(database)
    state.busy.discard(chain)
    while state.waiting:
        lane = _free_lane(state, process_chains(allowed))
        if lane is None:
            return
        waiter = state.waiting.popleft()
        if waiter.done():  # cancelled while queued
            state.busy.discard(lane)
            continue
        waiter.set_result(lane)


async def take_turn(session: Session, database: str, *, chains: int, wait_seconds: float) -> int:
    """One of this process's chains (``turn``), its turn held until `session`'s transaction
    ends.

    Re-entrant per session: a second append in the same transaction already has the turn."""
    held = session.info.get(_HELD)
    if held is not None:
        return int(held[2])
    chain, granted = await turn(database, chains, wait_seconds=wait_seconds)
    if granted:
        session.info[_HELD] = (database, chains, chain)
    return chain


@event.listens_for(Session, "after_transaction_end")
def _give_back(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction only: a savepoint ending leaves the rows (and the database's
    # lock) in place.
    if transaction.parent is not None:
        return
    held = session.info.pop(_HELD, None)
    if held is not None:
        give_back(*held)
