"""Panel corrections over the native JSON API: the same source + accession re-posted as
`final` after `preliminary`, as `corrected` / `amended`, or with per-result correcting or
withdrawing statuses makes a new version of the stored panel (the earlier one readable under
/interpretations), re-interpreted, with plans resting on changed results flagged for review.
An identical re-post changes nothing; anything else is a 409 that says how to correct."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.builders import expect_problem, make_patient, panel_body, result, result_for
from tests.conftest import Database
from tests.plans.builders import draft_plan, recent


def _post(client: TestClient, body: dict[str, Any], expect: int, **kwargs: Any) -> dict[str, Any]:
    response = client.post("/api/v1/panels", json=body, **kwargs)
    assert response.status_code == expect, response.text
    panel: dict[str, Any] = response.json()
    return panel


def _versions(client: TestClient, panel_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/panels/{panel_id}/interpretations")
    assert response.status_code == 200, response.text
    versions: list[dict[str, Any]] = response.json()
    return versions


def _magnesium(version: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in version["results"] if r["analyte"] == "magnesium")


def test_preliminary_then_final_then_corrected_keeps_every_version_readable(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    collected = recent()
    calcium = result("calcium", "9.1", "mg/dL")

    def body(status: str, magnesium: str) -> dict[str, Any]:
        return panel_body(
            patient,
            [result("magnesium", magnesium, "mmol/L"), calcium],
            accession="ACC-CORR-1",
            collected_at=collected,
            status=status,
        )

    preliminary = _post(client, body("preliminary", "0.55"), 201)
    assert preliminary["status"] == "preliminary"
    magnesium_id = result_for(preliminary, "magnesium")["id"]
    ratio_before = preliminary["ratios"][0]["value"]

    final = _post(client, body("final", "0.55"), 200)
    assert final["id"] == preliminary["id"]
    assert final["status"] == "final"
    assert final["interpretation_version"] == 2
    assert result_for(final, "magnesium")["status"] == "final"

    corrected = _post(client, body("corrected", "0.85"), 200)
    assert corrected["id"] == preliminary["id"]
    assert corrected["status"] == "corrected"
    assert corrected["interpretation_version"] == 3
    magnesium = result_for(corrected, "magnesium")
    assert magnesium["id"] == magnesium_id
    assert magnesium["reported"]["text"] == "0.85"
    assert magnesium["interpretation"]["code"] == "N"  # re-interpreted: 0.55 was L
    assert corrected["ratios"][0]["value"] != ratio_before  # Ca:Mg recomputed

    # The stored panel is the corrected one.
    stored = client.get(f"/api/v1/panels/{preliminary['id']}").json()
    assert result_for(stored, "magnesium")["reported"]["text"] == "0.85"

    versions = _versions(client, preliminary["id"])
    assert [(v["version"], v["current"]) for v in versions] == [(3, True), (2, False), (1, False)]
    assert [(_magnesium(v)["status"], _magnesium(v)["value"]) for v in versions] == [
        ("corrected", "0.85"),
        ("final", "0.55"),
        ("preliminary", "0.55"),
    ]
    assert [_magnesium(v)["interpretation"] for v in versions] == ["N", "L", "L"]
    assert "native API" in versions[1]["reason"]
    assert "corrected" in versions[1]["reason"]
    assert "final results after preliminary" in versions[2]["reason"]


def test_a_plan_drafted_from_a_preliminary_result_is_flagged_after_the_correction(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    collected = recent()

    def body(status: str, magnesium: str) -> dict[str, Any]:
        return panel_body(
            patient,
            [result("magnesium", magnesium, "mmol/L")],
            accession="ACC-CORR-PLAN",
            collected_at=collected,
            status=status,
        )

    _post(client, body("preliminary", "0.55"), 201)
    plan = draft_plan(client, patient)
    assert plan["review_reason"] is None

    _post(client, body("final", "0.55"), 200)  # the same value made final: nothing to review
    assert client.get(f"/api/v1/plans/{plan['id']}").json()["review_reason"] is None

    _post(client, body("corrected", "0.85"), 200)
    marked = client.get(f"/api/v1/plans/{plan['id']}").json()
    assert "magnesium" in marked["review_reason"]
    assert "corrected from 0.55 mmol/L to 0.85 mmol/L" in marked["review_reason"]
    assert marked["version"] == plan["version"] + 1
    versions = client.get(f"/api/v1/plans/{plan['id']}/versions").json()["items"]
    assert versions[-1]["change"] == "review-needed"


def test_an_identical_re_post_of_a_correction_changes_nothing(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    first = panel_body(patient, [result("magnesium", "0.55", "mmol/L")], status="preliminary")
    stored = _post(client, first, 201)
    correction = {**first, "status": "corrected", "results": [result("magnesium", "0.8", "mmol/L")]}
    corrected = _post(client, correction, 200)
    before = db.counts()

    again = _post(client, correction, 200)

    assert db.counts() == before
    assert again == corrected
    assert len(_versions(client, stored["id"])) == 2


def test_preliminary_after_final_is_a_conflict_that_says_how_to_correct(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    final = panel_body(patient, [result("magnesium", "0.62", "mmol/L")])
    stored = _post(client, final, 201)
    before = db.counts()

    response = client.post(
        "/api/v1/panels",
        json={**final, "status": "preliminary", "results": [result("magnesium", "0.9", "mmol/L")]},
    )

    problem = expect_problem(response, 409, "accession-conflict")
    assert problem["panel_id"] == stored["id"]
    assert "(final)" in problem["detail"]
    assert "`corrected` or `amended`" in problem["detail"]
    assert "`entered-in-error`" in problem["detail"]
    assert db.counts() == before
    reread = client.get(f"/api/v1/panels/{stored['id']}").json()
    assert result_for(reread, "magnesium")["reported"]["text"] == "0.62"


def test_a_correction_naming_another_patient_or_specimen_is_a_conflict(
    client: TestClient, db: Database
) -> None:
    patient, other = make_patient(client), make_patient(client)
    body = panel_body(patient, [result("magnesium", "0.62", "mmol/L")])
    _post(client, body, 201)
    before = db.counts()

    elsewhere = client.post(
        "/api/v1/panels", json={**body, "patient": {"id": other["id"]}, "status": "corrected"}
    )
    problem = expect_problem(elsewhere, 409, "accession-conflict")
    assert "another patient" in problem["detail"]

    plasma = client.post(
        "/api/v1/panels", json={**body, "specimen": "plasma", "status": "corrected"}
    )
    problem = expect_problem(plasma, 409, "accession-conflict")
    assert "specimen" in problem["detail"]
    assert db.counts() == before


def test_an_entered_in_error_result_status_withdraws_the_stored_critical_result(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    collected = recent()
    results = [result("magnesium", "0.3", "mmol/L"), result("calcium", "9.1", "mg/dL")]
    body = panel_body(patient, results, accession="ACC-WITHDRAW", collected_at=collected)
    stored = _post(client, body, 201)
    assert stored["has_critical"] is True
    assert [r["code"] for r in stored["ratios"]] == ["ca_mg_molar"]
    plan = draft_plan(client, patient)

    withdrawn = [{**results[0], "status": "entered-in-error"}, results[1]]
    panel = _post(client, {**body, "results": withdrawn}, 200)

    assert panel["status"] == "corrected"
    magnesium = result_for(panel, "magnesium")
    assert magnesium["id"] == result_for(stored, "magnesium")["id"]
    assert magnesium["status"] == "entered-in-error"
    assert magnesium["reported"]["text"] == "0.3"  # kept for the record
    assert magnesium["interpretation"]["critical"] is False
    assert panel["has_critical"] is False
    assert panel["ratios"] == []
    history = client.get(f"/api/v1/patients/{patient['id']}/analytes/magnesium/history").json()
    assert history["items"] == []
    marked = client.get(f"/api/v1/plans/{plan['id']}").json()
    assert "withdrawn (entered-in-error)" in marked["review_reason"]


def test_a_result_left_out_of_a_correction_is_kept(client: TestClient) -> None:
    patient = make_patient(client)
    results = [result("magnesium", "0.55", "mmol/L"), result("zinc", "85", "ug/dL")]
    body = panel_body(patient, results)
    stored = _post(client, body, 201)

    corrected = _post(
        client,
        {**body, "status": "amended", "results": [result("magnesium", "0.8", "mmol/L")]},
        200,
    )

    assert corrected["status"] == "amended"
    assert result_for(corrected, "magnesium")["reported"]["text"] == "0.8"
    zinc = result_for(corrected, "zinc")
    assert zinc["id"] == result_for(stored, "zinc")["id"]
    assert zinc["reported"]["text"] == "85"
    assert zinc["status"] == "final"


def test_a_correction_adds_an_analyte_the_stored_panel_did_not_have(client: TestClient) -> None:
    patient = make_patient(client)
    body = panel_body(patient, [result("zinc", "85", "ug/dL")], status="preliminary")
    _post(client, body, 201)

    final = _post(
        client, {**body, "status": "final", "results": [result("copper", "95", "ug/dL")]}, 200
    )

    assert {r["analyte"] for r in final["results"]} == {"zinc", "copper"}
    assert [r["code"] for r in final["ratios"]] == ["zn_cu_molar"]


def test_a_correction_retried_with_its_idempotency_key_is_replayed(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    body = panel_body(patient, [result("magnesium", "0.55", "mmol/L")], status="preliminary")
    stored = _post(client, body, 201)
    correction = {**body, "status": "final", "results": [result("magnesium", "0.6", "mmol/L")]}
    headers = {"Idempotency-Key": "correction-1"}
    first = client.post("/api/v1/panels", json=correction, headers=headers)
    assert first.status_code == 200, first.text
    before = db.counts()

    retry = client.post("/api/v1/panels", json=correction, headers=headers)

    assert retry.status_code == 200
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.content == first.content
    assert db.counts() == before
    assert len(_versions(client, stored["id"])) == 2
