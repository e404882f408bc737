"""Reads and searches: paging, filters, tenancy, audit, and equality with the native API."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.patient import Patient

from tests.builders import by_identifier, make_patient, post_panel, result
from tests.conftest import OTHER_ORGANIZATION, Database
from tests.interop.fhir.builders import (
    FHIR_JSON,
    MINERAL_PANEL,
    expect_outcome,
    first_issue,
    get_json,
    location_id,
    new_mrn,
    panel_bundle,
    post_bundle,
    response_bundle,
)


def _post_panels(client: TestClient, *, mrn: str, collected: list[str]) -> str:
    """Posts one mineral panel per collection day for the same patient; its id."""
    patient_id = ""
    for day in collected:
        body = panel_bundle(mrn=mrn).replace("2026-11-20T08:00:00Z", f"{day}T08:00:00Z")
        patient_id = location_id(response_bundle(post_bundle(client, body)), 0)
    return patient_id


def test_count_paging_returns_every_observation_exactly_once(client: TestClient) -> None:
    patient_id = _post_panels(
        client, mrn=new_mrn(), collected=["2026-11-01", "2026-11-02", "2026-11-03"]
    )
    url: str | None = f"/fhir/R4/Observation?patient={patient_id}&_count=5"
    seen: list[str] = []
    pages = 0
    while url is not None:
        body = get_json(client, url)
        Bundle.model_validate(body)
        assert body["total"] == 12
        seen += [entry["resource"]["id"] for entry in body.get("entry", [])]
        links = {link["relation"]: link["url"] for link in body["link"]}
        assert "self" in links
        url = links.get("next")
        pages += 1

    assert pages == 3
    assert len(seen) == 12
    assert len(set(seen)) == 12


def test_observations_are_filtered_by_code_and_date(client: TestClient) -> None:
    patient_id = _post_panels(client, mrn=new_mrn(), collected=["2026-10-01", "2026-11-05"])
    base = f"/fhir/R4/Observation?patient=Patient/{patient_id}"

    magnesium = get_json(client, base + "&code=http://loinc.org|2601-3")
    # A mass-unit LOINC code of the same analyte finds the same results.
    by_mass_code = get_json(client, base + "&code=19123-9")
    november = get_json(client, base + "&date=ge2026-11-01")
    october_day = get_json(client, base + "&date=2026-10-01")
    between = get_json(client, base + "&date=gt2026-10-01&date=lt2026-11-05")
    unknown = get_json(client, base + "&code=http://loinc.org|0000-0")

    assert magnesium["total"] == by_mass_code["total"] == 2
    assert november["total"] == october_day["total"] == 4
    assert between["total"] == 0
    assert unknown["total"] == 0
    bad = expect_outcome(client.get(base + "&date=yesterday"), 400)
    assert "date" in first_issue(bad)["diagnostics"]


def test_patient_and_report_reads_and_searches(client: TestClient) -> None:
    mrn = new_mrn()
    answer = response_bundle(post_bundle(client, panel_bundle(mrn=mrn)))
    patient_id = location_id(answer, 0)
    report_id = location_id(answer, 1)

    patient = get_json(client, f"/fhir/R4/Patient/{patient_id}")
    search = get_json(client, f"/fhir/R4/Patient?identifier=urn:test:mrn|{mrn}")
    report = get_json(client, f"/fhir/R4/DiagnosticReport/{report_id}")
    reports = get_json(client, f"/fhir/R4/DiagnosticReport?patient={patient_id}")
    Patient.model_validate(patient)
    DiagnosticReport.model_validate(report)

    assert patient["gender"] == "female"
    assert patient["identifier"] == [{"system": "urn:test:mrn", "value": mrn}]
    assert search["total"] == 1
    assert search["entry"][0]["resource"]["id"] == patient_id
    assert search["entry"][0]["fullUrl"].endswith(f"/fhir/R4/Patient/{patient_id}")
    assert report["status"] == "final"
    assert report["performer"] == [{"display": "Acme Reference Lab"}]
    assert [r["reference"] for r in report["result"]] == [
        f"Observation/{location_id(answer, i)}" for i in range(2, 6)
    ]
    assert reports["total"] == 1


def test_another_organizations_key_gets_404_operation_outcomes(
    client: TestClient, api_keys: dict[str, dict[str, str]]
) -> None:
    answer = response_bundle(post_bundle(client, panel_bundle()))
    other = {"X-API-Key": api_keys[OTHER_ORGANIZATION]["integration"]}

    for path in (
        f"Patient/{location_id(answer, 0)}",
        f"DiagnosticReport/{location_id(answer, 1)}",
        f"Observation/{location_id(answer, 2)}",
    ):
        outcome = expect_outcome(client.get(f"/fhir/R4/{path}", headers=other), 404)
        assert first_issue(outcome)["code"] == "not-found"
    search = get_json(
        client, f"/fhir/R4/Observation?patient={location_id(answer, 0)}", headers=other
    )
    assert search["total"] == 0


def test_auth_and_unknown_paths_answer_operation_outcomes(client: TestClient) -> None:
    missing = client.get("/fhir/R4/Patient", auth=None)
    outcome = expect_outcome(missing, 401)
    assert first_issue(outcome)["code"] == "login"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    care_plan = expect_outcome(client.get("/fhir/R4/Encounter"), 404)
    assert first_issue(care_plan)["code"] == "not-supported"
    assert expect_outcome(client.delete("/fhir/R4/Patient/x"), 405)
    assert expect_outcome(client.get("/fhir/R4/Patient/not-an-id"), 404)
    # _count=0 is a count-only Bundle (issue 12); beyond the maximum page size is a 400.
    bad_count = expect_outcome(client.get("/fhir/R4/Observation?_count=201"), 400)
    assert "_count" in first_issue(bad_count)["diagnostics"]
    wrong_type = client.post("/fhir/R4", content="{}", headers={"Content-Type": "text/plain"})
    expect_outcome(wrong_type, 415)


def test_bundle_and_reads_are_audited(client: TestClient, db: Database) -> None:
    answer = response_bundle(post_bundle(client, panel_bundle()))
    patient_id = location_id(answer, 0)
    client.get(f"/fhir/R4/Patient/{patient_id}")

    async def rows(session: Any) -> list[tuple[str, str, str]]:
        from sqlalchemy import text

        result = await session.execute(
            text(
                "SELECT action, resource_type, outcome FROM audit_event "
                "WHERE CAST(patient_id AS TEXT) = :pid OR REPLACE(CAST(patient_id AS TEXT), "
                "'-', '') = :hex ORDER BY seq"
            ),
            {"pid": patient_id, "hex": patient_id.replace("-", "")},
        )
        return [tuple(row) for row in result]

    trail = db.in_session(rows)
    assert ("create", "bundle", "success") in trail
    assert ("create", "patient", "success") in trail
    assert ("create", "panel", "success") in trail
    assert ("read", "patient", "success") in trail


def test_a_panel_posted_as_json_and_as_fhir_is_stored_the_same(client: TestClient) -> None:
    patient = make_patient(client)
    identifier = patient["identifiers"][0]
    native = post_panel(
        client,
        patient,
        [
            result("2601-3", "0.62", "mmol/L", reference_range={"text": "0.70-1.00"}, flag="L"),
            result("17861-6", "9.1", "mg/dL"),
            result("5763-8", "58", "ug/dL"),
            result("5631-7", "95", "ug/dL"),
        ],
        patient_ref=by_identifier(patient),
    )
    fhir = response_bundle(post_bundle(client, panel_bundle(mrn=identifier["value"])))
    assert location_id(fhir, 0) == patient["id"]
    stored = client.get(f"/api/v1/panels/{location_id(fhir, 1)}").json()

    def comparable(panel: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "analyte": r["analyte"],
                "reported": r["reported"],
                "canonical": r["canonical"],
                "interpretation": r["interpretation"],
                "lab": r["lab"],
            }
            for r in panel["results"]
        ]

    assert stored["source_format"] == "fhir"
    assert stored["collected_at"] == native["collected_at"]
    assert comparable(stored) == comparable(native)
    assert len(stored["results"]) == len(MINERAL_PANEL)


def test_responses_are_fhir_json(client: TestClient) -> None:
    response = client.get("/fhir/R4/metadata", auth=None)
    assert response.headers["content-type"].startswith(FHIR_JSON)
