"""Checkpoints of a striped trail: every chain's head is recorded, so `verify-audit
--checkpoint` finds a deleted, truncated or altered chain (naming it) however many chains
there are; checkpoints written before chain heads existed (version 1) still verify.

The rows these tests tamper with are on chains 60-63 of the session's shared trail (written as
another process would), and are put back (or restored) before each test ends, so the rest of
the suite still verifies."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.chain import (
    GENESIS_HASH,
    Checkpoint,
    checkpoint_key,
    event_hash,
    sign_checkpoint,
)
from app.audit.cli import export_checkpoint_command, verify_audit_command
from app.audit.repository import CHAIN_STRIPES
from app.audit.service import VerifyReport, append, chain_key, make_checkpoint, verify
from app.core.config import Settings
from app.main import create_app
from app.models.audit import AuditEvent
from tests.audit.builders import audit_entry, bypassing_append_only, reinsert, rows_for
from tests.builders import make_patient
from tests.conftest import DEFAULT_ORGANIZATION, Database, RoleAuth

# Chains these tests write to directly, besides chain 0 (the service's own on SQLite).
CHAINS = (CHAIN_STRIPES - 3, CHAIN_STRIPES - 2, CHAIN_STRIPES - 1)
OTHER_CHAIN = CHAIN_STRIPES - 4


def _write_on_chain(db: Database, chain: int, count: int) -> list[dict[str, Any]]:
    """`count` rows appended to `chain` as another process would (linked to that chain's tail,
    hashed with the key), on either backend; their stored rows in seq order."""
    request_id = f"chain-{chain}-{uuid.uuid4()}"
    organization_id = uuid.uuid4()

    async def go(session: AsyncSession) -> list[dict[str, Any]]:
        key = await chain_key(session)
        prev = await session.scalar(
            select(AuditEvent.hash)
            .where(AuditEvent.chain == chain)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
        prev = prev or GENESIS_HASH
        for _ in range(count):
            entry = audit_entry(organization_id=organization_id, request_id=request_id)
            values = {**dataclasses.asdict(entry), "id": uuid.uuid4()}
            digest = event_hash(values, prev, key)
            await session.execute(
                insert(AuditEvent).values(**values, chain=chain, prev_hash=prev, hash=digest)
            )
            prev = digest
        return await rows_for(session, request_id=request_id)

    return db.in_session(go)


def _write_on_chain_zero(db: Database) -> dict[str, Any]:
    request_id = f"chain-0-{uuid.uuid4()}"
    entry = audit_entry(organization_id=uuid.uuid4(), request_id=request_id)

    async def go(session: AsyncSession) -> dict[str, Any]:
        await append(session, [entry])
        return (await rows_for(session, request_id=request_id))[0]

    return db.in_session(go)


def _checkpoint(db: Database) -> Checkpoint:
    return db.in_session(lambda session: make_checkpoint(session, secret="c" * 40))


def _verify(db: Database, checkpoint: Checkpoint | None = None) -> VerifyReport:
    return db.in_session(lambda session: verify(session, checkpoint=checkpoint))


def _delete(db: Database, rows: list[dict[str, Any]]) -> None:
    statement = "DELETE FROM audit_event WHERE seq = :seq"
    db.in_session(
        lambda session: bypassing_append_only(
            session, "DELETE", [(statement, {"seq": row["seq"]}) for row in rows]
        )
    )


def _put_back(db: Database, rows: list[dict[str, Any]]) -> None:
    async def go(session: AsyncSession) -> None:
        for row in rows:
            await reinsert(session, row)

    db.in_session(go)


@pytest.fixture
def three_chains(db: Database) -> Iterator[dict[int, list[dict[str, Any]]]]:
    """Two new rows on each of three chains, then one on chain 0 after them."""
    written = {chain: _write_on_chain(db, chain, 2) for chain in CHAINS}
    _write_on_chain_zero(db)
    yield written
    assert _verify(db).ok, "a test left the trail broken"


def test_a_checkpoint_records_the_head_and_row_count_of_every_chain(
    db: Database, three_chains: dict[int, list[dict[str, Any]]]
) -> None:
    checkpoint = _checkpoint(db)

    async def rows_per_chain(session: AsyncSession) -> dict[int, int]:
        query = select(AuditEvent.chain, func.count()).group_by(AuditEvent.chain)
        return {int(chain): int(count) for chain, count in (await session.execute(query)).all()}

    counts = db.in_session(rows_per_chain)
    heads = {head.chain: head for head in checkpoint.chains}
    assert {chain: head.count for chain, head in heads.items()} == counts
    for chain, rows in three_chains.items():
        assert heads[chain].last_seq == rows[-1]["seq"]
        assert heads[chain].last_hash == rows[-1]["hash"]
    assert checkpoint.version == 2
    assert checkpoint.count == sum(head.count for head in checkpoint.chains)
    assert checkpoint.count == db.in_session(
        lambda session: session.scalar(select(func.count()).select_from(AuditEvent))
    )
    assert checkpoint.last_seq == max(head.last_seq for head in checkpoint.chains)
    assert _verify(db, checkpoint).ok


@pytest.mark.parametrize("which", [0, 1, 2])
def test_deleting_the_newest_row_of_any_chain_after_a_checkpoint_fails_naming_the_chain(
    db: Database,
    settings: Settings,
    three_chains: dict[int, list[dict[str, Any]]],
    tmp_path: Path,
    which: int,
) -> None:
    file = tmp_path / "audit-checkpoint.json"
    export_checkpoint_command(settings, path=file)
    assert verify_audit_command(settings, checkpoint=file)[0] == 0
    chain = CHAINS[which]
    newest = three_chains[chain][-1]
    (recorded,) = [
        h["count"] for h in json.loads(file.read_text())["chains"] if h["chain"] == chain
    ]

    _delete(db, [newest])
    try:
        plain = verify_audit_command(settings)
        code, message = verify_audit_command(settings, checkpoint=file)
    finally:
        _put_back(db, [newest])

    assert plain[0] == 0  # the chain is shorter but links: only the checkpoint can tell
    assert code == 1
    assert f"chain {chain} is missing rows" in message
    assert f"recorded {recorded} rows through seq {newest['seq']}" in message
    assert f"the chain has {recorded - 1}" in message
    assert verify_audit_command(settings, checkpoint=file)[0] == 0


def test_a_truncated_chain_is_detected_and_named(
    db: Database, three_chains: dict[int, list[dict[str, Any]]]
) -> None:
    checkpoint = _checkpoint(db)
    chain = CHAINS[1]
    rows = three_chains[chain]
    (recorded,) = [head.count for head in checkpoint.chains if head.chain == chain]

    _delete(db, rows)
    try:
        report = _verify(db, checkpoint)
    finally:
        _put_back(db, rows)

    assert not report.ok
    assert report.chain == chain
    assert report.reason is not None
    assert f"the chain has {recorded - 2}" in report.reason
    assert _verify(db, checkpoint).ok


def test_an_altered_newest_row_is_detected_even_with_its_hash_recomputed_with_the_key(
    db: Database, three_chains: dict[int, list[dict[str, Any]]]
) -> None:
    """Whoever holds the key can rewrite a chain's rows and relink them: the checkpoint,
    kept outside, still pins the head of every chain."""
    checkpoint = _checkpoint(db)
    chain = CHAINS[2]
    newest = three_chains[chain][-1]
    key = db.in_session(chain_key)
    forged = {**newest, "action": "search"}
    forged_hash = event_hash(forged, newest["prev_hash"], key)
    update = "UPDATE audit_event SET action = :action, hash = :hash WHERE seq = :seq"

    def rewrite(action: str, digest: str) -> None:
        params = {"action": action, "hash": digest, "seq": newest["seq"]}
        db.in_session(lambda session: bypassing_append_only(session, "UPDATE", [(update, params)]))

    rewrite("search", forged_hash)
    try:
        plain = _verify(db)
        against = _verify(db, checkpoint)
    finally:
        rewrite(newest["action"], newest["hash"])

    assert plain.ok
    assert not against.ok
    assert against.chain == chain
    assert against.first_bad_seq == newest["seq"]
    assert against.reason is not None
    assert "not the row the checkpoint recorded" in against.reason


def _version_1(checkpoint: Checkpoint, secret: str) -> dict[str, Any]:
    """The checkpoint document the service wrote before chain heads: one head, one count."""
    fields = {
        "version": 1,
        "last_seq": checkpoint.last_seq,
        "last_hash": checkpoint.last_hash,
        "count": checkpoint.count,
        "created_at": checkpoint.created_at,
    }
    return {**fields, "signature": sign_checkpoint(fields, checkpoint_key(secret))}


def test_a_version_1_checkpoint_still_verifies_and_still_catches_a_cut_tail(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    secret = settings.audit_key.get_secret_value()
    head = _write_on_chain_zero(db)
    file = tmp_path / "old-checkpoint.json"
    file.write_text(json.dumps(_version_1(_checkpoint(db), secret), indent=2))

    code, message = verify_audit_command(settings, checkpoint=file)
    assert code == 0, message
    assert f"checkpoint seq {head['seq']}" in message

    _delete(db, [head])
    try:
        code, message = verify_audit_command(settings, checkpoint=file)
    finally:
        _put_back(db, [head])
    assert code == 1
    assert "rows are missing" in message


def test_a_deleted_chain_head_covered_by_moving_a_later_row_fools_only_a_version_1_checkpoint(
    db: Database, three_chains: dict[int, list[dict[str, Any]]]
) -> None:
    """seq and chain are not hashed: after a checkpoint, the newest row of one chain is deleted
    and a later row of another chain put under its seq (still after that chain's previous row,
    so every link holds). The trail's newest row and its row count up to it are unchanged:
    only the chain heads differ."""
    checkpoint = _checkpoint(db)
    old = Checkpoint.load(_version_1(checkpoint, "c" * 40), checkpoint_key("c" * 40))
    hidden = three_chains[CHAINS[0]][-1]
    (later,) = _write_on_chain(db, OTHER_CHAIN, 1)
    moved = {**later, "seq": hidden["seq"]}

    _delete(db, [hidden, later])
    _put_back(db, [moved])
    try:
        plain = _verify(db)
        against_old = _verify(db, old)
        against_new = _verify(db, checkpoint)
    finally:
        _delete(db, [moved])
        _put_back(db, [hidden, later])

    assert plain.ok
    assert against_old.ok  # the gap a single head left
    assert not against_new.ok
    assert against_new.first_bad_seq == hidden["seq"]
    assert against_new.chain == OTHER_CHAIN
    assert against_new.reason is not None
    assert "older than the checkpoint" in against_new.reason


def test_a_checkpoint_file_edited_to_drop_a_chain_is_refused(
    db: Database,
    settings: Settings,
    three_chains: dict[int, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    file = tmp_path / "audit-checkpoint.json"
    export_checkpoint_command(settings, path=file)
    document = json.loads(file.read_text())
    dropped = [head for head in document["chains"] if head["chain"] not in three_chains]
    file.write_text(json.dumps({**document, "chains": dropped}))

    code, message = verify_audit_command(settings, checkpoint=file)

    assert code == 1
    assert "signature" in message


def test_writes_from_the_api_over_four_chains_verify_against_a_checkpoint(
    db: Database,
    settings: Settings,
    api_keys: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """MINERAL_AUDIT_CHAINS=4: this process appends to its lanes (all four chains here) in
    rotation."""
    monkeypatch.setenv("MINERAL_AUDIT_CHAINS", "4")
    striped = Settings(
        database_url=settings.database_url, environment="test", api_key_cache_seconds=0
    )
    assert striped.audit_chains == 4

    with TestClient(create_app(striped), raise_server_exceptions=False) as client:
        client.auth = RoleAuth(api_keys[DEFAULT_ORGANIZATION])
        patients = [make_patient(client) for _ in range(6)]
        for patient in patients:
            assert client.get(f"/api/v1/patients/{patient['id']}").status_code == 200
    ids = [uuid.UUID(patient["id"]) for patient in patients]

    async def chains_used(session: AsyncSession) -> set[int]:
        query = select(AuditEvent.chain).where(AuditEvent.patient_id.in_(ids)).distinct()
        return set((await session.scalars(query)).all())

    used = db.in_session(chains_used)
    if settings.database_url.startswith("postgresql"):
        assert len(used) >= 2
        assert used <= {0, 1, 2, 3}
    else:
        assert used == {0}  # SQLite has one writer: one chain
    file = tmp_path / "audit-checkpoint.json"
    export_checkpoint_command(striped, path=file)
    recorded = {head["chain"] for head in json.loads(file.read_text())["chains"]}
    assert used <= recorded
    code, message = verify_audit_command(striped, checkpoint=file)
    assert code == 0, message
    assert "chain heads) present" in message
