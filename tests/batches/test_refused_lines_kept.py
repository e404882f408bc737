"""A refused batch line is kept in the refused-input store as a refused single
``POST /api/v1/panels`` is: listed, with its bytes and problem, re-processable, deduped alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.batches.test_chunks import _failing
from tests.builders import make_patient, panel_body, result
from tests.conftest import Database

NDJSON = {"content-type": "application/x-ndjson"}
URL = "/api/v1/refused-inputs"
BAD_JSON = b'{"patient": oops'


def _post(client: TestClient, *lines: bytes) -> list[dict[str, Any]]:
    response = client.post(
        "/api/v1/panel-batches", content=b"".join(line + b"\n" for line in lines), headers=NDJSON
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _listed(client: TestClient) -> list[dict[str, Any]]:
    response = client.get(URL, params={"channel": "json"})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _lines(client: TestClient) -> list[bytes]:
    patient = make_patient(client)
    good = [
        panel_body(patient, [result("magnesium", "0.85", "mmol/L")], accession="RK-1"),
        panel_body(patient, [result("calcium", "9.4", "mg/dL")], accession="RK-2"),
    ]
    unknown_unit = panel_body(patient, [result("magnesium", "0.85", "furlongs")], accession="RK-3")
    return [
        json.dumps(good[0]).encode(),
        json.dumps(unknown_unit).encode(),
        BAD_JSON,
        json.dumps(good[1]).encode(),
    ]


def test_refused_lines_are_kept_with_body_problem_batch_and_line(
    client: TestClient, db: Database
) -> None:
    lines = _lines(client)
    out = _post(client, *lines)
    assert [o["outcome"] for o in out[:-1]] == ["stored", "refused", "refused", "stored"]
    batch_id = out[-1]["batch"]["id"]

    items = _listed(client)
    assert len(items) == 2
    assert db.count("refused_input") == 2
    by_line = {item["details"]["line"]: item for item in items}
    assert set(by_line) == {2, 3}
    for number, item in by_line.items():
        outcome = out[number - 1]
        assert item["status"] == "refused"
        assert item["response_status"] == outcome["status"] >= 400
        assert item["details"]["batch_id"] == batch_id
        assert item["reason"]
        assert item["attempts"] == 1
        detail = client.get(f"{URL}/{item['id']}")
        assert detail.status_code == 200, detail.text
        assert detail.json()["payload"] == lines[number - 1].decode()
    assert "furlongs" in lines[1].decode()
    assert out[2]["problem"]["status"] == by_line[3]["response_status"]


def test_a_kept_line_reprocesses_as_a_single_post_refusal_does(client: TestClient) -> None:
    lines = _lines(client)
    out = _post(client, *lines)
    [item] = [i for i in _listed(client) if i["details"]["line"] == 2]

    again = client.post(f"{URL}/{item['id']}/reprocess")
    assert again.status_code == out[1]["status"], again.text
    assert again.headers["Refused-Input-Status"] == "refused"

    # The same bytes sent alone are the same refusal on the same channel: one row.
    single = client.post(
        "/api/v1/panels", content=lines[1], headers={"content-type": "application/json"}
    )
    assert single.status_code == out[1]["status"], single.text
    [row] = [i for i in _listed(client) if i["id"] == item["id"]]
    assert row["attempts"] == 3
    assert len(_listed(client)) == 2


def test_resending_the_batch_counts_attempts_as_resending_a_single_post_does(
    client: TestClient, db: Database
) -> None:
    lines = _lines(client)
    _post(client, *lines)
    out = _post(client, *lines)
    assert [o["outcome"] for o in out[:-1]] == ["unchanged", "refused", "refused", "unchanged"]
    items = _listed(client)
    assert db.count("refused_input") == 2
    assert sorted(i["attempts"] for i in items) == [2, 2]

    # A single POST re-sent twice: also one row, counted twice.
    alone_body = json.loads(lines[1]) | {"accession": "RK-ALONE"}
    for _ in range(2):
        assert client.post("/api/v1/panels", json=alone_body).status_code >= 400
    alone = [i for i in _listed(client) if i["id"] not in {j["id"] for j in items}]
    assert [i["attempts"] for i in alone] == [2]


def test_a_line_over_the_cap_is_not_kept(client: TestClient, db: Database) -> None:
    limit = client.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    out = _post(client, b'{"x": "' + b"a" * limit + b'"}')
    assert out[0]["status"] == 413
    assert db.count("refused_input") == 0


def test_a_retried_chunk_keeps_its_refused_line_once(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _lines(client)
    calls = _failing(monkeypatch, times=2)  # its first two attempts roll back
    out = _post(client, *lines)
    assert len(calls) == 3
    assert [o["outcome"] for o in out[:-1]] == ["stored", "refused", "refused", "stored"]
    assert db.count("refused_input") == 2
    assert [i["attempts"] for i in _listed(client)] == [1, 1]


def test_lines_refused_with_a_503_after_deadlocks_are_kept(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _lines(client)
    _failing(monkeypatch, times=1000)
    out = _post(client, *lines)
    assert [o["status"] for o in out[:-1]][0] == 503
    items = {i["details"]["line"]: i for i in _listed(client)}
    assert set(items) == {1, 2, 3, 4}
    assert items[1]["response_status"] == 503
    assert items[3]["response_status"] == out[2]["status"]
    assert db.count("refused_input") == 4
    monkeypatch.undo()

    # Re-processed once the database is calm: stored as the single POST would store it.
    done = client.post(f"{URL}/{items[1]['id']}/reprocess")
    assert done.status_code == 201, done.text
    assert done.headers["Refused-Input-Status"] == "reprocessed"
