"""Posting a panel is idempotent on its natural key: organization + source + accession."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.builders import expect_problem, make_patient, panel_body, result, result_for
from tests.conftest import Database


def test_reposting_the_identical_panel_returns_the_stored_panel_and_writes_nothing(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    body = panel_body(
        patient,
        [result("magnesium", "0.62", "mmol/L", flag="L"), result("calcium", "9.1", "mg/dL")],
        accession="ACC-IDEMPOTENT",
    )
    first = client.post("/api/v1/panels", json=body)
    assert first.status_code == 201, first.text
    after_first = db.counts()

    again = client.post("/api/v1/panels", json=body)

    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json() == first.json()
    assert client.get(f"/api/v1/panels/{first.json()['id']}").json() == first.json()
    assert db.counts() == after_first
    assert after_first["panel"] == 1
    assert after_first["result"] == 2


def test_a_different_panel_under_the_same_accession_is_a_conflict_and_changes_nothing(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    original = client.post(
        "/api/v1/panels",
        json=panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession="ACC-1"),
    ).json()
    before = db.counts()

    response = client.post(
        "/api/v1/panels",
        json=panel_body(patient, [result("magnesium", "0.85", "mmol/L")], accession="ACC-1"),
    )

    problem = expect_problem(response, 409, "accession-conflict")
    assert problem["panel_id"] == original["id"]
    assert db.counts() == before
    stored = client.get(f"/api/v1/panels/{original['id']}").json()
    assert result_for(stored, "magnesium")["reported"]["text"] == "0.62"
    assert result_for(stored, "magnesium")["interpretation"]["code"] == "L"


def test_the_same_accession_from_another_source_is_a_separate_panel(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    results = [result("magnesium", "0.62", "mmol/L")]
    first = client.post(
        "/api/v1/panels",
        json=panel_body(patient, results, accession="ACC-SHARED", source="lab-north"),
    )
    second = client.post(
        "/api/v1/panels",
        json=panel_body(patient, results, accession="ACC-SHARED", source="lab-south"),
    )

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert second.json()["source"] == "lab-south"
    assert db.count("panel") == 2
    assert db.count("result") == 2
