"""Every error leaves as RFC 9457 application/problem+json, with the request id and the security
headers, and never with a stack trace or the exception's text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.core.config import Settings
from app.core.deps import AuditedSession
from app.core.errors import PROBLEM_BASE, PROBLEM_JSON
from app.main import create_app
from tests.builders import MRN_SYSTEM, make_patient
from tests.conftest import Database

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"].startswith(PROBLEM_BASE)
    assert isinstance(body["title"], str)
    assert body["title"]
    assert body["status"] == status
    return body


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert response.headers.get("x-request-id")


def patient_body(mrn: str = "MRN-ERR-1") -> dict[str, Any]:
    return {"identifiers": [{"system": MRN_SYSTEM, "value": mrn}], "sex": "female"}


# --- routing errors -------------------------------------------------------------------------


def test_unknown_route_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/api/v1/no-such-thing")

    body = assert_problem(response, 404)
    assert body["type"] == PROBLEM_BASE + "not-found"
    assert body["instance"] == "/api/v1/no-such-thing"
    assert_security_headers(response)


def test_wrong_method_is_a_405_problem_naming_the_allowed_ones(client: TestClient) -> None:
    response = client.delete("/api/v1/patients")

    body = assert_problem(response, 405)
    assert body["type"] == PROBLEM_BASE + "method-not-allowed"
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}
    assert_security_headers(response)


# --- validation errors ----------------------------------------------------------------------


def test_invalid_body_field_is_a_422_problem_with_its_path(
    client: TestClient, db: Database
) -> None:
    before = db.counts()
    body = patient_body()
    body["sex"] = "sometimes"
    body["identifiers"][0]["value"] = ""

    response = client.post("/api/v1/patients", json=body)

    problem = assert_problem(response, 422)
    assert problem["type"] == PROBLEM_BASE + "validation-error"
    fields = {error["field"] for error in problem["errors"]}
    assert fields == {"body.sex", "body.identifiers[0].value"}
    assert all(error["message"] for error in problem["errors"])
    assert db.counts() == before


def test_validation_problem_never_echoes_the_rejected_input(client: TestClient) -> None:
    body = patient_body()
    body["sex"] = "PHI-LEAK-CANARY"

    response = client.post("/api/v1/patients", json=body)

    assert_problem(response, 422)
    assert "PHI-LEAK-CANARY" not in response.text


def test_unknown_body_field_is_a_422_problem(client: TestClient) -> None:
    response = client.post("/api/v1/patients", json={**patient_body(), "id": "chosen-by-client"})

    problem = assert_problem(response, 422)
    assert [error["field"] for error in problem["errors"]] == ["body.id"]


def test_invalid_query_parameter_is_a_422_problem(client: TestClient) -> None:
    response = client.get("/api/v1/patients", params={"limit": 0})

    problem = assert_problem(response, 422)
    assert problem["type"] == PROBLEM_BASE + "validation-error"
    assert [error["field"] for error in problem["errors"]] == ["query.limit"]
    assert_security_headers(response)


def test_invalid_path_parameter_is_a_422_problem(client: TestClient) -> None:
    response = client.get("/api/v1/patients/not-a-uuid")

    problem = assert_problem(response, 422)
    assert [error["field"] for error in problem["errors"]] == ["path.patient_id"]


def test_malformed_json_is_a_400_problem(client: TestClient, db: Database) -> None:
    before = db.counts()

    response = client.post(
        "/api/v1/patients",
        content=b'{"identifiers": [',
        headers={"content-type": "application/json"},
    )

    problem = assert_problem(response, 400)
    assert problem["type"] == PROBLEM_BASE + "malformed-json"
    assert db.counts() == before


def test_text_with_a_nul_character_is_never_a_server_error(
    client: TestClient, backend: str
) -> None:
    # PostgreSQL cannot store or compare text holding NUL; SQLite can. Either way the caller
    # gets an answer about their input, not a 500.
    response = client.get("/api/v1/patients", params={"identifier": "urn:x\x00|1"})

    if backend == "postgresql":
        problem = assert_problem(response, 422)
        assert problem["type"] == PROBLEM_BASE + "unstorable-text"
    else:
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []


# --- body size limit ------------------------------------------------------------------------


def oversized_patient_json(limit: int) -> bytes:
    """A patient the API would store, padded past the limit with insignificant whitespace."""
    return json.dumps(patient_body("MRN-BIG")).encode() + b" " * (limit + 1)


def test_whitespace_padded_body_within_the_limit_is_stored(
    client: TestClient, db: Database, settings: Settings
) -> None:
    # the control for the two tests below: the same kind of body, only the size differs
    payload = json.dumps(patient_body("MRN-PADDED")).encode() + b" " * 1000

    response = client.post(
        "/api/v1/patients", content=payload, headers={"content-type": "application/json"}
    )

    assert response.status_code == 201, response.text
    assert db.count("patient") == 1


def test_body_over_the_limit_with_content_length_is_413_and_nothing_is_stored(
    client: TestClient, db: Database, settings: Settings
) -> None:
    before = db.counts()
    payload = oversized_patient_json(settings.max_body_bytes)

    response = client.post(
        "/api/v1/patients", content=payload, headers={"content-type": "application/json"}
    )

    assert int(response.request.headers["content-length"]) > settings.max_body_bytes
    problem = assert_problem(response, 413)
    assert problem["type"] == PROBLEM_BASE + "payload-too-large"
    assert str(settings.max_body_bytes) in problem["detail"]
    assert_security_headers(response)
    assert db.counts() == before


def chunks(payload: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def test_chunked_body_over_the_limit_is_413_and_nothing_is_stored(
    client: TestClient, db: Database, settings: Settings
) -> None:
    before = db.counts()
    payload = oversized_patient_json(settings.max_body_bytes)

    response = client.post(
        "/api/v1/patients", content=chunks(payload), headers={"content-type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    problem = assert_problem(response, 413)
    assert problem["type"] == PROBLEM_BASE + "payload-too-large"
    assert_security_headers(response)
    assert db.counts() == before


def test_chunked_body_within_the_limit_is_accepted(client: TestClient, db: Database) -> None:
    payload = (
        f'{{"identifiers": [{{"system": "{MRN_SYSTEM}", "value": "MRN-CHUNKED"}}], "sex": "male"}}'
    ).encode()

    response = client.post(
        "/api/v1/patients",
        content=chunks(payload, 16),
        headers={"content-type": "application/json"},
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 201, response.text
    assert db.count("patient") == 1


# --- unhandled exceptions -------------------------------------------------------------------

SECRET = "PHI-CANARY Mg 0.31 mmol/L for MRN-0042"


@pytest.fixture
def failing_app(
    settings: Settings, db: Database, api_keys: dict[str, dict[str, str]]
) -> Iterator[TestClient]:
    """The real app plus two routes that fail the way a bug would."""
    app: FastAPI = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(SECRET)

    @app.post("/boom-after-write")
    async def boom_after_write(session: AuditedSession) -> None:
        await session.execute(text("DELETE FROM range_set"))
        raise KeyError(SECRET)

    with TestClient(
        app,
        raise_server_exceptions=False,
        # The request session belongs to an authenticated caller.
        headers={"X-API-Key": api_keys["default"]["admin"]},
    ) as failing:
        yield failing


def test_unhandled_exception_is_a_500_problem_without_details(failing_app: TestClient) -> None:
    response = failing_app.get("/boom", headers={"x-request-id": "trace-500"})

    problem = assert_problem(response, 500)
    assert problem["type"] == PROBLEM_BASE + "internal-error"
    assert set(problem) <= {"type", "title", "status", "detail", "instance"}
    for leak in ("PHI-CANARY", "RuntimeError", "Traceback", 'File "', "boom()"):
        assert leak not in response.text
    assert response.headers["x-request-id"] == "trace-500"
    assert_security_headers(response)


def test_unhandled_exception_rolls_back_the_request_transaction(
    failing_app: TestClient, db: Database
) -> None:
    before = db.counts()
    assert before["range_set"] > 0

    response = failing_app.post("/boom-after-write")

    assert_problem(response, 500)
    assert "PHI-CANARY" not in response.text
    assert db.counts() == before


# --- request id and security headers --------------------------------------------------------


def test_valid_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/health/live", headers={"x-request-id": "lab-gw:7f3a.42_b-1"})

    assert response.headers["x-request-id"] == "lab-gw:7f3a.42_b-1"


def test_missing_request_id_is_generated_and_unique(client: TestClient) -> None:
    first = client.get("/health/live").headers["x-request-id"]
    second = client.get("/health/live").headers["x-request-id"]

    assert GENERATED_REQUEST_ID.match(first)
    assert GENERATED_REQUEST_ID.match(second)
    assert first != second


@pytest.mark.parametrize(
    "unsafe", ["has spaces", "x" * 129, "<script>", "new\\nline", "semi;colon", ""]
)
def test_unsafe_request_id_is_replaced_not_echoed(client: TestClient, unsafe: str) -> None:
    response = client.get("/health/live", headers={"x-request-id": unsafe})

    assert response.headers["x-request-id"] != unsafe
    assert GENERATED_REQUEST_ID.match(response.headers["x-request-id"])


def test_security_headers_are_on_successful_responses(client: TestClient) -> None:
    created = client.post("/api/v1/patients", json=patient_body("MRN-HEADERS"))
    assert created.status_code == 201, created.text
    assert_security_headers(created)
    patient = make_patient(client)

    read = client.get(f"/api/v1/patients/{patient['id']}")

    assert read.status_code == 200
    assert_security_headers(read)
    assert_security_headers(client.get("/health/live"))
