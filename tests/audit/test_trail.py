"""Appending to the audit trail, the database's refusal to change it, and tamper detection."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.chain import GENESIS_HASH, event_hash
from app.audit.cli import verify_audit_command
from app.audit.service import AuditEntry, VerifyReport, append, chain_key, verify
from app.core.config import Settings
from app.core.db import transaction
from app.models.audit import AuditEvent
from tests.audit.builders import audit_entry, bypassing_append_only, reinsert, rows_for
from tests.conftest import Database


def _append_entries(db: Database, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    """Append `count` entries in one transaction; their stored rows in chain order."""
    request_id = f"req-{uuid.uuid4()}"
    organization_id = kwargs.pop("organization_id", uuid.uuid4())
    entries = [
        audit_entry(organization_id=organization_id, request_id=request_id, **kwargs)
        for _ in range(count)
    ]

    async def go(session: AsyncSession) -> list[dict[str, Any]]:
        await append(session, entries)
        return await rows_for(session, request_id=request_id)

    return db.in_session(go)


def _verify(db: Database, **kwargs: Any) -> VerifyReport:
    async def go(session: AsyncSession) -> VerifyReport:
        return await verify(session, **kwargs)

    return db.in_session(go)


def _key(db: Database) -> bytes:
    return db.in_session(chain_key)


def _assert_intact(db: Database) -> None:
    report = _verify(db)
    assert report.ok, report


def test_appended_rows_each_link_to_the_row_before(db: Database) -> None:
    async def tail(session: AsyncSession) -> str:
        # The app under test keeps one chain (chain 0); other tests of the same database may
        # have left rows on other stripes of the trail.
        last = await session.scalar(
            select(AuditEvent.hash)
            .where(AuditEvent.chain == 0)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
        return last or GENESIS_HASH

    before = db.in_session(tail)

    rows = _append_entries(db, 3)

    assert [row["prev_hash"] for row in rows] == [before, rows[0]["hash"], rows[1]["hash"]]
    for row in rows:
        assert row["hash"] == event_hash(row, row["prev_hash"], _key(db))
    assert rows[0]["seq"] < rows[1]["seq"] < rows[2]["seq"]
    assert db.in_session(tail) == rows[-1]["hash"]
    _assert_intact(db)


def test_verify_in_small_batches_checks_every_row(db: Database) -> None:
    _append_entries(db, 5)

    whole = _verify(db)
    batched = _verify(db, batch_size=2)

    assert whole.ok
    assert batched.ok
    assert batched.checked == whole.checked >= 5


def test_appending_nothing_writes_nothing(db: Database) -> None:
    before = db.count("audit_event")

    db.in_session(lambda session: append(session, []))

    assert db.count("audit_event") == before


def test_request_text_is_made_storable_and_still_verifies(db: Database) -> None:
    long_path = "/api/v1/patients/\x00" + "a" * 600

    (row,) = _append_entries(db, 1, path=long_path)

    assert len(row["path"]) == 500
    assert "\x00" not in row["path"]
    assert row["path"].startswith("/api/v1/patients/\ufffd")
    _assert_intact(db)


def test_an_entry_must_have_a_utc_time_and_a_known_outcome() -> None:
    required: dict[str, Any] = {
        "organization_id": uuid.uuid4(),
        "principal_id": None,
        "action": "read",
        "resource_type": "patient",
    }
    with pytest.raises(ValueError, match="timezone"):
        AuditEntry(occurred_at=datetime(2026, 11, 25, 13, 0), outcome="success", **required)
    with pytest.raises(ValueError, match="outcome"):
        AuditEntry(outcome="maybe", **required)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="action"):
        AuditEntry(outcome="success", **{**required, "action": "x" * 21})


def test_a_read_only_session_cannot_append(db: Database) -> None:
    entry = audit_entry(organization_id=uuid.uuid4(), request_id="read-only")

    async def go() -> None:
        async with transaction(db.app.state.read_sessionmaker) as session:
            await append(session, [entry])

    with pytest.raises(RuntimeError, match="write session"):
        db.run(go)


def test_a_snapshot_older_than_the_lock_cannot_append(db: Database) -> None:
    if db.app.state.engine.dialect.name != "postgresql":
        pytest.skip("SQLite transactions are serializable and hold the write lock from BEGIN")
    entry = audit_entry(organization_id=uuid.uuid4(), request_id="repeatable-read")

    async def go() -> None:
        async with db.app.state.sessionmaker() as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            try:
                await append(session, [entry])
            finally:
                await session.rollback()

    # The check runs inside audit_append() in the database, so the refusal is a database error.
    with pytest.raises(DBAPIError, match="READ COMMITTED"):
        db.run(go)


def test_the_database_refuses_to_update_an_audit_row(db: Database) -> None:
    (row,) = _append_entries(db, 1)

    async def tamper(session: AsyncSession) -> None:
        await session.execute(
            text("UPDATE audit_event SET action = 'delete' WHERE seq = :seq"), {"seq": row["seq"]}
        )

    with pytest.raises(DBAPIError, match="append-only"):
        db.in_session(tamper)

    assert db.in_session(lambda session: rows_for(session, request_id=row["request_id"])) == [row]


def test_the_database_refuses_to_delete_audit_rows(db: Database) -> None:
    (row,) = _append_entries(db, 1)
    before = db.count("audit_event")
    statements = ["DELETE FROM audit_event WHERE seq = :seq", "DELETE FROM audit_event"]
    if db.app.state.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_event")

    for sql in statements:

        async def tamper(session: AsyncSession, sql: str = sql) -> None:
            await session.execute(text(sql), {"seq": row["seq"]} if ":seq" in sql else {})

        with pytest.raises(DBAPIError, match="append-only"):
            db.in_session(tamper)

    assert db.count("audit_event") == before


def test_verify_names_the_first_modified_row(db: Database, settings: Settings) -> None:
    _assert_intact(db)
    first, middle, last = _append_entries(db, 3)
    update = "UPDATE audit_event SET resource_id = :value WHERE seq = :seq"

    db.in_session(
        lambda session: bypassing_append_only(
            session, "UPDATE", [(update, {"value": "someone-else", "seq": middle["seq"]})]
        )
    )
    try:
        report = _verify(db)
        exit_code, message = verify_audit_command(settings)
    finally:
        db.in_session(
            lambda session: bypassing_append_only(
                session,
                "UPDATE",
                [(update, {"value": middle["resource_id"], "seq": middle["seq"]})],
            )
        )

    assert not report.ok
    assert report.first_bad_seq == middle["seq"]
    assert report.reason is not None
    assert "modified" in report.reason
    assert exit_code == 1
    assert f"seq {middle['seq']}" in message
    _assert_intact(db)
    assert verify_audit_command(settings)[0] == 0


def test_verify_detects_a_modified_row_whose_hash_was_recomputed(db: Database) -> None:
    _assert_intact(db)
    first, middle, last = _append_entries(db, 3)
    forged = {**middle, "action": "search"}
    # (someone holding the key: without it, see test_a_rewrite_without_the_key_is_detected)
    forged_hash = event_hash(forged, middle["prev_hash"], _key(db))
    update = "UPDATE audit_event SET action = :action, hash = :hash WHERE seq = :seq"

    db.in_session(
        lambda session: bypassing_append_only(
            session,
            "UPDATE",
            [(update, {"action": "search", "hash": forged_hash, "seq": middle["seq"]})],
        )
    )
    try:
        report = _verify(db)
    finally:
        db.in_session(
            lambda session: bypassing_append_only(
                session,
                "UPDATE",
                [
                    (
                        update,
                        {"action": middle["action"], "hash": middle["hash"], "seq": middle["seq"]},
                    )
                ],
            )
        )

    assert not report.ok
    assert report.first_bad_seq == last["seq"]
    _assert_intact(db)


def test_verify_names_the_row_after_a_deleted_one(db: Database, settings: Settings) -> None:
    _assert_intact(db)
    first, middle, last = _append_entries(db, 3)

    db.in_session(
        lambda session: bypassing_append_only(
            session,
            "DELETE",
            [("DELETE FROM audit_event WHERE seq = :seq", {"seq": middle["seq"]})],
        )
    )
    try:
        report = _verify(db)
        exit_code, message = verify_audit_command(settings)
    finally:
        db.in_session(lambda session: reinsert(session, middle))

    assert not report.ok
    assert report.first_bad_seq == last["seq"]
    assert report.reason is not None
    assert "deleted" in report.reason
    assert exit_code == 1
    assert f"seq {last['seq']}" in message
    _assert_intact(db)


def test_verify_detects_rows_put_in_another_order(db: Database) -> None:
    _assert_intact(db)
    first, middle, last = _append_entries(db, 3)
    move = "UPDATE audit_event SET seq = :to WHERE seq = :from"
    parked = -middle["seq"]

    def swap(a: int, b: int) -> list[tuple[str, dict[str, Any]]]:
        return [
            (move, {"from": a, "to": parked}),
            (move, {"from": b, "to": a}),
            (move, {"from": parked, "to": b}),
        ]

    db.in_session(
        lambda session: bypassing_append_only(session, "UPDATE", swap(middle["seq"], last["seq"]))
    )
    try:
        report = _verify(db)
    finally:
        db.in_session(
            lambda session: bypassing_append_only(
                session, "UPDATE", swap(middle["seq"], last["seq"])
            )
        )

    assert not report.ok
    assert report.first_bad_seq == middle["seq"]
    _assert_intact(db)


def test_concurrent_appends_form_one_valid_chain(db: Database) -> None:
    organization_id = uuid.uuid4()
    writers = 20

    async def one_request(index: int) -> None:
        async with transaction(db.app.state.sessionmaker) as session:
            # Some work first, so the transactions really overlap before they append.
            await session.execute(select(func.count()).select_from(AuditEvent))
            await asyncio.sleep(0.01)
            await append(
                session,
                [
                    audit_entry(
                        organization_id=organization_id, request_id=f"{organization_id}-{index}"
                    )
                    for _ in range(2)
                ],
            )

    async def all_requests() -> None:
        await asyncio.gather(*(one_request(index) for index in range(writers)))

    db.run(all_requests)

    async def stored(session: AsyncSession) -> list[Any]:
        result = await session.execute(
            select(AuditEvent.request_id, AuditEvent.prev_hash, AuditEvent.hash)
            .where(AuditEvent.organization_id == organization_id)
            .order_by(AuditEvent.seq)
        )
        return list(result)

    rows = db.in_session(stored)
    assert len(rows) == 2 * writers
    # Each transaction's two rows are adjacent in the chain: no interleaving.
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        assert first.request_id == second.request_id
        assert second.prev_hash == first.hash
    assert len({row.prev_hash for row in rows}) == len(rows)  # no fork: one successor per row
    _assert_intact(db)
