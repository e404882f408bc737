"""Two batches sending the same panels at once, in opposite orders: both complete, every panel
is stored exactly once (PostgreSQL, where writers really run concurrently)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.audit.service import verify
from app.batches import service
from tests.api.access import Keys, key_header
from tests.builders import make_patient, panel_body, result
from tests.conftest import DEFAULT_ORGANIZATION, Database

LINES = 300


def test_two_batches_with_the_same_panels_in_opposite_orders_both_complete(
    client: TestClient,
    db: Database,
    api_keys: Keys,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: no two chunks ever interleave")
    patients = [make_patient(client) for _ in range(5)]
    analytes = [
        ("magnesium", "0.62", "mmol/L"),
        ("zinc", "80", "ug/dL"),
        ("calcium", "9.5", "mg/dL"),
    ]
    panels = [
        json.dumps(
            panel_body(patients[n % 5], [result(*analytes[n % 3])], accession=f"CC-{n:04d}")
        ).encode()
        for n in range(LINES)
    ]
    forward = b"\n".join(panels) + b"\n"
    backward = b"\n".join(reversed(panels)) + b"\n"
    # Small chunks: the two batches' chunks overlap in many different ways.
    monkeypatch.setattr(service, "CHUNK_LINES", 50)
    headers = {
        "content-type": "application/x-ndjson",
        **key_header(api_keys, DEFAULT_ORGANIZATION, "integration"),
    }

    async def both() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=db.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return list(
                await asyncio.gather(
                    http.post("/api/v1/panel-batches", content=forward, headers=headers),
                    http.post("/api/v1/panel-batches", content=backward, headers=headers),
                )
            )

    responses = db.run(both)

    outcomes: list[dict[str, Any]] = []
    batches = []
    for response in responses:
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == LINES + 1, lines[-1]
        outcomes += lines[:-1]
        batches.append(lines[-1]["batch"])
    assert {o["outcome"] for o in outcomes} <= {"stored", "unchanged"}, [
        o for o in outcomes if o["outcome"] == "refused"
    ][:3]
    assert sum(o["outcome"] == "stored" for o in outcomes) == LINES
    assert [b["status"] for b in batches] == ["completed", "completed"]
    assert sum(b["stored"] for b in batches) == LINES
    assert sum(b["unchanged"] for b in batches) == LINES
    # Both batches answer the same panel for the same accession.
    first = {o["line"]: o["panel_id"] for o in outcomes[:LINES]}
    second = {LINES + 1 - o["line"]: o["panel_id"] for o in outcomes[LINES:]}
    assert first == second
    assert db.count("panel") == LINES
    assert db.count("result") == LINES
    assert db.in_session(lambda session: verify(session)).ok
