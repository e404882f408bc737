"""Migration a8c3d5e7f901 re-seals an existing unkeyed chain with the key (after verifying it),
refuses to launder a broken one, and its downgrade restores the unkeyed chain."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit.chain import GENESIS_HASH, event_hash, legacy_event_hash, row_key
from app.core.config import to_async_url
from app.core.db import new_id, utcnow
from app.models.audit import AuditEvent
from tests.conftest import BACKENDS, alembic_config

BEFORE = "7d1a2b3c4e5f"
SECRET = "reseal test secret 0123456789abcdef"


def _run(url: str, fn: Callable[[Any], Any]) -> Any:
    async def go() -> Any:
        engine = create_async_engine(to_async_url(url))
        try:
            async with engine.begin() as connection:
                return await connection.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _legacy_rows(count: int) -> list[dict[str, Any]]:
    rows, prev = [], GENESIS_HASH
    for index in range(count):
        values: dict[str, Any] = {
            "id": new_id(),
            "occurred_at": utcnow(),
            "organization_id": uuid.uuid4(),
            "principal_id": "key:reseal",
            "principal_kind": "api_key",
            "role": "clinician",
            "action": "read",
            "resource_type": "patient",
            "resource_id": None,
            "patient_id": uuid.uuid4(),
            "outcome": "success",
            "status_code": 200,
            "method": "GET",
            "path": f"/api/v1/patients/{index}",
            "request_id": f"reseal-{index}",
            "client_address": "192.0.2.1",
        }
        digest = legacy_event_hash(values, prev)
        rows.append({**values, "prev_hash": prev, "hash": digest})
        prev = digest
    return rows


def _stored(connection: Any) -> list[dict[str, Any]]:
    table = AuditEvent.__table__
    # The columns of the revisions this test moves between (`chain` came later).
    columns = [column for column in table.c if column.name != "chain"]
    return [dict(r._mapping) for r in connection.execute(select(*columns).order_by(table.c.seq))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unkeyed_chain_is_resealed_with_the_key_and_back(
    backend: str, scratch_database: Callable[[str], str]
) -> None:
    url = scratch_database(backend)
    config = alembic_config(url)
    config.attributes["audit_key"] = SECRET
    command.upgrade(config, BEFORE)
    rows = _legacy_rows(3)
    _run(url, lambda connection: connection.execute(insert(AuditEvent), rows))

    command.upgrade(config, "head")

    sealed = _run(url, _stored)
    key, prev = row_key(SECRET), GENESIS_HASH
    for row in sealed:
        assert row["prev_hash"] == prev
        assert row["hash"] == event_hash(row, prev, key)
        prev = row["hash"]
    assert [r["request_id"] for r in sealed] == [r["request_id"] for r in rows]

    command.downgrade(config, BEFORE)

    assert [r["hash"] for r in _run(url, _stored)] == [r["hash"] for r in rows]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_broken_unkeyed_chain_is_not_resealed(
    backend: str, scratch_database: Callable[[str], str]
) -> None:
    url = scratch_database(backend)
    config = alembic_config(url)
    config.attributes["audit_key"] = SECRET
    command.upgrade(config, BEFORE)
    rows = _legacy_rows(2)
    rows[1]["action"] = "search"  # changed after it was hashed
    _run(url, lambda connection: connection.execute(insert(AuditEvent), rows))

    with pytest.raises(RuntimeError, match="broken at seq"):
        command.upgrade(config, "head")

    # Nothing changed: still at the revision before, rows as they were.
    version = _run(
        url, lambda c: c.execute(text("SELECT version_num FROM alembic_version")).scalar()
    )
    assert version == BEFORE
    assert [r["hash"] for r in _run(url, _stored)] == [r["hash"] for r in rows]
