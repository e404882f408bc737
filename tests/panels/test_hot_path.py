"""The panel hot paths (issue 15): a GET answered in one statement with its audit row, a POST
written in one statement once its patient is known (tests/panels/test_fast_post.py has the
details). Same answers, same audit rows, a chain that verifies, and tenancy unchanged."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, select, text

from app.audit import service as audit_service
from app.models.panel import Panel
from app.panels import hot
from app.panels import service as panels_service
from tests.builders import make_patient, panel_body, result
from tests.conftest import OTHER_ORGANIZATION, Database


def _panel(client: TestClient, **headers: str) -> dict[str, Any]:
    patient = make_patient(client)
    body = panel_body(
        patient,
        [
            result("magnesium", "1.6", "mg/dL"),
            result("calcium", "9.1", "mg/dL"),
            result("zinc", "55", "ug/dL"),
            result("iron", "80", "ug/dL"),
        ],
        accession=f"HOT-{uuid.uuid4()}",
    )
    response = client.post("/api/v1/panels", json=body, headers=headers)
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored


def _read_rows(db: Database, panel_id: str) -> list[dict[str, Any]]:
    async def go(session: Any) -> list[dict[str, Any]]:
        rows = await session.execute(
            text(
                "SELECT action, resource_id, patient_id, outcome, status_code, path "
                "FROM audit_event WHERE resource_id = :id AND action = 'read' ORDER BY seq"
            ),
            {"id": panel_id},
        )
        return [dict(row._mapping) for row in rows]

    return db.in_session(go)


def _chain_verifies(db: Database) -> bool:
    async def go(session: Any) -> bool:
        return (await audit_service.verify(session)).ok

    return db.in_session(go)


def test_reading_a_panel_again_and_again_answers_the_same_document_and_audits_every_read(
    client: TestClient, db: Database
) -> None:
    panel = _panel(client)

    reads = [client.get(f"/api/v1/panels/{panel['id']}") for _ in range(3)]

    for response in reads:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == panel
    assert reads[0].content == reads[1].content == reads[2].content
    rows = _read_rows(db, panel["id"])
    assert len(rows) == 3
    for row in rows:
        assert uuid.UUID(str(row["patient_id"])) == uuid.UUID(panel["patient_id"])
        assert (row["outcome"], row["status_code"]) == ("success", 200)
        assert row["path"] == f"/api/v1/panels/{panel['id']}"
    assert _chain_verifies(db)


def test_a_read_of_a_known_panel_is_one_statement_or_one_short_sqlite_transaction(
    client: TestClient, db: Database
) -> None:
    panel = _panel(client)  # the POST told this process the panel's patient
    engine = db.app.state.engine.sync_engine
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_key" not in statement and statement != "BEGIN":  # authentication's own
            seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    try:
        response = client.get(f"/api/v1/panels/{panel['id']}")
    finally:
        event.remove(engine, "before_cursor_execute", before)

    assert response.status_code == 200, response.text
    assert response.json() == panel
    if engine.dialect.name == "postgresql":
        assert len(seen) == 1, seen
        assert seen[0].startswith("SELECT panel.document, audit_append_rows("), seen
    else:
        assert len(seen) == 3, seen
        assert seen[0] == "BEGIN IMMEDIATE", seen
        assert seen[1].startswith("SELECT panel.document, (SELECT audit_event.hash"), seen
        assert seen[2].startswith("INSERT INTO audit_event "), seen
    [row] = _read_rows(db, panel["id"])
    assert uuid.UUID(str(row["patient_id"])) == uuid.UUID(panel["patient_id"])
    assert _chain_verifies(db)


def test_another_organization_gets_404_even_once_the_panel_was_read(
    client: TestClient, db: Database, api_keys: dict[str, dict[str, str]]
) -> None:
    panel = _panel(client)
    assert client.get(f"/api/v1/panels/{panel['id']}").status_code == 200

    response = client.get(
        f"/api/v1/panels/{panel['id']}",
        headers={"X-API-Key": api_keys[OTHER_ORGANIZATION]["integration"]},
    )

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert panel["patient_id"] not in response.text
    own, other = _read_rows(db, panel["id"])
    assert own["outcome"] == "success"
    assert (other["outcome"], other["status_code"], other["patient_id"]) == ("denied", 404, None)
    assert _chain_verifies(db)


def test_a_wrong_remembered_patient_never_reaches_the_audit_trail(
    client: TestClient, db: Database
) -> None:
    panel = _panel(client)
    engine = db.app.state.engine
    organization_id = db.in_session(
        lambda s: s.scalar(select(Panel.organization_id).where(Panel.id == uuid.UUID(panel["id"])))
    )
    hot.remember_patient(engine, organization_id, uuid.UUID(panel["id"]), uuid.uuid4())

    response = client.get(f"/api/v1/panels/{panel['id']}")

    assert response.status_code == 200
    assert response.json() == panel
    [row] = _read_rows(db, panel["id"])
    assert uuid.UUID(str(row["patient_id"])) == uuid.UUID(panel["patient_id"])
    assert _chain_verifies(db)


def test_an_unknown_panel_is_404_and_audited_as_denied(client: TestClient, db: Database) -> None:
    missing = str(uuid.uuid4())

    response = client.get(f"/api/v1/panels/{missing}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert db.count("audit_event") >= 1
    assert _chain_verifies(db)


def test_a_posted_panel_stores_its_results_and_replays_its_response_byte_for_byte(
    client: TestClient, db: Database
) -> None:
    key = f"hot-{uuid.uuid4()}"
    patient = make_patient(client)
    body = panel_body(
        patient,
        [result("magnesium", "1.6", "mg/dL"), result("zinc", "55", "ug/dL")],
        accession="HOT-REPLAY",
    )
    first = client.post("/api/v1/panels", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    counts = db.counts()

    again = client.post("/api/v1/panels", json=body, headers={"Idempotency-Key": key})

    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert counts["result"] == 2
    assert db.counts() == counts
    stored = client.get(first.headers["location"]).json()
    assert stored == first.json()
    assert [r["analyte"] for r in stored["results"]] == ["magnesium", "zinc"]
    assert _chain_verifies(db)


def test_many_posts_and_reads_leave_a_chain_that_verifies(client: TestClient, db: Database) -> None:
    panels = [_panel(client, **{"Idempotency-Key": str(uuid.uuid4())}) for _ in range(5)]
    for panel in panels:
        for _ in range(2):
            assert client.get(f"/api/v1/panels/{panel['id']}").json() == panel

    assert db.count("result") == 20
    assert _chain_verifies(db)


def test_the_stored_result_rows_render_the_same_panel_as_the_post_answered(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    body = panel_body(
        patient,
        [
            result("magnesium", "0.62", "mmol/L", flag="L", reference_range={"text": "0.70-1.00"}),
            result("zinc", "<5", "ug/dL"),
            result("calcium", "9.10", "mg/dL", lab_comment="haemolysed"),
            result("iron", "80", "ug/dL", status="preliminary"),
        ],
        accession="HOT-ROWS",
    )
    posted = client.post("/api/v1/panels", json=body, headers={"Idempotency-Key": "hot-rows"})
    assert posted.status_code == 201, posted.text
    panel_id = uuid.UUID(posted.json()["id"])
    organization_id = db.in_session(
        lambda s: s.scalar(select(Panel.organization_id).where(Panel.id == panel_id))
    )

    async def from_rows(session: Any) -> dict[str, Any]:
        rendered = await panels_service.get(
            session, organization_id=organization_id, panel_id=panel_id
        )
        return dict(rendered.model_dump(mode="json"))

    assert db.in_session(from_rows) == posted.json()


def test_remembered_patients_add_nothing_the_garbage_collector_walks(db: Database) -> None:
    """Every full collection pauses the event loop for as long as it walks the tracked
    objects: a map of 100,000 remembered panels must not add any."""
    import gc

    engine = db.app.state.engine
    organization_id = uuid.uuid4()
    panels = [(uuid.uuid4(), uuid.uuid4()) for _ in range(2000)]
    gc.collect()
    before = len(gc.get_objects())

    for panel_id, patient_id in panels:
        hot.remember_patient(engine, organization_id, panel_id, patient_id)
    gc.collect()

    assert len(gc.get_objects()) - before < 50
    panel_id, patient_id = panels[-1]
    assert hot.remembered_patient(engine, organization_id, panel_id) == patient_id
    assert hot.remembered_patient(engine, uuid.uuid4(), panel_id) is None
