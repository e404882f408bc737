"""Thirty concurrent conditional updates with one ETag: exactly one wins, the others get 412.

The requests run at once on the app's event loop through its connection pool (up to 20
PostgreSQL connections, so the If-Match checks really do overlap in separate transactions);
on SQLite the write lock serialises them. Covered: range-set activation, plan-rule-set
activation and a plan's status change.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.builders import make_patient
from tests.conftest import Database
from tests.plans.builders import (
    LOW_MAGNESIUM,
    MODERATE_ISI,
    draft_plan,
    post_recent_panel,
    record_isi,
)
from tests.plans.builders import etag as plan_etag
from tests.ranges.test_range_sets import etag_of, import_json, range_set_doc

WRITERS = 30


def _race(
    client: TestClient, db: Database, path: str, etag: str, body: dict[str, Any] | None = None
) -> list[httpx.Response]:
    auth = client.auth
    app = client.app

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", auth=auth, timeout=60
        ) as http:
            return list(
                await asyncio.gather(
                    *(
                        http.post(path, json=body, headers={"If-Match": etag})
                        for _ in range(WRITERS)
                    )
                )
            )

    return db.run(go)


def _exactly_one_winner(responses: list[httpx.Response]) -> httpx.Response:
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * (WRITERS - 1), [r.text[:200] for r in responses]
    for response in responses:
        if response.status_code == 412:
            assert response.headers["content-type"] == "application/problem+json"
    return next(r for r in responses if r.status_code == 200)


def test_thirty_range_set_activations_with_one_etag_activate_it_once(
    client: TestClient, db: Database
) -> None:
    spare = import_json(client, range_set_doc("race-spare"))
    etag = etag_of(client, spare["id"])

    winner = _exactly_one_winner(
        _race(client, db, f"/api/v1/range-sets/{spare['id']}/activate", etag)
    )

    assert winner.json()["status"] == "active"
    assert client.get("/api/v1/range-sets/active").json()["id"] == spare["id"]
    assert etag_of(client, spare["id"]) == winner.headers["ETag"]


def test_thirty_rule_set_activations_with_one_etag_activate_it_once(
    client: TestClient, db: Database
) -> None:
    active = client.get("/api/v1/plan-rule-sets/active").json()
    created = client.post("/api/v1/plan-rule-sets", json=active["document"] | {"name": "race"})
    assert created.status_code == 201, created.text
    rule_set_id = created.json()["id"]
    etag = client.get(f"/api/v1/plan-rule-sets/{rule_set_id}").headers["ETag"]

    winner = _exactly_one_winner(
        _race(client, db, f"/api/v1/plan-rule-sets/{rule_set_id}/activate", etag)
    )

    assert winner.json()["status"] == "active"
    assert client.get("/api/v1/plan-rule-sets/active").json()["id"] == rule_set_id


def test_thirty_plan_activations_with_one_etag_make_one_new_version(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client, sex="female", birth_date="1981-04-12")
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    record_isi(client, patient, MODERATE_ISI)
    plan = draft_plan(client, patient)
    etag = plan_etag(client, plan["id"])

    winner = _exactly_one_winner(
        _race(client, db, f"/api/v1/plans/{plan['id']}/status", etag, {"status": "active"})
    )

    assert winner.json()["status"] == "active"
    assert winner.json()["version"] == plan["version"] + 1
    versions = client.get(f"/api/v1/plans/{plan['id']}/versions").json()
    assert len(versions["items"] if isinstance(versions, dict) else versions) == 2
