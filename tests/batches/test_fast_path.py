"""The batch's chunk-level fast path (app.batches.fast, app.panels.bulk) stores exactly what
the single POST stores, and leaves every unusual line to the per-line path; both databases."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.audit.service import verify
from app.panels import bulk_repository, corrections
from tests.builders import by_identifier, make_patient, panel_body, result
from tests.conftest import Database

NDJSON = {"content-type": "application/x-ndjson"}

RICH = [
    result("magnesium", "0.62", "mmol/L", flag="L", reference_range={"text": "0.70-1.00"}),
    result("calcium", "13.5", "mg/dL"),  # critically high
    result("zinc", "<5", "ug/dL"),
    result("copper", "95", "ug/dL", status="preliminary", lab_comment="haemolysed"),
]


def _post(client: TestClient, *lines: Any) -> list[dict[str, Any]]:
    body = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    response = client.post("/api/v1/panel-batches", content=body, headers=NDJSON)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _per_line_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The accessions the per-line path was asked to ingest."""
    calls: list[str] = []
    original = corrections.ingest_or_correct

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["data"].accession)
        return await original(*args, **kwargs)

    monkeypatch.setattr(corrections, "ingest_or_correct", counted)
    return calls


def _rows(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    async def go(session: Any) -> list[dict[str, Any]]:
        return [dict(row._mapping) for row in await session.execute(text(sql), params)]

    return db.in_session(go)


def _without_ids(document: dict[str, Any]) -> dict[str, Any]:
    volatile = ("id", "accession", "created_at", "interpreted_at")
    out = {k: v for k, v in document.items() if k not in volatile}
    out["results"] = [{k: v for k, v in r.items() if k != "id"} for r in document["results"]]
    return out


def _sanitized_row(row: dict[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in drop}


def test_a_fast_path_panel_is_stored_exactly_as_a_single_post_stores_it(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = make_patient(client)
    single = client.post(
        "/api/v1/panels", json=panel_body(patient, RICH, accession="S-1", performing_lab="Acme")
    )
    assert single.status_code == 201, single.text
    calls = _per_line_calls(monkeypatch)
    fast_body = panel_body(
        patient, RICH, accession="F-1", performing_lab="Acme", patient_ref=by_identifier(patient)
    )

    out = _post(client, fast_body)

    assert calls == []  # stored by the fast path, not line by line
    assert (out[0]["outcome"], out[0]["status"], out[0]["has_critical"]) == ("stored", 201, True)
    stored = client.get(f"/api/v1/panels/{out[0]['panel_id']}").json()
    assert json.dumps(_without_ids(stored)) == json.dumps(_without_ids(single.json()))
    # The stored document is the one a single POST renders, byte for byte (ids aside).
    documents = {
        row["accession"]: row
        for row in _rows(db, "SELECT * FROM panel WHERE accession IN ('S-1', 'F-1')")
    }
    fast, slow = documents["F-1"], documents["S-1"]
    assert fast["document"] == stored_document_of(slow, fast)
    volatile = ("id", "accession", "created_at", "interpreted_at", "document", "payload_hash")
    assert _sanitized_row(fast, *volatile) == _sanitized_row(slow, *volatile)
    results = {
        key: [
            _sanitized_row(row, "id", "panel_id")
            for row in _rows(db, "SELECT * FROM result WHERE panel_id = :p ORDER BY position", p=p)
        ]
        for key, p in (("fast", fast["id"]), ("slow", slow["id"]))
    }
    assert results["fast"] == results["slow"]
    assert len(results["fast"]) == 4
    # Same content hash as a single POST: re-posting the line alone is an unchanged no-op.
    again = client.post("/api/v1/panels", json=fast_body)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == out[0]["panel_id"]


def stored_document_of(slow: dict[str, Any], fast: dict[str, Any]) -> str:
    """The single POST's stored document with the fast panel's ids and times put in."""
    document = str(slow["document"])
    slow_doc, fast_doc = json.loads(document), json.loads(str(fast["document"]))
    for key in ("id", "accession", "created_at", "interpreted_at"):
        document = document.replace(json.dumps(slow_doc[key]), json.dumps(fast_doc[key]))
    for old, new in zip(slow_doc["results"], fast_doc["results"], strict=True):
        document = document.replace(old["id"], new["id"])
    return document


def test_mixed_lines_in_one_chunk_get_the_single_post_outcomes(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = make_patient(client)
    existing = panel_body(patient, [result("zinc", "80", "ug/dL")], accession="M-0")
    assert client.post("/api/v1/panels", json=existing).status_code == 201
    calls = _per_line_calls(monkeypatch)
    good = panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession="M-1")
    twice = panel_body(patient, [result("zinc", "70", "ug/dL")], accession="M-2")
    corrected = {**twice, "status": "corrected", "results": [result("zinc", "75", "ug/dL")]}
    unknown = panel_body(patient, RICH, accession="M-3", patient_ref={"id": str(uuid.uuid4())})
    nobody = panel_body(
        patient,
        RICH,
        accession="M-4",
        patient_ref={"identifier": {"system": "urn:test:mrn", "value": "UNKNOWN"}},
    )
    impossible = panel_body(patient, [result("magnesium", "900", "mmol/L")], accession="M-5")
    critical = panel_body(patient, [result("calcium", "13.5", "mg/dL")], accession="M-6")
    conflict = {**existing, "results": [result("zinc", "81", "ug/dL")]}

    out = _post(client, good, twice, twice, corrected, unknown, nobody, impossible, critical)
    out += _post(client, existing, conflict)

    outcomes = [(o["outcome"], o["status"]) for o in out if "line" in o]
    assert outcomes == [
        ("stored", 201),
        ("stored", 201),
        ("unchanged", 200),
        ("stored", 200),
        ("refused", 422),
        ("refused", 422),
        ("refused", 422),
        ("stored", 201),
        ("unchanged", 200),
        ("refused", 409),
    ]
    assert out[3]["corrected"] is True
    assert out[7]["has_critical"] is True
    assert out[1]["panel_id"] == out[2]["panel_id"] == out[3]["panel_id"]
    # Only the unusual lines went line by line: the plain new ones (M-1, M-6) did not.
    assert sorted(set(calls)) == ["M-0", "M-2", "M-3", "M-4", "M-5"]
    assert db.count("panel") == 4
    panel = client.get(f"/api/v1/panels/{out[3]['panel_id']}").json()
    assert panel["results"][0]["reported"]["value"] == 75


def test_a_resent_batch_stores_nothing_twice_and_the_audit_chain_verifies(
    client: TestClient, db: Database
) -> None:
    patients = [make_patient(client) for _ in range(3)]
    lines = [
        panel_body(patients[n % 3], RICH[: 1 + n % 4], accession=f"R-{n:03d}") for n in range(30)
    ]

    first = _post(client, *lines)
    counts = db.counts()
    again = _post(client, *lines)

    assert [o["outcome"] for o in first[:-1]] == ["stored"] * 30
    assert [o["outcome"] for o in again[:-1]] == ["unchanged"] * 30
    assert [o["panel_id"] for o in again[:-1]] == [o["panel_id"] for o in first[:-1]]
    assert db.count("panel") == 30
    assert db.count("result") == sum(1 + n % 4 for n in range(30))
    after = db.counts()
    assert {k: v for k, v in after.items() if after[k] != counts[k]}.keys() <= {
        "audit_event",
        "panel_batch",
    }
    # Audit rows outlive the per-test reset: take this test's panels' rows.
    ids = {o["panel_id"] for o in first[:-1]}
    audit = [
        row
        for row in _rows(
            db,
            "SELECT resource_id, patient_id, action, status_code FROM audit_event"
            " WHERE resource_type = 'panel' ORDER BY seq",
        )
        if row["resource_id"] in ids
    ]
    assert sorted((row["action"], row["status_code"]) for row in audit) == sorted(
        [("create", 201)] * 30 + [("read", 200)] * 30
    )
    patient_ids = {str(uuid.UUID(str(row["patient_id"]))) for row in audit}
    assert patient_ids == {patient["id"] for patient in patients}
    assert db.in_session(lambda session: verify(session)).ok


def test_a_panel_stored_meanwhile_by_another_sender_is_left_to_the_per_line_path(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = make_patient(client)
    body = panel_body(patient, [result("zinc", "80", "ug/dL")], accession="C-1")
    stored = client.post("/api/v1/panels", json=body).json()

    async def nothing_stored(*_args: Any, **_kwargs: Any) -> set[tuple[str, str]]:
        return set()  # as if the other sender committed just after the chunk looked

    monkeypatch.setattr(bulk_repository, "existing_natural_keys", nothing_stored)
    calls = _per_line_calls(monkeypatch)
    changed = {**body, "results": [result("zinc", "81", "ug/dL")]}

    # One line per batch: a key sent twice in one chunk goes line by line anyway.
    out = _post(client, body)[:-1] + _post(client, changed)[:-1]

    assert [(o["outcome"], o["status"]) for o in out] == [("unchanged", 200), ("refused", 409)]
    assert out[0]["panel_id"] == stored["id"]
    assert calls == ["C-1", "C-1"]
    assert db.count("panel") == 1
    assert db.count("result") == 1


def test_a_key_taken_meanwhile_leaves_the_rest_of_the_chunk_on_the_fast_path(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk's new panels are copied in at once (PostgreSQL); one of them taken since the
    chunk was planned undoes that copy only: the others are still inserted fast, and the
    taken one is answered by the per-line path, as a single POST would answer it."""
    patient = make_patient(client)
    taken = panel_body(patient, [result("zinc", "80", "ug/dL")], accession="D-1")
    stored = client.post("/api/v1/panels", json=taken).json()
    fresh = [
        panel_body(patient, [result("zinc", str(70 + n), "ug/dL")], accession=f"D-{n}")
        for n in (2, 3)
    ]

    async def nothing_stored(*_args: Any, **_kwargs: Any) -> set[tuple[str, str]]:
        return set()  # as if the other sender committed just after the chunk looked

    monkeypatch.setattr(bulk_repository, "existing_natural_keys", nothing_stored)
    calls = _per_line_calls(monkeypatch)

    out = _post(client, fresh[0], taken, fresh[1])[:-1]

    assert [(o["outcome"], o["status"]) for o in out] == [
        ("stored", 201),
        ("unchanged", 200),
        ("stored", 201),
    ]
    assert out[1]["panel_id"] == stored["id"]
    assert calls == ["D-1"]
    assert db.count("panel") == 3
    assert db.count("result") == 3
