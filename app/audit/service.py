"""Write and verify the PHI audit trail.

`append` is called by the request's own transaction, as its last statement, so an audit row
exists exactly when the change (or the disclosure) it records was committed. Rows hold ids,
never patient values.
"""

from __future__ import annotations

import dataclasses
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import chain_lock, repository
from app.audit.chain import (
    GENESIS_HASH,
    checkpoint_key,
    checkpoint_signature_valid,
    event_hash,
    row_key,
    sign_checkpoint,
)
from app.core.config import get_settings
from app.core.db import AUDIT_CHAINS, AUDIT_KEY, READ_ONLY, new_id, utcnow
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


def _fit(name: str, value: Any) -> Any:
    """Request-derived text (path, client address, ...) is made storable rather than allowed
    to fail the request: PostgreSQL refuses NUL characters, and columns have a length."""
    if not isinstance(value, str):
        return value
    value = value.replace("\x00", "\ufffd")
    limit = _LENGTHS[name]
    return value[:limit] if limit is not None else value


def _row(entry: AuditEntry) -> dict[str, Any]:
    values = {name: _fit(name, value) for name, value in dataclasses.asdict(entry).items()}
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
        database = str((await session.connection()).engine.url)
        chain = await chain_lock.take_turn(
            session.sync_session,
            database,
            chains=await _allowed_chains(session),
            wait_seconds=get_settings().idempotency_wait_seconds,
        )
        guess = _tail_guess.get((database, chain), GENESIS_HASH)
        for _attempt in range(3):
            rows = _linked(values, guess, key)
            actual = await repository.append_if_tail(
                session, rows, expected_prev=guess, chain=chain
            )
            if actual is None:
                _tail_guess[(database, chain)] = rows[-1]["hash"]
                return
            guess = actual  # the lock is held now: the tail cannot move before the commit
        raise RuntimeError("the audit chain's tail kept moving while the chain lock was held")


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the chain's head at one moment, kept outside the database."""

    last_seq: int
    last_hash: str
    count: int
    created_at: str
    signature: str
    version: int = 1

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def make_checkpoint(session: AsyncSession, *, secret: str) -> Checkpoint:
    """The current head (seq and hash of the newest row, rows up to it), signed. Appends in
    flight are waited for first: with striped chains a row with a lower seq could otherwise
    commit after the head was read, and the count would not hold."""
    await repository.hold_every_chain(session)
    head = await repository.head(session)
    last_seq, last_hash = head if head is not None else (0, GENESIS_HASH)
    fields: dict[str, Any] = {
        "version": 1,
        "last_seq": last_seq,
        "last_hash": last_hash,
        "count": await repository.count_through(session, last_seq) if head else 0,
        "created_at": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return Checkpoint(**fields, signature=sign_checkpoint(fields, checkpoint_key(secret)))


def checkpoint_problem(checkpoint: Any, *, secret: str) -> str | None:
    """Why a loaded checkpoint document cannot be trusted, or None."""
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != 1:
        return "not a version 1 audit checkpoint"
    if not checkpoint_signature_valid(checkpoint, checkpoint_key(secret)):
        return "its signature does not match (edited, or signed with another key)"
    if not all(
        isinstance(checkpoint[name], int) and not isinstance(checkpoint[name], bool)
        for name in ("last_seq", "count")
    ):
        return "last_seq and count must be integers"
    return None


async def verify(
    session: AsyncSession,
    *,
    batch_size: int = 1000,
    checkpoint: Checkpoint | dict[str, Any] | None = None,
) -> VerifyReport:
    """Walk the whole trail in seq order, batch by batch, recomputing every keyed hash and
    following each chain's links.

    Finds a modified row (its hash no longer matches its content, even if someone recomputed
    hashes without the key), a deleted row or rows put in another order (the next row's
    prev_hash no longer names the row before it). Rows removed from the very end leave a
    valid, shorter chain: with a `checkpoint` (its signature checked by the caller), the row it
    names must still be there, with its hash, and as many rows up to it as it counted.
    """
    key = await chain_key(session)
    head = checkpoint.as_dict() if isinstance(checkpoint, Checkpoint) else checkpoint
    # The trail is striped: each row links to the previous row of its own chain.
    tails: dict[int, str] = {}
    checked = 0
    through_checkpoint = 0
    checkpoint_found = head is None or head["last_seq"] == 0
    after_seq: int | None = None
    while True:
        rows = await repository.chain_batch(session, after_seq=after_seq, limit=batch_size)
        for row in rows:
            values = row._asdict()
            expected_prev = tails.get(values["chain"], GENESIS_HASH)
            if values["prev_hash"] != expected_prev:
                where = f"row {row.seq}" if values["chain"] in tails else "the first row"
                return VerifyReport(
                    ok=False,
                    checked=checked,
                    first_bad_seq=row.seq,
                    reason=f"{where} does not link to the row before it "
                    "(a row was deleted or rows were reordered)",
                )
            if not hmac.compare_digest(event_hash(values, expected_prev, key), values["hash"]):
                return VerifyReport(
                    ok=False,
                    checked=checked,
                    first_bad_seq=row.seq,
                    reason=f"row {row.seq} was modified after it was written "
                    "(or the chain was written with another MINERAL_AUDIT_KEY)",
                )
            if head is not None and row.seq <= head["last_seq"]:
                through_checkpoint += 1
                if row.seq == head["last_seq"]:
                    checkpoint_found = True
                    if values["hash"] != head["last_hash"]:
                        return VerifyReport(
                            ok=False,
                            checked=checked,
                            first_bad_seq=row.seq,
                            reason=f"row {row.seq} is not the row the checkpoint recorded",
                        )
            tails[values["chain"]] = values["hash"]
            checked += 1
        if len(rows) < batch_size:
            break
        after_seq = rows[-1].seq
    if head is not None and (not checkpoint_found or through_checkpoint != head["count"]):
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_seq=None,
            reason=f"rows are missing: the checkpoint of {head['created_at']} recorded "
            f"{head['count']} rows through seq {head['last_seq']}, the trail has "
            f"{through_checkpoint} (the newest rows were deleted?)",
        )
    return VerifyReport(ok=True, checked=checked)
