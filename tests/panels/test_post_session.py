"""POST /api/v1/panels opens the request's audited transaction only on its plain path: a panel
the hot path stores opens none; the plain path opens exactly one, which commits the panel with
its audit row (or rolls back, the refusal audited once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from starlette.requests import Request

from app.core import db as db_module
from app.core import deps
from app.core.config import Settings
from app.idempotency.http import DeferredIdempotency
from app.panels import fast_post
from tests.builders import expect_problem, make_patient, panel_body, result
from tests.conftest import Database

RESULTS = [result("magnesium", "0.62", "mmol/L"), result("calcium", "9.1", "mg/dL")]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every audited request transaction opened, and whether the hot path answered first."""
    events: list[str] = []
    real_transaction = db_module.transaction
    real_try_post = fast_post.try_post

    @asynccontextmanager
    async def counting(factory: Any) -> AsyncIterator[AsyncSession]:
        events.append("transaction")
        async with real_transaction(factory) as session:
            yield session

    async def spying(*args: Any, **kwargs: Any) -> Any:
        answer = await real_try_post(*args, **kwargs)
        events.append("hot" if answer is not None else "plain")
        return answer

    monkeypatch.setattr(deps, "transaction", counting)
    monkeypatch.setattr(fast_post, "try_post", spying)
    return events


def test_a_panel_opens_the_request_transaction_only_on_the_plain_path(
    client: TestClient, db: Database, opened: list[str]
) -> None:
    patient = make_patient(client)
    body = panel_body(patient, RESULTS, accession="LAZY-1")
    client.post("/api/v1/panels", json=body)  # the process now knows the patient
    opened.clear()
    audit_rows = db.count("audit_event")

    stored = client.post("/api/v1/panels", json={**body, "accession": "LAZY-2"})

    assert stored.status_code == 201, stored.text
    hot = opened[0] == "hot"
    assert opened == (["hot"] if hot else ["plain", "transaction"])
    assert db.count("audit_event") == audit_rows + 1


def test_the_plain_path_commits_the_answer_and_its_audit_row_in_one_transaction(
    client: TestClient, db: Database, opened: list[str]
) -> None:
    patient = make_patient(client)
    body = panel_body(patient, RESULTS, accession="LAZY-3")
    first = client.post("/api/v1/panels", json=body)
    opened.clear()
    audit_rows, panels = db.count("audit_event"), db.count("panel")

    again = client.post("/api/v1/panels", json=body)  # identical: the plain path, 200

    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert opened == ["plain", "transaction"]
    assert (db.count("audit_event"), db.count("panel")) == (audit_rows + 1, panels)


def test_a_refused_plain_post_rolls_back_and_is_audited_once(
    client: TestClient, db: Database, opened: list[str]
) -> None:
    patient = make_patient(client)
    body = panel_body(patient, RESULTS, accession="LAZY-4")
    client.post("/api/v1/panels", json=body)
    opened.clear()
    audit_rows, panels, results = db.count("audit_event"), db.count("panel"), db.count("result")
    other_values = {**body, "results": [result("magnesium", "0.95", "mmol/L")]}

    conflict = client.post("/api/v1/panels", json=other_values)

    expect_problem(conflict, 409, "accession-conflict")
    assert opened == ["plain", "transaction"]
    assert (db.count("panel"), db.count("result")) == (panels, results)
    assert db.count("audit_event") == audit_rows + 1


def test_a_request_opens_its_deferred_transaction_once(tmp_path: Path) -> None:
    async def go() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'once.db'}")
        state = SimpleNamespace(sessionmaker=async_sessionmaker(engine))
        request = Request({"type": "http", "app": SimpleNamespace(state=state), "state": {}})
        idem = DeferredIdempotency(request, Settings(database_url="sqlite://"), "key-1")
        principal: Any = SimpleNamespace(id=None, organization_id=None)
        try:
            async with idem.transaction(principal) as bound:
                assert bound.key == "key-1"
                assert bound.session is not None
            with pytest.raises(RuntimeError, match="one transaction per request"):
                async with idem.transaction(principal):
                    pass
        finally:
            await engine.dispose()

    asyncio.run(go())
