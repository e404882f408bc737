"""Per-result status over the native JSON API: a withdrawn result (cancelled, entered-in-error)
is kept and shown with its status on its panel, but is never critical and never used as
current: not in the critical summary, trends, ratios, the timeline or a drafted plan."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.builders import (
    error_fields,
    expect_problem,
    make_patient,
    post_panel,
    result,
    result_for,
)
from tests.plans.builders import draft_plan, recent

CRITICAL_MAGNESIUM = result("magnesium", "0.3", "mmol/L", status="entered-in-error")


def _withdrawn_panel(client: TestClient, patient: dict[str, Any]) -> dict[str, Any]:
    return post_panel(
        client,
        patient,
        [CRITICAL_MAGNESIUM, result("calcium", "9.1", "mg/dL")],
        collected_at=recent(2),
    )


def test_an_entered_in_error_result_is_stored_and_served_with_its_status_and_not_critical(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    panel = _withdrawn_panel(client, patient)

    magnesium = result_for(panel, "magnesium")
    assert magnesium["status"] == "entered-in-error"
    assert magnesium["reported"]["text"] == "0.3"  # kept for the record
    assert magnesium["interpretation"]["critical"] is False
    assert magnesium["interpretation"]["possibly_critical"] is False
    assert "entered-in-error" in magnesium["interpretation"]["note"]
    assert result_for(panel, "calcium")["status"] == "final"
    assert panel["has_critical"] is False
    assert panel["has_possible_critical"] is False

    read = client.get(f"/api/v1/panels/{panel['id']}").json()
    assert result_for(read, "magnesium")["status"] == "entered-in-error"


def test_a_withdrawn_result_makes_no_ratio(client: TestClient) -> None:
    patient = make_patient(client)
    panel = _withdrawn_panel(client, patient)
    assert [r["code"] for r in panel["ratios"]] == []

    # The same values, both current, do make the Ca:Mg ratio.
    current = post_panel(
        client,
        patient,
        [result("magnesium", "0.8", "mmol/L"), result("calcium", "2.4", "mmol/L")],
    )
    assert [r["code"] for r in current["ratios"]] == ["ca_mg_molar"]


def test_a_withdrawn_result_is_not_in_the_trend_the_timeline_or_the_critical_filter(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    panel = _withdrawn_panel(client, patient)

    history = client.get(f"/api/v1/patients/{patient['id']}/analytes/magnesium/history")
    assert history.status_code == 200, history.text
    assert history.json()["items"] == []
    calcium = client.get(f"/api/v1/patients/{patient['id']}/analytes/calcium/history").json()
    assert [p["status"] for p in calcium["items"]] == ["final"]

    critical = client.get(f"/api/v1/patients/{patient['id']}/panels", params={"flag": "critical"})
    assert critical.json()["items"] == []
    low = client.get(f"/api/v1/patients/{patient['id']}/panels", params={"flag": "LL"})
    assert low.json()["items"] == []

    timeline = client.get(f"/api/v1/patients/{patient['id']}/timeline").json()
    [entry] = timeline["items"]
    assert entry["panel_id"] == panel["id"]
    assert [r["analyte"] for r in entry["results"]] == ["calcium"]


def test_a_drafted_plan_ignores_the_withdrawn_result_and_uses_the_latest_current_one(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    older = post_panel(
        client, patient, [result("magnesium", "0.55", "mmol/L")], collected_at=recent(10)
    )
    _withdrawn_panel(client, patient)

    plan = draft_plan(client, patient)

    by_analyte = {r["analyte"]: r for r in plan["basis"]["results"]}
    assert by_analyte["magnesium"]["result_id"] == result_for(older, "magnesium")["id"]
    assert by_analyte["magnesium"]["value"] == "0.55"
    assert all(r["status"] not in ("cancelled", "entered-in-error") for r in by_analyte.values())


def test_results_take_the_panel_status_unless_they_carry_their_own(client: TestClient) -> None:
    patient = make_patient(client)
    panel = post_panel(
        client,
        patient,
        [
            result("magnesium", "0.8", "mmol/L"),
            result("calcium", "9.1", "mg/dL", status="final"),
            result("zinc", "80", "ug/dL", status="cancelled"),
        ],
        status="preliminary",
    )
    statuses = {r["analyte"]: r["status"] for r in panel["results"]}
    assert statuses == {"magnesium": "preliminary", "calcium": "final", "zinc": "cancelled"}


def test_an_unknown_result_status_is_refused_naming_the_field(client: TestClient) -> None:
    patient = make_patient(client)
    response = client.post(
        "/api/v1/panels",
        json={
            "patient": {"id": patient["id"]},
            "source": "test-lab",
            "accession": "ACC-STATUS-BAD",
            "collected_at": recent(1),
            "results": [result("magnesium", "0.8", "mmol/L", status="registered")],
        },
    )
    problem = expect_problem(response, 422)
    assert "body.results[0].status" in error_fields(problem)


def test_reinterpretation_keeps_a_withdrawn_result_non_critical(client: TestClient) -> None:
    patient = make_patient(client)
    panel = _withdrawn_panel(client, patient)

    response = client.post(f"/api/v1/panels/{panel['id']}/reinterpret", json={})
    assert response.status_code == 200, response.text
    again = response.json()
    magnesium = result_for(again, "magnesium")
    assert magnesium["status"] == "entered-in-error"
    assert magnesium["interpretation"]["critical"] is False
    assert again["has_critical"] is False
