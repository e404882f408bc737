"""Write and verify the PHI audit trail.

`append` is called by the request's own transaction, as its last statement, so an audit row
exists exactly when the change (or the disclosure) it records was committed. Rows hold ids,
never patient values.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import repository
from app.audit.chain import GENESIS_HASH, canonical_parts, event_hash
from app.db import READ_ONLY, new_id, utcnow
from app.models.audit import AuditEvent

AuditOutcome = Literal["success", "denied", "error"]
OUTCOMES: tuple[AuditOutcome, ...] = ("success", "denied", "error")

# Actions the service records today; the column takes any short lowercase word.
ACTIONS = ("read", "search", "create", "update", "delete", "reinterpret")


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


async def append(session: AsyncSession, entries: Sequence[AuditEntry]) -> None:
    """Insert `entries` in the caller's transaction, each linked to the one before.

    Call it last, just before the transaction commits: on PostgreSQL it takes the chain's
    advisory lock, which every other appender then waits for until this transaction ends. The
    session must be a write session (READ COMMITTED, the default), never a read-only one.
    """
    if not entries:
        return
    if await _is_read_only(session):
        # On SQLite a read-only (deferred) transaction that starts writing late can fail with
        # SQLITE_BUSY; refuse on both backends so the mistake shows in any test run.
        raise RuntimeError("audit rows need a write session; this one is read-only")
    # One statement per row, in chain order: it reads the tail and inserts the row with its
    # hash (PostgreSQL: after taking the chain's lock; SQLite: the write lock is already held).
    for entry in entries:
        values = _row(entry)
        before, after = canonical_parts(values)
        await repository.append_locked(
            session, values, before=before, after=after, genesis=GENESIS_HASH
        )


async def verify(session: AsyncSession, *, batch_size: int = 1000) -> VerifyReport:
    """Walk the whole chain in seq order, batch by batch, recomputing every hash.

    Finds a modified row (its hash no longer matches its content), a deleted row or rows put
    in another order (the next row's prev_hash no longer names the row before it). Rows
    removed from the very end leave a valid, shorter chain: compare the latest hash with one
    kept elsewhere to catch that.
    """
    expected_prev = GENESIS_HASH
    checked = 0
    after_seq: int | None = None
    while True:
        rows = await repository.chain_batch(session, after_seq=after_seq, limit=batch_size)
        for row in rows:
            values = row._asdict()
            if values["prev_hash"] != expected_prev:
                where = "the first row" if checked == 0 else f"row {row.seq}"
                return VerifyReport(
                    ok=False,
                    checked=checked,
                    first_bad_seq=row.seq,
                    reason=f"{where} does not link to the row before it "
                    "(a row was deleted or rows were reordered)",
                )
            if event_hash(values, expected_prev) != values["hash"]:
                return VerifyReport(
                    ok=False,
                    checked=checked,
                    first_bad_seq=row.seq,
                    reason=f"row {row.seq} was modified after it was written",
                )
            expected_prev = values["hash"]
            checked += 1
        if len(rows) < batch_size:
            return VerifyReport(ok=True, checked=checked)
        after_seq = rows[-1].seq
