"""Keyword-only builders for test data, posted through the public API, and problem checks."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

MRN_SYSTEM = "urn:test:mrn"
_counter = itertools.count(1)


def make_patient(
    client: TestClient,
    *,
    sex: str = "female",
    birth_date: str | None = "1981-04-12",
    mrn: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "identifiers": [{"system": MRN_SYSTEM, "value": mrn or f"MRN-{next(_counter):06d}"}],
        "sex": sex,
    }
    if birth_date is not None:
        body["birth_date"] = birth_date
    response = client.post("/api/v1/patients", json=body)
    assert response.status_code == 201, response.text
    patient: dict[str, Any] = response.json()
    return patient


def panel_body(
    patient: dict[str, Any],
    results: list[dict[str, Any]],
    *,
    accession: str | None = None,
    source: str = "test-lab",
    collected_at: str = "2026-11-20T08:00:00Z",
    patient_ref: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "patient": patient_ref or {"id": patient["id"]},
        "source": source,
        "accession": accession or f"ACC-{next(_counter):06d}",
        "collected_at": collected_at,
        "results": results,
        **extra,
    }


def post_panel(
    client: TestClient,
    patient: dict[str, Any],
    results: list[dict[str, Any]],
    *,
    expect: int = 201,
    **kwargs: Any,
) -> dict[str, Any]:
    response = client.post("/api/v1/panels", json=panel_body(patient, results, **kwargs))
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


def result_for(panel: dict[str, Any], analyte: str) -> dict[str, Any]:
    return next(r for r in panel["results"] if r["analyte"] == analyte)


def result(analyte: str, value: str | int | float, unit: str, **extra: Any) -> dict[str, Any]:
    """One result as a lab sends it: ``result("magnesium", "0.62", "mmol/L", flag="L")``."""
    return {"analyte": analyte, "value": value, "unit": unit, **extra}


def by_identifier(patient: dict[str, Any]) -> dict[str, Any]:
    """A panel's ``patient`` reference naming the patient by its first external identifier."""
    identifier = patient["identifiers"][0]
    return {"identifier": {"system": identifier["system"], "value": identifier["value"]}}


def expect_problem(response: Response, status: int, type_slug: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status (and type) and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert isinstance(problem["title"], str)
    assert problem["title"]
    assert isinstance(problem["type"], str)
    assert problem["type"].startswith("https://")
    if type_slug is not None:
        assert problem["type"].endswith("/" + type_slug), problem["type"]
    return problem


def error_fields(problem: dict[str, Any]) -> list[str]:
    """The field paths named in a problem's ``errors`` list."""
    return [error["field"] for error in problem.get("errors", [])]
