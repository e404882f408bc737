"""Write and verify the PHI audit trail.

`append` is called by the request's own transaction, as its last statement, so an audit row
exists exactly when the change (or the disclosure) it records was committed. Rows hold ids,
never patient values.
"""

from __future__ import annotations

import hmac
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from asyncpg import Record
from sqlalchemy import Engine, String
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.audit import chain_lock, repository
from app.audit.chain import (
    GENESIS_HASH,
    ChainHead,
    Checkpoint,
    CheckpointTally,
    checkpoint_key,
    event_hash,
    row_key,
)
from app.core.config import get_settings
from app.core.db import AUDIT_CHAINS, AUDIT_KEY, READ_ONLY, new_id, utcnow
from app.core.driver import Driver
from app.models.audit import AuditEvent
from app.ops import metrics

AuditOutcome = Literal["success", "denied", "error"]
OUTCOMES: tuple[AuditOutcome, ...] = ("success", "denied", "error")

# Actions the service records today; the column takes any short lowercase word. `revoke`
# (API keys), `activate` (range and rule sets) and `login` (an OIDC token's first use) record
# changes of who may see what.
ACTIONS = (
    "read",
    "search",
    "create",
    "update",
    "delete",
    "reinterpret",
    "revoke",
    "activate",
    "login",
)


def _column_length(name: str) -> int | None:
    column_type = AuditEvent.__table__.c[name].type
    return column_type.length if isinstance(column_type, String) else None


_LENGTHS = {column.name: _column_length(column.name) for column in AuditEvent.__table__.c}


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One access to patient data, or a denied or failed attempt at one. Ids only: never a
    name, identifier value or result."""

    occurred_at: datetime = field(default_factory=utcnow)
    organization_id: uuid.UUID | None
    principal_id: str | None
    principal_kind: str | None = None
    role: str | None = None
    action: str
    resource_type: str
    resource_id: str | None = None
    patient_id: uuid.UUID | None = None
    outcome: AuditOutcome
    status_code: int | None = None
    method: str | None = None
    path: str | None = None
    request_id: str | None = None
    client_address: str | None = None

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware (UTC)")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")
        for name in ("action", "resource_type"):
            value: str = getattr(self, name)
            limit = _LENGTHS[name]
            if not value or (limit is not None and len(value) > limit):
                raise ValueError(f"{name} must be 1-{limit} characters")


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    chain: int | None = None  # the chain of the bad row, or the one missing rows


def _fit(name: str, value: Any) -> Any:
    """Request-derived text (path, client address, ...) is made storable rather than allowed
    to fail the request: PostgreSQL refuses NUL characters, and columns have a length."""
    if not isinstance(value, str):
        return value
    value = value.replace("\x00", "\ufffd")
    limit = _LENGTHS[name]
    return value[:limit] if limit is not None else value


def _row(entry: AuditEntry) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every value (ids, times: all immutable).
    values = {name: _fit(name, getattr(entry, name)) for name in AuditEntry.__dataclass_fields__}
    values["id"] = new_id()
    return values


async def _is_read_only(session: AsyncSession) -> bool:
    connection = (await session.connection()).sync_connection
    return connection is not None and bool(connection.get_execution_options().get(READ_ONLY))


async def chain_key(session: AsyncSession) -> bytes:
    """The HMAC key of the chain: the one the session's engine was made with (app.core.db), else
    the process settings'."""
    connection = (await session.connection()).sync_connection
    key = connection.get_execution_options().get(AUDIT_KEY) if connection is not None else None
    if isinstance(key, bytes):
        return key
    return row_key(get_settings().audit_key.get_secret_value())


async def _allowed_chains(session: AsyncSession) -> int:
    """The engine's audit_chains setting (app.core.db), else the process settings'."""
    connection = (await session.connection()).sync_connection
    allowed = connection.get_execution_options().get(AUDIT_CHAINS) if connection else None
    return allowed if isinstance(allowed, int) else get_settings().audit_chains


# The tail this process last appended, per database: on PostgreSQL the rows are hashed against
# it and the database inserts them only if it still is the tail (one round trip); else it
# answers the real tail and they are hashed again (two). Never trusted, only a guess.
# Concurrent requests of this process take turns on its chains (app.audit.chain_lock), so
# the guess is the real tail unless another process appended to that chain since.
_tail_guess: dict[tuple[str, int], str] = {}


_database_names: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def database_name(engine: AsyncEngine) -> str:
    """The engine's URL as text (password hidden), the per-database key of the tail guesses and
    chain turns; rendered once per engine (it is on every request's path)."""
    name = _database_names.get(engine.sync_engine)
    if name is None:
        name = _database_names[engine.sync_engine] = str(engine.url)
    return name


def _linked(values: Sequence[dict[str, Any]], prev: str, key: bytes) -> list[dict[str, Any]]:
    rows = []
    for row in values:
        digest = event_hash(row, prev, key)
        rows.append({**row, "prev_hash": prev, "hash": digest})
        prev = digest
    return rows


async def append(session: AsyncSession, entries: Sequence[AuditEntry]) -> None:
    """Insert `entries` in the caller's transaction, each linked to the one before.

    Call it last, just before the transaction commits: on PostgreSQL it takes the chain's
    advisory lock, which every other appender then waits for until this transaction ends. The
    session must be a write session (READ COMMITTED, the default), never a read-only one.
    The hashes are HMACs computed here: the key never reaches the database.
    """
    if not entries:
        return
    if await _is_read_only(session):
        # On SQLite a read-only (deferred) transaction that starts writing late can fail with
        # SQLITE_BUSY; refuse on both backends so the mistake shows in any test run.
        raise RuntimeError("audit rows need a write session; this one is read-only")
    key = await chain_key(session)
    values = [_row(entry) for entry in entries]
    with metrics.time_audit_append():
        if not await repository.is_postgresql(session):
            tail = await repository.sqlite_tail(session) or GENESIS_HASH
            await repository.sqlite_insert(session, _linked(values, tail, key))
            return
        database = database_name((await session.connection()).engine)
        chain = await chain_lock.take_turn(
            session.sync_session,
            database,
            chains=await _allowed_chains(session),
            wait_seconds=get_settings().idempotency_wait_seconds,
        )
        guess = _tail_guess.get((database, chain), GENESIS_HASH)
        for attempt in range(3):
            rows = _linked(values, guess, key)
            actual = await repository.append_if_tail(
                session, rows, expected_prev=guess, chain=chain
            )
            if actual is None:
                _tail_guess[(database, chain)] = rows[-1]["hash"]
                return
            if attempt == 0:
                _missed(database, chain, await _allowed_chains(session))
            guess = actual  # the lock is held now: the tail cannot move before the commit
        raise RuntimeError("the audit chain's tail kept moving while the chain lock was held")


# Appends of one process that lost the race for a chain's tail to another process, in a row,
# before append_with gives up (each retry re-runs its whole autocommit statement).
_ALONG_ATTEMPTS = 5


def _missed(database: str, chain: int, chains: int) -> None:
    """A tail guess was wrong. When it was this process's own last append to the chain,
    another process appends to that chain too (two processes picked the same one of the
    striped chains, or only one chain is allowed): this process's next appends go to another
    chain, so the two stop costing each other a statement per append. A first append to a
    chain (nothing learned yet) misses by design and moves nothing."""
    if (database, chain) in _tail_guess:
        chain_lock.move_away(chains, chain)


@dataclass(frozen=True, slots=True)
class _Turn:
    """This process's chain for one autocommit statement, with what hashing its rows needs."""

    key: bytes
    database: str
    chain: int
    chains: int  # how many this process may pick from

    def linked(self, values: Sequence[dict[str, Any]], prev: str) -> list[dict[str, Any]]:
        return _linked(values, prev, self.key)

    def missed(self) -> None:
        """The tail guess was wrong: see ``_missed``."""
        _missed(self.database, self.chain, self.chains)

    def guess(self) -> str:
        return _tail_guess.get((self.database, self.chain), GENESIS_HASH)

    def appended(self, rows: Sequence[dict[str, Any]]) -> None:
        _tail_guess[(self.database, self.chain)] = rows[-1]["hash"]

    def args(self, rows: Sequence[dict[str, Any]], prev: str) -> tuple[str, str, int]:
        """The parameters of ``repository.PG_APPEND_CALL`` ($1, $2, $3)."""
        return repository.append_args(rows, expected_prev=prev, chain=self.chain)


# What an engine's turns need, found once per engine (its options never change): the HMAC
# key, the database's name, how many chains this process may pick from.
_TurnFacts = tuple[bytes, str, int]
_turn_facts: weakref.WeakKeyDictionary[Engine, _TurnFacts] = weakref.WeakKeyDictionary()


def _facts(engine: AsyncEngine) -> _TurnFacts:
    """(HMAC key, database name, chains allowed) of `engine`: its options (app.core.db), else
    the process settings'."""
    found = _turn_facts.get(engine.sync_engine)
    if found is None:
        options = engine.sync_engine.get_execution_options()
        key = options.get(AUDIT_KEY)
        if not isinstance(key, bytes):
            key = row_key(get_settings().audit_key.get_secret_value())
        allowed = options.get(AUDIT_CHAINS)
        chains = allowed if isinstance(allowed, int) else get_settings().audit_chains
        found = _turn_facts[engine.sync_engine] = (key, database_name(engine), chains)
    return found


class _TurnOn:
    """This process's turn on its chain, held around one autocommit statement (so the tail
    guess is right); not granted within the wait, the database lock still orders the append.
    (A class, not an asynccontextmanager: it is on every hot request's path.)"""

    __slots__ = ("_engine", "_held", "_timer")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._held: tuple[str, int, int] | None = None
        self._timer = metrics.time_audit_append()

    async def __aenter__(self) -> _Turn:
        key, database, chains = _facts(self._engine)
        self._timer.__enter__()
        chain, granted = await chain_lock.turn(
            database, chains, wait_seconds=get_settings().idempotency_wait_seconds
        )
        if granted:
            self._held = (database, chains, chain)
        return _Turn(key, database, chain, chains)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._held is not None:
            chain_lock.give_back(*self._held)
            self._held = None
        self._timer.__exit__(None, None, None)


async def append_along(
    engine: AsyncEngine, entries: Sequence[AuditEntry], sql: str, *args: Any
) -> Record | None:
    """PostgreSQL, through the driver (each statement its own transaction, on a connection
    taken from the pool only once this process's turn on a chain is granted, so requests
    waiting for a turn hold no connection): run `sql`, a
    SELECT whose last column is ``repository.PG_APPEND_CALL`` (its $1-$3; `args` are $4 on)
    and which returns at most one row, so that what it reads and the audit rows of that read
    commit together in ONE round trip (a GET's disclosure and its audit row). Returns the row
    read (the entries were appended), or None (nothing found: nothing appended, as no
    disclosure happened).

    The same chain, lock and hashing as ``append``: this process's turn on its chain is held
    around the statement (so the tail guess is right), and the database still checks every
    link under the chain's lock. A wrong guess (another process appended to the chain) costs
    few more statements: the rows appended in a transaction that holds the chain's lock from
    its first statement on (so another process cannot move the tail again)."""
    values = [_row(entry) for entry in entries]
    async with _TurnOn(engine) as turn, Driver(engine) as driver:
        guess = turn.guess()
        rows = turn.linked(values, guess)
        found = await driver.fetchrow(sql, *turn.args(rows, guess), *args)
        if found is None:
            return None
        actual: str | None = found[-1]
        if actual is not None:
            turn.missed()
            rows = await _append_holding_the_lock(driver, turn, values, actual)
        turn.appended(rows)
        return found


async def _append_holding_the_lock(
    driver: Driver, turn: _Turn, values: Sequence[dict[str, Any]], tail: str
) -> list[dict[str, Any]]:
    """Append `values` after a lost race, in one transaction: its first statement takes the
    chain's lock and appends if `tail` still is the tail, else answers the real one, which
    cannot move again before the commit, so the second statement appends. The rows linked."""
    async with driver.transaction():
        for _attempt in range(2):
            rows = turn.linked(values, tail)
            actual = await repository.append_if_tail_on(
                driver, rows, expected_prev=tail, chain=turn.chain
            )
            if actual is None:
                return rows
            tail = actual
    raise RuntimeError("the audit chain's tail moved while its lock was held")


class TailKeptMovingError(RuntimeError):
    """Another process kept appending to this process's chain: ``append_with`` gave up."""


# Runs one autocommit statement that writes its own rows and appends the audit rows given
# as ``repository.PG_APPEND_CALL``'s parameters ($1-$3), all or nothing; answers None when
# written, or the chain's real tail when the rows were hashed against another (nothing
# written).
AppendingWrite = Callable[[Driver, tuple[str, str, int]], Awaitable[str | None]]


async def append_with(
    engine: AsyncEngine, entries: Sequence[AuditEntry], write: AppendingWrite
) -> None:
    """PostgreSQL, one autocommit statement: `write` the request's rows and its audit rows in
    ONE statement (a POST's creation and its audit row), sent on the driver it is given (a
    pooled connection taken once the turn is granted). The same chain, turn and hashing as
    ``append_along``; a wrong tail guess re-runs the whole statement (it wrote nothing),
    hashed against the tail it answered. Whatever else `write` raises is the caller's."""
    values = [_row(entry) for entry in entries]
    async with _TurnOn(engine) as turn, Driver(engine) as driver:
        guess = turn.guess()
        for attempt in range(_ALONG_ATTEMPTS):
            rows = turn.linked(values, guess)
            actual = await write(driver, turn.args(rows, guess))
            if actual is None:
                turn.appended(rows)
                return
            if attempt == 0:
                turn.missed()
            guess = actual
        raise TailKeptMovingError("the audit chain's tail kept moving under another process")


async def make_checkpoint(session: AsyncSession, *, secret: str) -> Checkpoint:
    """The head of every chain (seq and hash of its newest row, its row count), signed. Appends
    in flight are waited for first: with striped chains a row with a lower seq could otherwise
    commit after the heads were read, and the counts would not hold."""
    await repository.hold_every_chain(session)
    heads = [
        ChainHead(chain=chain, last_seq=seq, last_hash=digest, count=count)
        for chain, seq, digest, count in await repository.chain_heads(session)
    ]
    return Checkpoint.signed(
        heads=heads,
        created_at=utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        key=checkpoint_key(secret),
    )


async def verify(
    session: AsyncSession,
    *,
    batch_size: int = 1000,
    checkpoint: Checkpoint | None = None,
) -> VerifyReport:
    """Walk the whole trail in seq order, batch by batch, recomputing every keyed hash and
    following each chain's links.

    Finds a modified row (its hash no longer matches its content, even if someone recomputed
    hashes without the key), a deleted row or rows put in another order (the next row of its
    chain no longer links to the row before it). Rows removed from the very end of a chain
    leave a valid, shorter chain: with a `checkpoint` (loaded with `Checkpoint.load`, which
    checks its signature), every chain it recorded must still hold as many rows, the last of
    them the row it recorded, and no other row may be older than the checkpoint. A version 1
    checkpoint (one head for the whole trail) is checked as it always was.
    """
    key = await chain_key(session)
    tally = CheckpointTally(checkpoint) if checkpoint is not None else None
    # The trail is striped: each row links to the previous row of its own chain.
    tails: dict[int, str] = {}
    checked = 0
    after_seq: int | None = None
    while True:
        rows = await repository.chain_batch(session, after_seq=after_seq, limit=batch_size)
        for row in rows:
            values = row._asdict()
            chain = values["chain"]
            expected_prev = tails.get(chain, GENESIS_HASH)
            problem: str | None = None
            if values["prev_hash"] != expected_prev:
                where = f"row {row.seq}" if chain in tails else "the first row"
                problem = (
                    f"{where} of chain {chain} does not link to the row before it "
                    "(a row was deleted or rows were reordered)"
                )
            elif not hmac.compare_digest(event_hash(values, expected_prev, key), values["hash"]):
                problem = (
                    f"row {row.seq} was modified after it was written "
                    "(or the chain was written with another MINERAL_AUDIT_KEY)"
                )
            elif tally is not None:
                problem = tally.row(row.seq, chain, values["hash"])
            if problem is not None:
                return VerifyReport(
                    ok=False, checked=checked, first_bad_seq=row.seq, chain=chain, reason=problem
                )
            tails[chain] = values["hash"]
            checked += 1
        if len(rows) < batch_size:
            break
        after_seq = rows[-1].seq
    missing = tally.missing() if tally is not None else None
    if missing is not None:
        chain_missing, reason = missing
        return VerifyReport(ok=False, checked=checked, chain=chain_missing, reason=reason)
    return VerifyReport(ok=True, checked=checked)


async def append_sqlite_on(
    connection: AsyncConnection, entries: Sequence[AuditEntry], *, tail: str | None
) -> None:
    """SQLite, in the connection's write transaction (BEGIN IMMEDIATE): insert `entries`
    linked to `tail`, the chain's tail the caller read in that same transaction (None: the
    trail is empty). The one-transaction POST (app.panels.sqlite_once) reads it along with its
    other checks, so the append costs one statement."""
    if not entries:
        return
    sync = connection.sync_connection
    key = sync.get_execution_options().get(AUDIT_KEY) if sync is not None else None
    if not isinstance(key, bytes):
        key = row_key(get_settings().audit_key.get_secret_value())
    values = [_row(entry) for entry in entries]
    with metrics.time_audit_append():
        await repository.sqlite_insert_on(connection, _linked(values, tail or GENESIS_HASH, key))
