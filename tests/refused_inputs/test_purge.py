"""`purge-refused` deletes refused inputs (raw PHI payloads) past the retention setting, in
every organization, and keeps the newer ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.config import Settings
from app.core.db import utcnow
from app.models.refused_input import RefusedInput
from app.refused_inputs.cli import purge_refused_command
from tests.builders import MRN_SYSTEM, panel_body, result
from tests.conftest import Database
from tests.interop.hl7.messages import next_id


def _refuse_one(client: TestClient) -> None:
    ref = {"identifier": {"system": MRN_SYSTEM, "value": next_id("MRN")}}
    body = panel_body({}, [result("magnesium", "0.80", "mmol/L")], patient_ref=ref)
    assert client.post("/api/v1/panels", json=body).status_code in (404, 422)


async def _age_all(session: Any) -> None:
    # Everything stored so far was received 31 days ago (the retention default is 30).
    await session.execute(update(RefusedInput).values(received_at=utcnow() - timedelta(days=31)))


def test_purge_refused_deletes_only_rows_past_retention(
    client: TestClient, db: Database, settings: Settings
) -> None:
    _refuse_one(client)
    _refuse_one(client)
    assert purge_refused_command(settings) == "purged 0 refused inputs older than 30 days"
    db.in_session(_age_all)

    assert purge_refused_command(settings) == "purged 2 refused inputs older than 30 days"
    assert db.count("refused_input") == 0
    _refuse_one(client)
    assert purge_refused_command(settings) == "purged 0 refused inputs older than 30 days"
    assert db.count("refused_input") == 1
