"""FHIR Observation.status is stored per result: an entered-in-error Observation is kept and
served with that status, and is never critical, in a trend, in a ratio or in a drafted plan;
`registered` and `unknown` are refused naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.builders import result_for
from tests.interop.fhir.builders import (
    Sent,
    expect_outcome,
    get_json,
    location_id,
    panel_bundle,
    post_bundle,
    response_bundle,
)
from tests.plans.builders import draft_plan

# Magnesium 0.3 mmol/L is critically low; calcium 2.4 mmol/L with it would make a Ca:Mg ratio.
RESULTS = (Sent("2601-3", "0.3", "mmol/L", flag="LL"), Sent("17861-6", "9.1", "mg/dL"))


def _bundle(*statuses: str, days_ago: int = 2) -> str:
    """A patient + report Bundle with these Observation statuses (in RESULTS order)."""
    body: dict[str, Any] = json.loads(panel_bundle(results=RESULTS))
    collected = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    observations = [e for e in body["entry"] if e["resource"]["resourceType"] == "Observation"]
    for entry, status in zip(observations, statuses, strict=True):
        entry["resource"]["status"] = status
        entry["resource"]["effectiveDateTime"] = collected
    for entry in body["entry"]:
        if entry["resource"]["resourceType"] == "DiagnosticReport":
            entry["resource"]["effectiveDateTime"] = collected
    return json.dumps(body)


def _stored(client: TestClient, *statuses: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(patient id, the native panel, the transaction response)."""
    answer = response_bundle(post_bundle(client, _bundle(*statuses)))
    patient_id = location_id(answer, 0)
    panel = client.get(f"/api/v1/panels/{location_id(answer, 1)}").json()
    return patient_id, panel, answer


def test_an_entered_in_error_observation_is_stored_and_served_with_its_status(
    client: TestClient,
) -> None:
    _, panel, answer = _stored(client, "entered-in-error", "final")

    magnesium = result_for(panel, "magnesium")
    assert magnesium["status"] == "entered-in-error"
    assert magnesium["interpretation"]["critical"] is False  # even with the lab's LL flag
    assert panel["has_critical"] is False
    assert result_for(panel, "calcium")["status"] == "final"

    observation = get_json(client, f"/fhir/R4/Observation/{location_id(answer, 2)}")
    assert observation["status"] == "entered-in-error"
    calcium = get_json(client, f"/fhir/R4/Observation/{location_id(answer, 3)}")
    assert calcium["status"] == "final"


def test_an_entered_in_error_observation_is_not_in_trends_ratios_or_a_drafted_plan(
    client: TestClient,
) -> None:
    patient_id, panel, _ = _stored(client, "entered-in-error", "final")

    assert panel["ratios"] == []
    history = client.get(f"/api/v1/patients/{patient_id}/analytes/magnesium/history").json()
    assert history["items"] == []

    plan = draft_plan(client, {"id": patient_id})
    analytes = [r["analyte"] for r in plan["basis"]["results"]]
    assert analytes == ["calcium"]
    assert not any(i["category"] == "referral" for g in plan["groups"] for i in g["items"])


def test_the_same_values_as_final_are_critical_and_make_a_ratio(client: TestClient) -> None:
    # The control: only the status differs.
    _, panel, _ = _stored(client, "final", "final")
    assert panel["has_critical"] is True
    assert [r["code"] for r in panel["ratios"]] == ["ca_mg_molar"]


def test_a_preliminary_observation_in_a_final_report_is_preliminary(client: TestClient) -> None:
    _, panel, _ = _stored(client, "preliminary", "final")
    assert result_for(panel, "magnesium")["status"] == "preliminary"
    assert result_for(panel, "magnesium")["interpretation"]["critical"] is True


def test_registered_and_unknown_observations_are_refused_naming_the_status(
    client: TestClient,
) -> None:
    for status in ("registered", "unknown"):
        outcome = expect_outcome(post_bundle(client, _bundle(status, "final")), 422)
        issue = next(i for i in outcome["issue"] if "status" in i["diagnostics"])
        assert status in issue["diagnostics"]
        assert issue["expression"][0].endswith("].resource.status")
