"""POST /api/v1/panels with an Idempotency-Key (issue 15): on PostgreSQL the patient lookup goes
out in the same statement as the key's claim. The answers stay exactly those of the plain
path: the patient by id or identifier, 422 for an unknown or another organization's patient
(and the key is released), a replay byte for byte, a different body under the key refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.builders import (
    by_identifier,
    expect_problem,
    make_patient,
    panel_body,
    result,
)
from tests.conftest import OTHER_ORGANIZATION, Database

RESULTS = [result("magnesium", "0.30", "mmol/L"), result("zinc", "55", "ug/dL")]


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    engine = db.app.state.engine.sync_engine
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _post(client: TestClient, body: dict[str, Any], key: str, **headers: str) -> Any:
    return client.post("/api/v1/panels", json=body, headers={"Idempotency-Key": key, **headers})


def test_a_keyed_panel_is_filed_under_its_patient_without_a_separate_patient_lookup(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client, sex="male")
    body = panel_body(patient, RESULTS)

    with _statements(db) as seen:
        response = _post(client, body, f"claim-{uuid.uuid4()}")

    assert response.status_code == 201, response.text
    panel = response.json()
    assert panel["patient_id"] == patient["id"]
    assert [r["interpretation"]["code"] for r in panel["results"]] == ["LL", "L"]
    assert panel["has_critical"] is True
    assert client.get(response.headers["location"]).json() == panel
    if db.app.state.engine.dialect.name == "postgresql":
        patient_reads = [s for s in seen if s.lstrip().startswith("SELECT patient.id")]
        assert patient_reads == []


def test_a_keyed_panel_naming_its_patient_by_identifier_is_filed_under_that_patient(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    body = panel_body(patient, RESULTS, patient_ref=by_identifier(patient))

    response = _post(client, body, f"claim-{uuid.uuid4()}")

    assert response.status_code == 201, response.text
    assert response.json()["patient_id"] == patient["id"]
    assert db.count("result") == 2


def test_a_keyed_panel_for_an_unknown_patient_is_422_stores_nothing_and_frees_the_key(
    client: TestClient, db: Database
) -> None:
    key = f"claim-{uuid.uuid4()}"
    body = panel_body({"id": str(uuid.uuid4())}, RESULTS)
    counts = db.counts()

    first = _post(client, body, key)
    again = _post(client, body, key)

    for response in (first, again):
        problem = expect_problem(response, 422, "unknown-patient")
        assert [e["field"] for e in problem["errors"]] == ["body.patient"]
        assert "idempotent-replayed" not in response.headers
    assert db.count("panel") == counts["panel"]
    assert db.count("idempotency_record") == 0
    # The key was released: the same key files the panel once the patient is known.
    patient = make_patient(client)
    created = _post(client, panel_body(patient, RESULTS, accession=body["accession"]), key)
    assert created.status_code == 201, created.text


def test_a_keyed_panel_naming_another_organizations_patient_is_422_unknown_patient(
    client: TestClient, db: Database, api_keys: dict[str, dict[str, str]]
) -> None:
    theirs = make_patient(client)
    body = panel_body(theirs, RESULTS)

    response = _post(
        client,
        body,
        f"claim-{uuid.uuid4()}",
        **{"X-API-Key": api_keys[OTHER_ORGANIZATION]["integration"]},
    )

    expect_problem(response, 422, "unknown-patient")
    assert theirs["id"] not in response.text
    assert db.count("panel") == 0
    assert db.count("idempotency_record") == 0


def test_a_keyed_replay_answers_the_first_response_and_a_different_body_is_refused(
    client: TestClient, db: Database
) -> None:
    key = f"claim-{uuid.uuid4()}"
    patient = make_patient(client)
    other = make_patient(client)
    body = panel_body(patient, RESULTS)
    first = _post(client, body, key)
    assert first.status_code == 201, first.text
    counts = db.counts()

    replay = _post(client, body, key)
    reused = _post(client, panel_body(other, RESULTS), key)

    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    expect_problem(reused, 422)
    assert db.counts() == counts
