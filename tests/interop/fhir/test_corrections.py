"""Panel corrections over FHIR: a Bundle whose DiagnosticReport identifier names a stored panel
corrects it through the same path as the native API (entry responses 200 with the panel's and
results' locations) when the report is corrected / amended / final after preliminary, or when
Observations carry entered-in-error / cancelled / corrected / amended. An identical re-send
changes nothing; anything else is a 409 OperationOutcome saying how to correct."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.builders import result_for
from tests.conftest import Database
from tests.interop.fhir.builders import (
    Sent,
    expect_outcome,
    get_json,
    location_id,
    new_accession,
    new_mrn,
    panel_bundle,
    post_bundle,
    response_bundle,
    statuses,
)
from tests.plans.builders import draft_plan, recent

# Magnesium 0.3 mmol/L is critically low (and flagged LL by the lab); with calcium, a Ca:Mg ratio.
MAGNESIUM = Sent("2601-3", "0.3", "mmol/L", flag="LL")
CALCIUM = Sent("17861-6", "9.1", "mg/dL")


class Lab:
    """One patient and one accession, re-sent as a lab would."""

    def __init__(self) -> None:
        self.mrn, self.accession, self.collected = new_mrn(), new_accession(), recent()

    def bundle(
        self,
        results: tuple[Sent, ...] = (MAGNESIUM, CALCIUM),
        *,
        report_status: str = "final",
        observation_statuses: tuple[str, ...] | None = None,
    ) -> str:
        body: dict[str, Any] = json.loads(
            panel_bundle(mrn=self.mrn, accession=self.accession, results=results)
        )
        observations = [e for e in body["entry"] if e["resource"]["resourceType"] == "Observation"]
        for position, entry in enumerate(observations):
            entry["resource"]["effectiveDateTime"] = self.collected
            if observation_statuses is not None:
                entry["resource"]["status"] = observation_statuses[position]
        for entry in body["entry"]:
            if entry["resource"]["resourceType"] == "DiagnosticReport":
                entry["resource"]["effectiveDateTime"] = self.collected
                entry["resource"]["status"] = report_status
        return json.dumps(body)


def _panel(client: TestClient, answer: dict[str, Any]) -> dict[str, Any]:
    panel: dict[str, Any] = client.get(f"/api/v1/panels/{location_id(answer, 1)}").json()
    return panel


def test_an_observation_re_sent_entered_in_error_withdraws_the_stored_result(
    client: TestClient,
) -> None:
    lab = Lab()
    first = response_bundle(post_bundle(client, lab.bundle()))
    patient_id = location_id(first, 0)
    stored = _panel(client, first)
    assert stored["has_critical"] is True
    plan = draft_plan(client, {"id": patient_id})
    assert plan["review_reason"] is None

    answer = response_bundle(
        post_bundle(client, lab.bundle(observation_statuses=("entered-in-error", "final")))
    )

    assert statuses(answer) == ["200 OK", "200 OK", "200 OK", "200 OK"]
    assert [location_id(answer, i) for i in range(4)] == [location_id(first, i) for i in range(4)]
    panel = _panel(client, answer)
    magnesium = result_for(panel, "magnesium")
    assert magnesium["status"] == "entered-in-error"
    assert magnesium["reported"]["text"] == "0.3"
    assert magnesium["interpretation"]["critical"] is False  # even with the lab's LL flag
    assert panel["has_critical"] is False
    assert panel["ratios"] == []
    assert result_for(panel, "calcium")["status"] == "final"
    observation = get_json(client, f"/fhir/R4/Observation/{location_id(answer, 2)}")
    assert observation["status"] == "entered-in-error"
    history = client.get(f"/api/v1/patients/{patient_id}/analytes/magnesium/history").json()
    assert history["items"] == []

    marked = client.get(f"/api/v1/plans/{plan['id']}").json()
    assert "magnesium" in marked["review_reason"]
    assert "withdrawn (entered-in-error)" in marked["review_reason"]
    assert "FHIR" in marked["review_reason"]


def test_a_corrected_report_corrects_the_stored_panel_and_keeps_its_history(
    client: TestClient,
) -> None:
    lab = Lab()
    first = response_bundle(post_bundle(client, lab.bundle(report_status="preliminary")))
    assert _panel(client, first)["status"] == "preliminary"

    final = response_bundle(post_bundle(client, lab.bundle()))
    assert statuses(final)[1] == "200 OK"
    assert _panel(client, final)["status"] == "final"

    corrected_magnesium = Sent("2601-3", "0.85", "mmol/L")
    answer = response_bundle(
        post_bundle(client, lab.bundle((corrected_magnesium, CALCIUM), report_status="corrected"))
    )
    panel = _panel(client, answer)
    assert panel["id"] == location_id(first, 1)
    assert panel["status"] == "corrected"
    magnesium = result_for(panel, "magnesium")
    assert magnesium["reported"]["text"] == "0.85"
    assert magnesium["interpretation"]["code"] == "N"
    assert panel["has_critical"] is False
    report = get_json(client, f"/fhir/R4/DiagnosticReport/{panel['id']}")
    assert report["status"] == "corrected"

    versions = client.get(f"/api/v1/panels/{panel['id']}/interpretations").json()
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert "FHIR" in versions[1]["reason"]


def test_an_amended_report_is_stored_as_amended(client: TestClient) -> None:
    lab = Lab()
    response_bundle(post_bundle(client, lab.bundle()))
    answer = response_bundle(
        post_bundle(
            client, lab.bundle((Sent("2601-3", "0.8", "mmol/L"), CALCIUM), report_status="amended")
        )
    )
    panel = _panel(client, answer)
    assert panel["status"] == "amended"
    report = get_json(client, f"/fhir/R4/DiagnosticReport/{panel['id']}")
    assert report["status"] == "amended"


def test_an_identical_re_sent_bundle_changes_nothing(client: TestClient, db: Database) -> None:
    lab = Lab()
    first = response_bundle(post_bundle(client, lab.bundle()))
    withdrawal = lab.bundle(observation_statuses=("entered-in-error", "final"))
    response_bundle(post_bundle(client, withdrawal))
    before = db.counts()

    again = response_bundle(post_bundle(client, withdrawal))

    assert statuses(again)[1:] == ["200 OK", "200 OK", "200 OK"]
    assert db.counts() == before
    versions = client.get(f"/api/v1/panels/{location_id(first, 1)}/interpretations").json()
    assert len(versions) == 2


def test_a_preliminary_report_after_a_final_one_is_a_conflict_that_says_how_to_correct(
    client: TestClient, db: Database
) -> None:
    lab = Lab()
    first = response_bundle(post_bundle(client, lab.bundle()))
    before = db.counts()

    response = post_bundle(
        client, lab.bundle((Sent("2601-3", "0.8", "mmol/L"), CALCIUM), report_status="preliminary")
    )

    outcome = expect_outcome(response, 409)
    diagnostics = " ".join(i["diagnostics"] for i in outcome["issue"])
    assert "DiagnosticReport.status" in diagnostics
    assert "Observation.status" in diagnostics
    assert db.counts() == before
    assert result_for(_panel(client, first), "magnesium")["reported"]["text"] == "0.3"
