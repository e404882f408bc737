"""Audit integrity against a database administrator (PostgreSQL) and tail truncation (both).

The PostgreSQL tests use a database of their own and a service role with a unique name,
created by ``setup-roles`` exactly as an operator would, and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.audit.chain import canonical_bytes
from app.audit.cli import export_checkpoint_command, verify_audit_command
from app.audit.roles import setup_roles
from app.audit.service import append, make_checkpoint, verify
from app.core.config import Settings, to_async_url
from app.core.db import make_engine, make_sessionmaker, transaction
from tests.audit.builders import audit_entry, bypassing_append_only, reinsert, rows_for
from tests.conftest import BACKENDS, POSTGRES_SERVER_URL, Database, alembic_config

needs_postgresql = pytest.mark.skipif(
    "postgresql" not in BACKENDS, reason="roles and grants are PostgreSQL's"
)


@dataclass(frozen=True)
class Roles:
    owner: Settings  # the migration role (here the server's superuser)
    service: Settings  # the role setup-roles prepared
    service_role: str


async def _admin(url: str, *statements: str) -> None:
    engine = create_async_engine(to_async_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for sql in statements:
                await connection.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture
def roles(scratch_database: Callable[[str], str]) -> Iterator[Roles]:
    """A migrated database of its own, and a service role set up by `setup-roles`."""
    owner_url = scratch_database("postgresql")
    command.upgrade(alembic_config(owner_url), "head")
    role = f"mineral_svc_{uuid.uuid4().hex[:10]}"
    asyncio.run(setup_roles(owner_url, service_role=role))
    server, _, database = owner_url.rpartition("/")
    host = server.split("@", 1)[-1].removeprefix("postgresql://")
    service_url = f"postgresql://{role}@{host}/{database}"
    try:
        yield Roles(
            owner=Settings(database_url=owner_url, environment="test"),
            service=Settings(
                database_url=service_url, migration_database_url=owner_url, environment="test"
            ),
            service_role=role,
        )
    finally:
        # Only what this test created: the role's grants in its own database, then the role.
        asyncio.run(_admin(owner_url, f'DROP OWNED BY "{role}"'))
        asyncio.run(_admin(POSTGRES_SERVER_URL, f'DROP ROLE IF EXISTS "{role}"'))


def _in_session(settings: Settings, fn: Callable[[AsyncSession], Any]) -> Any:
    async def go() -> Any:
        engine = make_engine(settings)
        try:
            async with transaction(make_sessionmaker(engine)) as session:
                return await fn(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _append(settings: Settings, count: int) -> list[dict[str, Any]]:
    request_id = f"integrity-{uuid.uuid4()}"
    entries = [
        audit_entry(organization_id=uuid.uuid4(), request_id=request_id) for _ in range(count)
    ]

    async def go(session: AsyncSession) -> list[dict[str, Any]]:
        await append(session, entries)
        return await rows_for(session, request_id=request_id)

    rows: list[dict[str, Any]] = _in_session(settings, go)
    return rows


@needs_postgresql
def test_the_service_role_appends_and_reads_but_cannot_tamper(roles: Roles) -> None:
    rows = _append(roles.service, 3)
    assert len(rows) == 3
    assert _in_session(roles.service, lambda session: verify(session)).ok

    attempts = [
        "UPDATE audit_event SET outcome = 'denied'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
        "ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change",
        "ALTER TABLE audit_event DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_event_no_change ON audit_event",
        "ALTER TABLE audit_event OWNER TO CURRENT_USER",
        "DROP TABLE audit_event",
        "CREATE TABLE audit_event_copy (seq bigint)",
        "UPDATE alembic_version SET version_num = 'x'",
        f'SET ROLE "{roles.owner.database_url.rsplit("@", 1)[0].rsplit("/", 1)[-1]}"',
    ]
    for sql in attempts:

        async def tamper(session: AsyncSession, sql: str = sql) -> None:
            await session.execute(text(sql))

        with pytest.raises(DBAPIError, match="permission denied|must be owner"):
            _in_session(roles.service, tamper)

    request_id = rows[0]["request_id"]
    assert (
        _in_session(roles.owner, lambda session: rows_for(session, request_id=request_id)) == rows
    )
    assert _in_session(roles.service, lambda session: verify(session)).ok


@needs_postgresql
def test_the_service_runs_as_the_service_role(roles: Roles) -> None:
    """The grants are enough for the service itself: keys, patients, panels, the trail."""
    from fastapi.testclient import TestClient

    from app.auth.cli import create_api_key_command
    from app.main import create_app
    from tests.builders import make_patient, post_panel, result

    key = create_api_key_command(roles.service, org="default", role="integration").split()[-1]
    admin = create_api_key_command(roles.service, org="default", role="admin").split()[-1]
    with TestClient(create_app(roles.service), raise_server_exceptions=False) as client:
        client.headers["X-API-Key"] = key
        patient = make_patient(client, mrn="MRN-ROLE-1")
        post_panel(client, patient, [result("magnesium", "0.80", "mmol/L")])
        trail = client.get(
            "/api/v1/audit-events",
            params={"patient_id": patient["id"]},
            headers={"X-API-Key": admin},
        )
    assert trail.status_code == 200, trail.text
    assert {item["action"] for item in trail.json()["items"]} == {"create"}
    assert verify_audit_command(roles.service)[0] == 0


@needs_postgresql
def test_a_superuser_rewrite_with_recomputed_unkeyed_hashes_is_detected(roles: Roles) -> None:
    first, middle, last = _append(roles.service, 3)

    # A superuser hides what happened and relinks the chain as an unkeyed SHA-256 chain would.
    forged = {**middle, "action": "search"}
    middle_hash = hashlib.sha256(canonical_bytes(forged, middle["prev_hash"])).hexdigest()
    last_hash = hashlib.sha256(canonical_bytes(last, middle_hash)).hexdigest()
    update = (
        "UPDATE audit_event SET action = :action, prev_hash = :prev, hash = :hash WHERE seq = :seq"
    )
    _in_session(
        roles.owner,
        lambda session: bypassing_append_only(
            session,
            "UPDATE",
            [
                (update, {**_link(forged, middle["prev_hash"], middle_hash)}),
                (update, {**_link(last, middle_hash, last_hash)}),
            ],
        ),
    )

    report = _in_session(roles.service, lambda session: verify(session))
    code, message = verify_audit_command(roles.service)

    assert not report.ok
    assert report.first_bad_seq == middle["seq"]
    assert code == 1
    assert f"BROKEN at seq {middle['seq']}" in message


def _link(row: dict[str, Any], prev: str, digest: str) -> dict[str, Any]:
    return {"action": row["action"], "prev": prev, "hash": digest, "seq": row["seq"]}


@needs_postgresql
def test_a_tail_deletion_is_detected_against_a_checkpoint(roles: Roles, tmp_path: Path) -> None:
    _append(roles.service, 3)
    checkpoint = tmp_path / "audit-head.json"
    export_checkpoint_command(roles.service, path=checkpoint)
    _append(roles.service, 2)  # rows after the checkpoint are fine
    assert verify_audit_command(roles.service, checkpoint=checkpoint)[0] == 0

    # A superuser deletes the newest rows, beyond the checkpoint's head: the shorter chain
    # still links, so only the checkpoint can tell.
    head = json.loads(checkpoint.read_text())
    delete = "DELETE FROM audit_event WHERE seq >= :seq"
    _in_session(
        roles.owner,
        lambda session: bypassing_append_only(
            session, "DELETE", [(delete, {"seq": head["last_seq"] - 1})]
        ),
    )

    assert verify_audit_command(roles.service)[0] == 0
    code, message = verify_audit_command(roles.service, checkpoint=checkpoint)
    assert code == 1
    assert "missing" in message

    # Nor can the checkpoint be edited to match: its signature is keyed.
    checkpoint.write_text(json.dumps({**head, "count": head["count"] - 2}))
    code, message = verify_audit_command(roles.service, checkpoint=checkpoint)
    assert code == 1
    assert "signature" in message


def test_a_checkpoint_catches_a_deleted_tail_on_either_backend(db: Database) -> None:
    request_id = f"checkpoint-{uuid.uuid4()}"
    entries = [audit_entry(organization_id=uuid.uuid4(), request_id=request_id) for _ in range(2)]

    async def go(session: AsyncSession) -> list[dict[str, Any]]:
        await append(session, entries)
        return await rows_for(session, request_id=request_id)

    rows = db.in_session(go)
    checkpoint = db.in_session(lambda session: make_checkpoint(session, secret="s" * 40))
    assert checkpoint.last_hash == rows[-1]["hash"]
    assert db.in_session(lambda session: verify(session, checkpoint=checkpoint)).ok

    delete = "DELETE FROM audit_event WHERE seq = :seq"
    db.in_session(
        lambda session: bypassing_append_only(
            session, "DELETE", [(delete, {"seq": rows[-1]["seq"]})]
        )
    )
    try:
        plain = db.in_session(lambda session: verify(session))
        against = db.in_session(lambda session: verify(session, checkpoint=checkpoint))
    finally:
        db.in_session(lambda session: reinsert(session, rows[-1]))

    assert plain.ok
    assert not against.ok
    assert against.reason is not None
    assert "missing" in against.reason
    assert db.in_session(lambda session: verify(session, checkpoint=checkpoint)).ok


def test_rows_written_with_another_key_do_not_verify(db: Database, settings: Settings) -> None:
    request_id = f"key-{uuid.uuid4()}"
    entry = audit_entry(organization_id=uuid.uuid4(), request_id=request_id)
    db.in_session(lambda session: append(session, [entry]))
    other = settings.model_copy(update={"audit_key": SecretStr("another key " + "x0" * 16)})

    code, message = verify_audit_command(other)

    assert code == 1
    assert "another MINERAL_AUDIT_KEY" in message
    assert verify_audit_command(settings)[0] == 0
