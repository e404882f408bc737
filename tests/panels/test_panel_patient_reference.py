"""A native panel naming its patient by identifier: the identifier must be able to name a
patient (never an SSN system, never a placeholder value); the native API sends no type and no
demographics, so nothing else is checked there."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.builders import (
    MRN_SYSTEM,
    by_identifier,
    expect_problem,
    make_patient,
    panel_body,
    post_panel,
    result,
)
from tests.conftest import Database

MAGNESIUM = [result("magnesium", "0.30", "mmol/L")]


def test_a_panel_naming_its_patient_by_placeholder_or_ssn_is_refused(
    client: TestClient, db: Database
) -> None:
    placeholder = make_patient(client, mrn="000-00-0000")
    ssn = {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "524-71-9936"}
    client.post("/api/v1/patients", json={"identifiers": [ssn], "sex": "male"}).raise_for_status()
    before = db.counts()

    for reference in (by_identifier(placeholder), {"identifier": ssn}):
        response = client.post(
            "/api/v1/panels", json=panel_body(placeholder, MAGNESIUM, patient_ref=reference)
        )
        problem = expect_problem(response, 422, "no-matching-identifier")
        assert [e["field"] for e in problem["errors"]] == ["body.patient.identifier"]

    assert db.counts() == before


def test_a_panel_naming_its_patient_by_mrn_is_filed_under_that_patient(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    assert patient["identifiers"][0]["system"] == MRN_SYSTEM

    panel = post_panel(client, patient, MAGNESIUM, patient_ref=by_identifier(patient))

    assert panel["patient_id"] == patient["id"]
