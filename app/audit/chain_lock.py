"""This process's turn on the audit trail: an in-process lock in front of the database's.

The trail may be striped into up to CHAIN_STRIPES chains, each linked and locked on its own
(see app.audit.repository). A process appends to ONE chain: chain 0 when the settings allow
one chain (``MINERAL_AUDIT_CHAINS=1``, the default: a single chain, as before), else one it
picked at random among the first ``audit_chains``, so that processes (workers, replicas)
rarely share a lock. Within the process, requests take turns on that chain and keep the turn
until their transaction ends: the process then knows its chain's tail, so the hash it
computes is right the first time (one round trip). Before, concurrent appenders of one
process raced for the database lock with the same guess: nearly every append under load was
a second round trip made while holding the lock (measured: 1.98 ``audit_append_rows`` calls
per request at 16 connections; 1.00 with turns).

Purely an optimization: the database still checks every link under the chain's lock, so a
wrong guess (another process on the same chain) costs a round trip, never a fork. A turn not
granted within the wait is skipped, not waited for: the database lock then orders the append
as before.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import weakref

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from app.audit.repository import CHAIN_STRIPES

_HELD = "mineral_audit_chain_turn"

_picked: dict[tuple[int, int], int] = {}  # (pid, chains allowed) -> chain: re-picked after fork

# One lock per event loop, database and chain: asyncio locks belong to the loop they first
# wait in, and tests run several loops in one process.
_locks: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int], asyncio.Lock]
] = weakref.WeakKeyDictionary()


def process_chain(allowed: int) -> int:
    """The chain this process appends to: 0 when one is allowed, else one of the first
    `allowed`, picked at random once per process."""
    if allowed <= 1:
        return 0
    key = (os.getpid(), min(allowed, CHAIN_STRIPES))
    if key not in _picked:
        _picked[key] = random.Random(f"{key[0]}-{time.time_ns()}").randrange(key[1])
    return _picked[key]


def move_away(allowed: int, chain: int) -> int:
    """Another process appends to `chain` too: this process's next appends go to another of
    the first `allowed`, picked at random (with 64 chains two processes share one on 1 start
    in 64; sharing, nearly every append of both misses its tail guess: one more statement, and
    an autocommit append can lose the race five times in a row). The chain now picked; one
    chain allowed: 0, nowhere to go.

    Call it only on a miss against a tail this process learned (its own last append there):
    a first append to a chain misses by design, and moving then would never settle."""
    if allowed <= 1:
        return 0
    key = (os.getpid(), min(allowed, CHAIN_STRIPES))
    if _picked.get(key, chain) == chain:
        step = random.Random(f"{key[0]}-{time.time_ns()}").randrange(1, key[1])
        _picked[key] = (chain + step) % key[1]
    return _picked[key]


def _lock(database: str, chain: int) -> asyncio.Lock:
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    lock = per_loop.get((database, chain))
    if lock is None:
        lock = per_loop[(database, chain)] = asyncio.Lock()
    return lock


def turn_lock(database: str, chain: int) -> asyncio.Lock:
    """The in-process lock of `chain`, for an append made outside a session's transaction (one
    autocommit statement, app.audit.service.append_along): held only around that statement."""
    return _lock(database, chain)


async def take_turn(session: Session, database: str, *, chains: int, wait_seconds: float) -> int:
    """This process's chain, its turn held until `session`'s transaction ends.

    Re-entrant per session: a second append in the same transaction already has the turn."""
    held = session.info.get(_HELD)
    if held is not None:
        return int(held[1])
    chain = process_chain(chains)
    lock = _lock(database, chain)
    try:
        await asyncio.wait_for(lock.acquire(), timeout=wait_seconds)
    except TimeoutError:
        return chain
    session.info[_HELD] = (lock, chain)
    return chain


@event.listens_for(Session, "after_transaction_end")
def _give_back(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction only: a savepoint ending leaves the rows (and the database's
    # lock) in place.
    if transaction.parent is not None:
        return
    held = session.info.pop(_HELD, None)
    if held is not None and held[0].locked():
        held[0].release()
