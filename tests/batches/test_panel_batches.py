"""POST /api/v1/panel-batches: NDJSON in, one outcome per line out, on both databases."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.api.access import key_header
from tests.builders import expect_problem, make_patient, panel_body, result
from tests.conftest import OTHER_ORGANIZATION

NDJSON = {"content-type": "application/x-ndjson"}


def _ndjson(*lines: Any) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def _post(client: TestClient, body: bytes, **headers: str) -> list[dict[str, Any]]:
    response = client.post("/api/v1/panel-batches", content=body, headers={**NDJSON, **headers})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_mixed_lines_each_get_their_outcome_and_resend_stores_nothing_twice(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    good = panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession="B-1")
    critical = panel_body(patient, [result("calcium", "13.5", "mg/dL")], accession="B-2")
    bad_unit = panel_body(patient, [result("magnesium", "1", "furlong")], accession="B-3")
    body = _ndjson(good, b"not json", critical, {"source": "x"}, bad_unit)

    out = _post(client, body)

    by_line = {o["line"]: o for o in out[:-1]}
    assert [by_line[n]["outcome"] for n in (1, 2, 3, 4, 5)] == [
        "stored",
        "refused",
        "stored",
        "refused",
        "refused",
    ]
    assert by_line[1]["status"] == 201
    assert by_line[3]["has_critical"] is True
    assert by_line[2]["problem"]["status"] == 400
    assert by_line[4]["problem"]["status"] == 422
    assert by_line[5]["problem"]["status"] == 422
    batch = out[-1]["batch"]
    assert (batch["lines"], batch["stored"], batch["refused"], batch["status"]) == (
        5,
        2,
        3,
        "completed",
    )
    stored = client.get(f"/api/v1/panels/{by_line[1]['panel_id']}")
    assert stored.status_code == 200
    assert stored.json()["results"][0]["interpretation"]["code"] == "L"

    # Re-sent after an interruption: the stored lines are unchanged, nothing is stored twice.
    again = _post(client, body)
    assert [o["outcome"] for o in again[:-1] if o["line"] in (1, 3)] == ["unchanged", "unchanged"]
    assert again[-1]["batch"]["stored"] == 0
    panels = client.get(f"/api/v1/patients/{patient['id']}/panels").json()["items"]
    assert len(panels) == 2
    progress = client.get(f"/api/v1/panel-batches/{batch['id']}")
    assert progress.status_code == 200
    assert progress.json()["stored"] == 2


def test_a_huge_line_is_refused_without_stopping_the_batch(client: TestClient) -> None:
    patient = make_patient(client)
    huge = b'{"source": "' + b"x" * 3_000_000 + b'"}'
    good = panel_body(patient, [result("zinc", "80", "ug/dL")])

    out = _post(client, _ndjson(huge, good))

    assert out[0]["line"] == 1
    assert out[0]["problem"]["status"] == 413
    assert out[1]["outcome"] == "stored"


def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/api/v1/panel-batches", content=b"{}", headers={"content-type": "application/json"}
    )
    expect_problem(response, 415)


def test_another_organization_neither_writes_to_nor_reads_the_batch(
    client: TestClient, api_keys: dict[str, dict[str, str]]
) -> None:
    patient = make_patient(client)
    body = _ndjson(panel_body(patient, [result("zinc", "80", "ug/dL")]))
    other = key_header(api_keys, OTHER_ORGANIZATION, "integration")

    out = _post(client, body, **other)
    assert out[0]["outcome"] == "refused"
    assert patient["id"] not in json.dumps(out)
    own = _post(client, body)
    assert own[0]["outcome"] == "stored"
    response = client.get(f"/api/v1/panel-batches/{own[-1]['batch']['id']}", headers=other)
    expect_problem(response, 404)
