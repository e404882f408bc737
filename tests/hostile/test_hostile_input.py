"""Hostile bodies are refused cheaply: a 4xx before anything is parsed, memory flat, the
worker alive.

Memory is measured in the test process with tracemalloc (the app runs in it, behind
TestClient): the bombs below would allocate gigabytes if they reached a parser or
`format(value, "f")`; refused, they cost about the size of the body.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.json_guard import JsonLimits, check_json
from tests.builders import make_patient, panel_body
from tests.conftest import Database
from tests.interop.fhir.builders import FHIR_JSON, panel_bundle
from tests.interop.hl7.messages import magnesium_mmol, oru

FLAT_BYTES = 16 * 1024 * 1024  # far below what any bomb would take once parsed


def _peak(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
    tracemalloc.start()
    try:
        response = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response, peak


def _assert_alive(client: TestClient) -> None:
    assert client.get("/health/live").status_code == 200
    assert client.get("/fhir/R4/metadata").status_code == 200


def _outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


@pytest.mark.parametrize("bomb", ["1e999999999", "1e9999999999", "1e-400", "9" * 100_000])
def test_a_fhir_observation_value_bomb_is_refused_with_flat_memory(
    client: TestClient, db: Database, bomb: str
) -> None:
    body = panel_bundle().replace('"value":0.62', f'"value":{bomb}', 1)
    assert bomb in body

    response, peak = _peak(
        lambda: client.post("/fhir/R4", content=body, headers={"Content-Type": FHIR_JSON})
    )

    outcome = _outcome(response, 422)
    assert "out of range" in outcome["issue"][0]["diagnostics"]
    assert peak < FLAT_BYTES
    assert db.count("panel") == 0
    _assert_alive(client)


def test_json_nested_a_thousand_levels_deep_is_a_400_operation_outcome_on_fhir(
    client: TestClient,
) -> None:
    body = '{"resourceType": "Bundle", "type": "batch", "x": ' + "[" * 1000 + "]" * 1000 + "}"

    response, peak = _peak(
        lambda: client.post("/fhir/R4", content=body, headers={"Content-Type": FHIR_JSON})
    )

    outcome = _outcome(response, 400)
    assert "nested 1001 levels" in outcome["issue"][0]["diagnostics"]
    assert peak < FLAT_BYTES
    _assert_alive(client)


def test_a_magnesium_of_1e_minus_400_is_refused_as_out_of_range_never_read_as_zero(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    body = json.dumps(
        panel_body(patient, [{"analyte": "magnesium", "value": 0.5, "unit": "mg/dL"}])
    )
    body = body.replace('"value": 0.5', '"value": 1e-400')
    assert "1e-400" in body

    response = client.post(
        "/api/v1/panels", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/json-number-out-of-range")
    assert "out of range" in problem["detail"]
    assert db.count("panel") == 0
    assert db.count("result") == 0


@pytest.mark.parametrize(
    "bomb", ["1e999999999", "1e9999999999", "1" * 100_000, "0." + "0" * 500 + "1"]
)
def test_a_native_panel_value_bomb_is_refused_with_flat_memory(
    client: TestClient, db: Database, bomb: str
) -> None:
    patient = make_patient(client)
    body = json.dumps(panel_body(patient, [{"analyte": "zinc", "value": 80, "unit": "ug/dL"}]))
    body = body.replace('"value": 80', f'"value": {bomb}')

    response, peak = _peak(
        lambda: client.post(
            "/api/v1/panels", content=body, headers={"Content-Type": "application/json"}
        )
    )

    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/json-number-out-of-range")
    assert peak < FLAT_BYTES
    assert db.count("panel") == 0
    _assert_alive(client)


def test_deep_nesting_on_a_native_route_is_a_400_problem(client: TestClient) -> None:
    body = '{"identifiers": ' + "[" * 1000 + "]" * 1000 + "}"

    response = client.post(
        "/api/v1/patients", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/json-too-deep")
    _assert_alive(client)


def test_a_body_without_content_type_is_checked_too(client: TestClient) -> None:
    response = client.post("/api/v1/patients", content=b'{"sex": 1e999999999}')

    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/json-number-out-of-range")


def test_numbers_inside_strings_and_ordinary_numbers_pass(client: TestClient) -> None:
    patient = make_patient(client)
    body = panel_body(
        patient,
        [
            {"analyte": "magnesium", "value": 0.78, "unit": "mmol/L"},
            {"analyte": "zinc", "value": "80", "unit": "ug/dL", "lab_range": "1e999999999"},
        ],
    )

    response = client.post("/api/v1/panels", json=body)

    assert response.status_code in (201, 422), response.text
    assert "json-number-out-of-range" not in response.text


def test_an_hl7_body_with_too_many_segments_is_refused_before_parsing(
    client: TestClient, db: Database
) -> None:
    # 10,000 short segments: under the body size limit, over the segment cap.
    message = oru([magnesium_mmol("0.80")], extra=["NTE|1"] * 10_000)

    response, peak = _peak(
        lambda: client.post(
            "/api/v1/hl7/oru", content=message, headers={"Content-Type": "text/plain"}
        )
    )

    assert response.status_code == 413, response.text
    assert response.json()["type"].endswith("/too-many-segments")
    assert peak < FLAT_BYTES
    assert db.count("panel") == 0
    _assert_alive(client)


def test_an_hl7_body_over_the_size_limit_is_refused(client: TestClient) -> None:
    limit = client.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    message = oru([magnesium_mmol("0.80")]) + "NTE|1||" + "x" * limit + "\r"

    response = client.post(
        "/api/v1/hl7/oru", content=message, headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 413
    _assert_alive(client)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (b'{"a": 1e31}', "number-out-of-range"),
        (b'{"a": -1E-31}', "number-out-of-range"),
        (b'{"a": 1234567890123456}', "number-out-of-range"),
        (b"[" * 65 + b"]" * 65, "too-deep"),
        (b'{"a": 1e30, "b": -2.5E-30, "c": 123456789012345, "d": 0.70}', None),
        (
            b'{"a": "1e999999999", "b": "' + b"[" * 100 + b'"}',
            None,
        ),
        (b'{"a": "\\"1e999999999"}', None),
        (b"[" * 64 + b"]" * 64, None),
    ],
)
def test_json_bounds(text: bytes, kind: str | None) -> None:
    violation = check_json(text, JsonLimits())
    assert (violation.kind if violation else None) == kind


def test_an_unterminated_string_of_escaped_quotes_is_scanned_in_linear_time() -> None:
    # Each start position re-scanning to the end would be quadratic: minutes for 1 MB.
    text = b'"' + b'\\"' * 500_000
    assert check_json(text, JsonLimits()) is None
