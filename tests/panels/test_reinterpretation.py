"""Changing the active ranges never rewrites a stored interpretation; re-interpretation is an
explicit action that records a new version and keeps the earlier verdicts readable."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import expect_problem, make_patient, post_panel, result, result_for
from tests.conftest import Database

SOURCE = "https://example.org/clinic-ranges-2027"

# Default set: magnesium 1.7-2.2 mg/dL = 0.699445-0.905164 mmol/L, so 0.72 mmol/L is normal.
# This set raises the lower limit to 0.75 mmol/L, so the same 0.72 becomes low.
STRICTER_MAGNESIUM = {
    "name": "clinic-strict",
    "source": SOURCE,
    "rows": [
        {
            "analyte": "magnesium",
            "specimen": "serum",
            "age_min_years": 18,
            "unit": "mmol/L",
            "low": 0.75,
            "high": 1.0,
            "critical_low": 0.5,
            "critical_high": 2.0,
            "source": SOURCE,
        }
    ],
}


def _activate_stricter_set(client: TestClient) -> dict[str, Any]:
    response = client.post(
        "/api/v1/range-sets", json=STRICTER_MAGNESIUM, params={"activate": "true"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "active"
    range_set: dict[str, Any] = response.json()
    return range_set


def _reinterpret(client: TestClient, panel_id: str, reason: str | None = None) -> dict[str, Any]:
    body = {"reason": reason} if reason else None
    response = client.post(f"/api/v1/panels/{panel_id}/reinterpret", json=body)
    assert response.status_code == 200, response.text
    panel: dict[str, Any] = response.json()
    return panel


@pytest.fixture
def stored_panel(client: TestClient) -> dict[str, Any]:
    """A panel interpreted with the default set: magnesium N, calcium N."""
    patient = make_patient(client)
    panel = post_panel(
        client,
        patient,
        [result("magnesium", "0.72", "mmol/L"), result("calcium", "2.4", "mmol/L")],
    )
    magnesium = result_for(panel, "magnesium")["interpretation"]
    assert magnesium["code"] == "N"
    assert magnesium["reference_range"]["range_set"]["name"] == "default"
    return panel


def test_a_new_active_range_set_leaves_stored_interpretations_unchanged(
    client: TestClient, stored_panel: dict[str, Any]
) -> None:
    _activate_stricter_set(client)

    again = client.get(f"/api/v1/panels/{stored_panel['id']}").json()

    assert again == stored_panel
    magnesium = result_for(again, "magnesium")["interpretation"]
    assert magnesium["code"] == "N"
    assert magnesium["reference_range"]["low"] == 0.699445
    assert again["range_set"]["name"] == "default"
    assert again["interpretation_version"] == 1


def test_a_panel_posted_after_activation_uses_the_new_set(
    client: TestClient, stored_panel: dict[str, Any]
) -> None:
    strict = _activate_stricter_set(client)
    patient = client.get(f"/api/v1/patients/{stored_panel['patient_id']}").json()

    panel = post_panel(client, patient, [result("magnesium", "0.72", "mmol/L")])

    magnesium = result_for(panel, "magnesium")["interpretation"]
    assert magnesium["code"] == "L"
    assert magnesium["reference_range"]["low"] == 0.75
    assert panel["range_set"] == {"id": strict["id"], "name": "clinic-strict", "version": 1}


def test_reinterpretation_applies_the_active_set_and_increments_the_version(
    client: TestClient, db: Database, stored_panel: dict[str, Any]
) -> None:
    strict = _activate_stricter_set(client)
    results_before = db.count("result")

    panel = _reinterpret(client, stored_panel["id"], reason="clinic adopted stricter ranges")

    assert panel["id"] == stored_panel["id"]
    assert panel["interpretation_version"] == 2
    assert panel["range_set"] == {"id": strict["id"], "name": "clinic-strict", "version": 1}
    magnesium = result_for(panel, "magnesium")
    assert magnesium["interpretation"]["code"] == "L"
    assert magnesium["interpretation"]["reference_range"]["low"] == 0.75
    assert magnesium["reported"] == result_for(stored_panel, "magnesium")["reported"]
    calcium = result_for(panel, "calcium")["interpretation"]
    assert calcium["code"] is None  # the new set has no calcium rows
    assert "no rows for calcium" in calcium["note"]
    assert client.get(f"/api/v1/panels/{panel['id']}").json() == panel
    assert db.count("result") == results_before
    assert db.count("panel_interpretation") == 1


def test_interpretation_history_keeps_the_earlier_verdict_readable(
    client: TestClient, stored_panel: dict[str, Any]
) -> None:
    _activate_stricter_set(client)
    _reinterpret(client, stored_panel["id"], reason="clinic adopted stricter ranges")

    response = client.get(f"/api/v1/panels/{stored_panel['id']}/interpretations")

    assert response.status_code == 200, response.text
    current, earlier = response.json()
    assert (current["version"], current["current"]) == (2, True)
    assert (earlier["version"], earlier["current"]) == (1, False)
    assert earlier["reason"] == "clinic adopted stricter ranges"
    assert earlier["superseded_at"] is not None
    assert earlier["range_set_id"] == stored_panel["range_set"]["id"]

    def verdicts(version: dict[str, Any]) -> dict[str, Any]:
        return {r["analyte"]: r for r in version["results"]}

    assert verdicts(current)["magnesium"]["interpretation"] == "L"
    old_magnesium = verdicts(earlier)["magnesium"]
    assert old_magnesium["interpretation"] == "N"
    assert old_magnesium["critical"] is False
    # the earlier snapshot reads exactly as the panel showed it before re-interpretation
    original = result_for(stored_panel, "magnesium")
    assert old_magnesium["reference_range"] == original["interpretation"]["reference_range"]
    assert old_magnesium["result_id"] == original["id"]
    assert set(old_magnesium) == set(verdicts(current)["magnesium"])
    assert earlier["ratios"] == stored_panel["ratios"]


def test_each_reinterpretation_adds_a_version_newest_first(
    client: TestClient, stored_panel: dict[str, Any]
) -> None:
    _reinterpret(client, stored_panel["id"])
    _activate_stricter_set(client)
    _reinterpret(client, stored_panel["id"])

    versions = client.get(f"/api/v1/panels/{stored_panel['id']}/interpretations").json()

    assert [(v["version"], v["current"]) for v in versions] == [(3, True), (2, False), (1, False)]
    codes = [
        next(r["interpretation"] for r in v["results"] if r["analyte"] == "magnesium")
        for v in versions
    ]
    assert codes == ["L", "N", "N"]


def test_reinterpreting_an_unknown_panel_is_not_found(client: TestClient, db: Database) -> None:
    before = db.counts()

    response = client.post(f"/api/v1/panels/{uuid.uuid4()}/reinterpret")

    expect_problem(response, 404, "not-found")
    assert db.counts() == before
