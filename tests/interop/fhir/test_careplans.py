"""Treatment plans as FHIR CarePlans: read and search, validated with fhir.resources."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careplan import CarePlan

from tests.builders import make_patient, result
from tests.interop.fhir.builders import expect_outcome, first_issue, get_json
from tests.plans.builders import (
    LOW_MAGNESIUM,
    draft_plan,
    items,
    post_recent_panel,
    set_status,
    supplements,
)


def _plan(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    patient = make_patient(client)
    post_recent_panel(client, patient, [*LOW_MAGNESIUM, result("ferritin", "20", "ug/L")])
    return patient, draft_plan(client, patient)


def test_a_plan_reads_as_a_valid_care_plan_with_one_activity_per_item(
    client: TestClient,
) -> None:
    patient, plan = _plan(client)

    resource = get_json(client, f"/fhir/R4/CarePlan/{plan['id']}")

    care_plan = CarePlan.model_validate(resource)
    assert care_plan.status == "draft"
    assert care_plan.intent == "plan"
    assert resource["subject"]["reference"] == f"Patient/{patient['id']}"
    assert len(resource["activity"]) == len(items(plan))
    assert [a["detail"]["description"] for a in resource["activity"]] == [
        i["instruction"] for i in items(plan)
    ]
    magnesium = supplements(plan, "magnesium")[0]
    detail = next(
        a["detail"]
        for a in resource["activity"]
        if a["detail"]["code"]["text"] == magnesium["title"]
    )
    assert detail["kind"] == "MedicationRequest"
    assert detail["status"] == "not-started"
    daily = magnesium["supplement"]["dose"] * magnesium["supplement"]["doses_per_day"]
    assert detail["dailyAmount"] == {
        "value": daily,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    magnesium_result = next(r for r in plan["basis"]["results"] if r["analyte"] == "magnesium")
    assert {"reference": f"Observation/{magnesium_result['result_id']}"} in detail[
        "reasonReference"
    ]
    assert resource["supportingInfo"] == [
        {"reference": f"DiagnosticReport/{panel_id}"} for panel_id in plan["source_panel_ids"]
    ]


def test_care_plans_are_searched_by_patient_and_status_with_paging(client: TestClient) -> None:
    patient, first = _plan(client)
    second = draft_plan(client, patient)
    set_status(client, first, "active")
    _, elsewhere = _plan(client)

    everything = get_json(client, f"/fhir/R4/CarePlan?patient=Patient/{patient['id']}")
    active = get_json(client, f"/fhir/R4/CarePlan?patient={patient['id']}&status=active")
    either = get_json(client, "/fhir/R4/CarePlan?status=active,draft")
    page = get_json(client, f"/fhir/R4/CarePlan?patient={patient['id']}&_count=1")

    Bundle.model_validate(everything)
    assert everything["total"] == 2
    assert [e["resource"]["id"] for e in everything["entry"]] == [second["id"], first["id"]]
    assert [e["resource"]["id"] for e in active["entry"]] == [first["id"]]
    assert active["entry"][0]["resource"]["activity"][0]["detail"]["status"] == "in-progress"
    assert either["total"] == 3
    assert {e["resource"]["id"] for e in either["entry"]} >= {elsewhere["id"]}
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = get_json(client, next_url.replace(str(client.base_url), ""))
    assert [e["resource"]["id"] for e in rest["entry"]] == [first["id"]]
    bad = expect_outcome(client.get("/fhir/R4/CarePlan?status=paused"), 400)
    assert "status" in first_issue(bad)["diagnostics"]


def test_care_plans_of_another_organization_are_not_found(
    client: TestClient, api_keys: dict[str, Any]
) -> None:
    _, plan = _plan(client)
    other = {"X-API-Key": api_keys["other-clinic"]["clinician"]}

    outcome = expect_outcome(client.get(f"/fhir/R4/CarePlan/{plan['id']}", headers=other), 404)
    search = get_json(client, "/fhir/R4/CarePlan", headers=other)

    assert first_issue(outcome)["code"] == "not-found"
    assert search["total"] == 0
    integration = {"X-API-Key": api_keys["default"]["integration"]}
    expect_outcome(client.get(f"/fhir/R4/CarePlan/{plan['id']}", headers=integration), 403)


def test_the_capability_statement_claims_care_plan_read_and_search(client: TestClient) -> None:
    statement = get_json(client, "/fhir/R4/metadata", auth=None)

    CapabilityStatement.model_validate(statement)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    care_plan = resources["CarePlan"]
    assert {i["code"] for i in care_plan["interaction"]} == {"read", "search-type"}
    assert {p["name"] for p in care_plan["searchParam"]} >= {"patient", "status", "_count"}
