"""Keyword-only builders for test data, posted through the public API."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi.testclient import TestClient

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
    **extra: Any,
) -> dict[str, Any]:
    return {
        "patient": {"id": patient["id"]},
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
