"""The patient timeline: panels and ISI scores in one keyset-paginated list, newest first."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import expect_problem, make_patient, post_panel, result


def _url(patient: dict[str, Any]) -> str:
    return f"/api/v1/patients/{patient['id']}/timeline"


def _assess(client: TestClient, patient: dict[str, Any], day: str, items: list[int]) -> str:
    response = client.post(
        f"/api/v1/patients/{patient['id']}/sleep-assessments",
        json={"instrument": "ISI", "assessed_on": day, "items": items},
    )
    assert response.status_code == 201, response.text
    assessment_id: str = response.json()["id"]
    return assessment_id


def _panel(client: TestClient, patient: dict[str, Any], collected_at: str) -> str:
    panel = post_panel(
        client,
        patient,
        [
            result("magnesium", "1.4", "mg/dL"),
            result("calcium", "9.2", "mg/dL"),
            result("zinc", "71", "ug/dL"),
        ],
        collected_at=collected_at,
    )
    panel_id: str = panel["id"]
    return panel_id


def _pages(
    client: TestClient, patient: dict[str, Any], **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(_url(patient), params=query)
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20


def _key(entry: dict[str, Any]) -> str:
    key: str = entry["panel_id"] if entry["kind"] == "panel" else entry["id"]
    return key


@pytest.fixture
def history(client: TestClient) -> tuple[dict[str, Any], list[str]]:
    """A patient with panels and assessments interleaved; the ids newest first."""
    patient = make_patient(client)
    older_panel = _panel(client, patient, "2026-01-05T08:00:00Z")
    first_isi = _assess(client, patient, "2026-01-20", [3, 3, 3, 3, 3, 3, 3])
    # Same day as the next assessment, later in the day: the panel sorts first.
    newer_panel = _panel(client, patient, "2026-03-01T07:30:00+01:00")
    second_isi = _assess(client, patient, "2026-03-01", [1, 1, 1, 1, 1, 1, 1])
    latest_isi = _assess(client, patient, "2026-06-15", [2, 2, 2, 2, 2, 2, 2])
    return patient, [latest_isi, newer_panel, second_isi, first_isi, older_panel]


def test_panels_and_assessments_come_together_newest_first(
    client: TestClient, history: tuple[dict[str, Any], list[str]]
) -> None:
    patient, expected = history

    [page] = _pages(client, patient, limit=50)

    assert [_key(entry) for entry in page] == expected
    assert [entry["kind"] for entry in page] == [
        "sleep-assessment",
        "panel",
        "sleep-assessment",
        "sleep-assessment",
        "panel",
    ]
    latest = page[0]
    assert latest == {
        "kind": "sleep-assessment",
        "at": "2026-06-15T00:00:00Z",
        "id": expected[0],
        "instrument": "ISI",
        "assessed_on": "2026-06-15",
        "total": 14,
        "category": "subthreshold",
    }
    panel = page[1]
    assert panel["at"] == "2026-03-01T06:30:00Z"
    assert panel["status"] == "final"
    by_analyte = {r["analyte"]: r for r in panel["results"]}
    assert set(by_analyte) == {"magnesium", "calcium", "zinc"}
    assert by_analyte["magnesium"]["unit"] == "mmol/L"
    assert by_analyte["magnesium"]["value"] == pytest.approx(0.576, abs=0.001)
    assert by_analyte["magnesium"]["interpretation"] == "L"
    assert by_analyte["magnesium"]["critical"] is False
    assert by_analyte["zinc"]["unit"] == "umol/L"
    assert {ratio["code"] for ratio in panel["ratios"]} >= {"ca_mg_molar"}


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_every_entry_appears_exactly_once_across_pages(
    client: TestClient, history: tuple[dict[str, Any], list[str]], limit: int
) -> None:
    patient, expected = history

    pages = _pages(client, patient, limit=limit)

    assert [_key(entry) for page in pages for entry in page] == expected
    assert all(len(page) <= limit for page in pages)
    assert len(pages) == -(-len(expected) // limit)


def test_from_and_to_limit_the_days_inclusively(
    client: TestClient, history: tuple[dict[str, Any], list[str]]
) -> None:
    patient, expected = history

    pages = _pages(client, patient, limit=1, **{"from": "2026-01-20", "to": "2026-03-01"})

    assert [_key(entry) for page in pages for entry in page] == expected[1:4]


def test_a_patient_with_nothing_recorded_has_an_empty_timeline(client: TestClient) -> None:
    patient = make_patient(client)

    response = client.get(_url(patient))

    assert response.status_code == 200
    assert response.json() == {"items": [], "limit": 50, "next_cursor": None}


def test_bad_queries_are_refused(client: TestClient) -> None:
    patient = make_patient(client)

    expect_problem(client.get(_url({"id": str(uuid.uuid4())})), 404, "not-found")
    expect_problem(client.get(_url(patient), params={"cursor": "zz"}), 400, "invalid-cursor")
    expect_problem(
        client.get(_url(patient), params={"from": "2026-02-02", "to": "2026-02-01"}),
        400,
        "invalid-query",
    )
    expect_problem(client.get(_url(patient), params={"from": "1800-01-01"}), 422)
