"""Times at the ends of the calendar: valid RFC 3339 (``0001-01-01T00:01:00+01:00``) yet before
year 1 once read in UTC, or after year 9999. Every way in refuses them with its own clear 4xx
(problem+json, an OperationOutcome, an ACK), never a 500 from converting them for a column
(schemathesis found the first: ``GET /api/v1/results?from=0001-01-01T00:01:00+01:00``).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import error_fields, expect_problem, make_patient, panel_body, result
from tests.conftest import Database
from tests.interop.fhir.builders import expect_outcome, panel_bundle, post_bundle
from tests.interop.hl7.messages import magnesium_mmol, oru, segment

BEFORE_YEAR_1 = "0001-01-01T00:01:00+01:00"
AFTER_YEAR_9999 = "9999-12-31T23:59:00-01:00"
EXTREMES = (BEFORE_YEAR_1, AFTER_YEAR_9999)


def _date_time_queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, parameter) of every GET query parameter of the native API that is a date-time."""
    found = []
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None or not path.startswith("/api/"):
            continue
        for parameter in operation.get("parameters", []):
            schema = parameter.get("schema", {})
            formats = {schema.get("format")} | {
                option.get("format") for option in schema.get("anyOf", [])
            }
            if parameter["in"] == "query" and "date-time" in formats:
                found.append((path, parameter["name"]))
    return found


def test_every_date_time_query_refuses_a_time_outside_the_utc_calendar(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    queries = _date_time_queries(client.get("/openapi.json").json())
    # The panel, result and audit listings at least (the check must not pass on none).
    assert {path for path, _ in queries} >= {
        "/api/v1/results",
        "/api/v1/audit-events",
        "/api/v1/patients/{patient_id}/panels",
        "/api/v1/patients/{patient_id}/analytes/{analyte}/history",
    }, queries

    for path, name in queries:
        url = path.format(patient_id=patient["id"], analyte="magnesium", code="ca_mg_molar")
        for moment in EXTREMES:
            problem = expect_problem(client.get(url, params={name: moment}), 422)
            assert error_fields(problem) == [f"query.{name}"], (path, problem)
            assert "UTC" in problem["errors"][0]["message"], problem
        # ... while an ordinary time is answered.
        answered = client.get(url, params={name: "2026-01-01T00:00:00+01:00"})
        assert answered.status_code == 200, (path, answered.text)


@pytest.mark.parametrize("field", ["collected_at", "received_at"])
@pytest.mark.parametrize("moment", EXTREMES)
def test_a_panel_time_outside_the_utc_calendar_is_refused_and_nothing_stored(
    client: TestClient, db: Database, field: str, moment: str
) -> None:
    patient = make_patient(client)
    body = panel_body(patient, [result("magnesium", "0.8", "mmol/L")])
    body[field] = moment

    problem = expect_problem(client.post("/api/v1/panels", json=body), 422)

    assert f"body.{field}" in error_fields(problem), problem
    assert db.count("panel") == 0


def test_a_key_expiry_outside_the_utc_calendar_is_refused(client: TestClient) -> None:
    body = {"name": f"k-{uuid.uuid4().hex[:8]}", "role": "clinician", "expires_at": AFTER_YEAR_9999}

    problem = expect_problem(client.post("/api/v1/api-keys", json=body), 422)

    assert error_fields(problem) == ["body.expires_at"], problem


@pytest.mark.parametrize("moment", EXTREMES)
def test_a_forged_cursor_at_a_time_outside_the_utc_calendar_is_an_invalid_cursor(
    client: TestClient, db: Database, moment: str
) -> None:
    raw = json.dumps([moment, str(uuid.uuid4())]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    expect_problem(client.get("/api/v1/results", params={"cursor": cursor}), 400, "invalid-cursor")


@pytest.mark.parametrize(
    "value", ["0001", "9999", "9999-12-31", BEFORE_YEAR_1, AFTER_YEAR_9999, "ge" + BEFORE_YEAR_1]
)
@pytest.mark.parametrize("resource", ["Observation", "DiagnosticReport"])
def test_a_fhir_date_search_outside_the_calendar_is_an_operation_outcome(
    client: TestClient, db: Database, resource: str, value: str
) -> None:
    patient = make_patient(client)

    outcome = expect_outcome(
        client.get(f"/fhir/R4/{resource}", params={"patient": patient["id"], "date": value}), 400
    )

    assert "outside the times searched" in outcome["issue"][0]["diagnostics"], outcome


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31", "le9999-12-31T23:59:59-01:00"])
def test_a_fhir_birthdate_search_outside_the_calendar_is_an_operation_outcome(
    client: TestClient, db: Database, value: str
) -> None:
    outcome = expect_outcome(client.get("/fhir/R4/Patient", params={"birthdate": value}), 400)

    assert "outside the times searched" in outcome["issue"][0]["diagnostics"], outcome


def test_a_fhir_report_collected_before_year_1_in_utc_is_refused(
    client: TestClient, db: Database
) -> None:
    body = panel_bundle().replace("2026-11-20T08:00:00Z", BEFORE_YEAR_1)
    assert BEFORE_YEAR_1 in body

    outcome = expect_outcome(post_bundle(client, body), 422)

    assert any("UTC" in issue.get("diagnostics", "") for issue in outcome["issue"]), outcome
    assert db.count("panel") == 0


@pytest.mark.parametrize("collected", ["00010101000100+0100", "99991231235900-0100"])
def test_an_hl7_collection_time_outside_the_utc_calendar_is_refused_with_an_ack(
    client: TestClient, db: Database, collected: str
) -> None:
    message = oru([magnesium_mmol("0.80")], collected=collected)

    response = client.post(
        "/api/v1/hl7/oru", content=message, headers={"Content-Type": "x-application/hl7-v2+er7"}
    )

    assert response.status_code == 200, response.text
    assert segment(response.text, "MSA")[1] in ("AE", "AR"), response.text
    assert db.count("panel") == 0
