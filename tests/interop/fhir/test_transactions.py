"""POST /fhir/R4: transaction and batch Bundles through the one ingestion path."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome

from tests.builders import MRN_SYSTEM, make_patient
from tests.conftest import Database
from tests.interop.fhir.builders import (
    MINERAL_PANEL,
    UCUM,
    V3_INTERPRETATION,
    Sent,
    bundle,
    expect_outcome,
    first_issue,
    get_json,
    location_id,
    new_accession,
    new_mrn,
    panel_bundle,
    patient_entry,
    post_bundle,
    report_entries,
    response_bundle,
    statuses,
    urn,
)


def test_transaction_bundle_is_stored_and_its_observations_found_with_interpretations(
    client: TestClient, db: Database
) -> None:
    answer = response_bundle(post_bundle(client, panel_bundle()))

    assert answer["type"] == "transaction-response"
    assert statuses(answer) == ["201 Created"] * 6
    patient_id = location_id(answer, 0)
    assert db.count("panel") == 1
    assert db.count("result") == 4

    found = get_json(client, f"/fhir/R4/Observation?patient=Patient/{patient_id}")
    assert found["type"] == "searchset"
    assert found["total"] == 4
    by_code: dict[str, dict[str, Any]] = {}
    for entry in found["entry"]:
        obs = entry["resource"]
        Observation.model_validate(obs)
        by_code[obs["code"]["coding"][0]["code"]] = obs
        assert obs["subject"] == {"reference": f"Patient/{patient_id}"}
        assert obs["effectiveDateTime"].startswith("2026-11-20")
    magnesium = by_code["2601-3"]
    assert magnesium["valueQuantity"] == {
        "value": 0.62,
        "unit": "mmol/L",
        "system": UCUM,
        "code": "mmol/L",
    }
    ours, labs = magnesium["interpretation"]
    assert ours["coding"] == [{"system": V3_INTERPRETATION, "code": "L", "display": "Low"}]
    assert ours["extension"][0]["valueCode"] == "service"
    assert labs["coding"] == [{"system": V3_INTERPRETATION, "code": "L"}]
    assert labs["extension"][0]["valueCode"] == "lab"
    our_range, lab_range = magnesium["referenceRange"]
    assert our_range["low"]["code"] == "mmol/L"
    assert our_range["type"]["coding"][0]["code"] == "normal"
    assert lab_range["text"] == "0.70-1.00"
    assert (lab_range["low"]["value"], lab_range["high"]["value"]) == (0.7, 1.0)
    # Calcium was sent in mg/dL under 17861-6: served so, the canonical value in an extension.
    calcium = by_code["17861-6"]
    assert (calcium["valueQuantity"]["value"], calcium["valueQuantity"]["code"]) == (9.1, "mg/dL")
    canonical = calcium["extension"][0]["valueQuantity"]
    assert (canonical["value"], canonical["code"]) == (2.27, "mmol/L")
    assert calcium["interpretation"][0]["coding"][0]["code"] in {"L", "N", "H"}


def test_posting_the_same_transaction_again_stores_nothing_new(
    client: TestClient, db: Database
) -> None:
    body = panel_bundle()
    first = response_bundle(post_bundle(client, body))
    stored = db.counts()

    again = response_bundle(post_bundle(client, body))

    assert db.counts() == stored
    assert statuses(again) == ["200 OK"] * 6
    assert [e["response"]["location"] for e in again["entry"]] == [
        e["response"]["location"] for e in first["entry"]
    ]


def test_if_none_exist_creates_finds_or_refuses_as_fhir_specifies(
    client: TestClient, db: Database
) -> None:
    mrn = new_mrn()
    criterion = f"identifier={MRN_SYSTEM}|{mrn}"

    created = response_bundle(
        post_bundle(client, bundle([patient_entry(urn(), mrn=mrn, if_none_exist=criterion)]))
    )
    found = response_bundle(
        post_bundle(client, bundle([patient_entry(urn(), mrn=mrn, if_none_exist=criterion)]))
    )

    assert statuses(created) == ["201 Created"]
    assert statuses(found) == ["200 OK"]
    assert location_id(created, 0) == location_id(found, 0)
    assert db.count("patient") == 1

    # The same value in two systems: a system-less criterion matches both.
    shared = new_mrn()
    client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": "urn:a", "value": shared}], "sex": "male"},
    ).raise_for_status()
    client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": "urn:b", "value": shared}], "sex": "male"},
    ).raise_for_status()
    ambiguous = bundle([patient_entry(urn(), mrn=new_mrn(), if_none_exist=f"identifier={shared}")])

    outcome = expect_outcome(post_bundle(client, ambiguous), 412)

    assert first_issue(outcome)["code"] == "multiple-matches"
    assert first_issue(outcome)["expression"] == ["Bundle.entry[0].request.ifNoneExist"]
    assert db.count("patient") == 3


def test_a_transaction_with_one_unknown_unit_stores_nothing_and_names_the_observation(
    client: TestClient, db: Database
) -> None:
    bad = (*MINERAL_PANEL[:3], Sent("5631-7", "95", "furlong/L"))
    before = db.counts()

    outcome = expect_outcome(post_bundle(client, panel_bundle(results=bad)), 422)

    assert db.counts() == before
    issue = first_issue(outcome)
    assert issue["severity"] == "error"
    assert "furlong/L" in issue["diagnostics"]
    # entry 0 Patient, 1 DiagnosticReport, 2..5 its Observations: the 4th is entry 5.
    assert issue["expression"] == ["Bundle.entry[5].resource.valueQuantity.code"]


def test_a_batch_with_one_bad_report_stores_the_good_entries(
    client: TestClient, db: Database
) -> None:
    patient_url = urn()
    good = report_entries(patient_url, MINERAL_PANEL, accession=new_accession())
    bad = report_entries(
        patient_url,
        (Sent("2601-3", "0.8", "mmol/L"), Sent("99999-9", "1", "mg/dL")),
        accession=new_accession(),
    )
    body = bundle([patient_entry(patient_url, mrn=new_mrn()), *good, *bad], kind="batch")

    answer = response_bundle(post_bundle(client, body))

    assert answer["type"] == "batch-response"
    assert statuses(answer)[:6] == ["201 Created"] * 6
    assert [s.split()[0] for s in statuses(answer)[6:]] == ["422"] * 3
    failed = answer["entry"][6]["response"]["outcome"]
    OperationOutcome.model_validate(failed)
    issue = first_issue(failed)
    assert "99999-9" in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[8].resource.code"]
    assert db.count("patient") == 1
    assert db.count("panel") == 1
    assert db.count("result") == 4


def test_a_report_may_name_a_stored_patient_by_identifier(client: TestClient) -> None:
    patient = make_patient(client)
    identifier = patient["identifiers"][0]
    subject = f"Patient?identifier={identifier['system']}|{identifier['value']}"

    answer = response_bundle(
        post_bundle(client, bundle(report_entries(subject, accession=new_accession())))
    )

    report = get_json(client, f"/fhir/R4/DiagnosticReport/{location_id(answer, 0)}")
    assert report["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert len(report["result"]) == 4


def test_malformed_bundles_are_refused_with_400_operation_outcomes(
    client: TestClient, db: Database
) -> None:
    before = db.counts()
    not_json = expect_outcome(post_bundle(client, "{not json"), 400)
    not_bundle = expect_outcome(post_bundle(client, '{"resourceType": "Patient"}'), 400)
    invalid = expect_outcome(
        post_bundle(client, '{"resourceType": "Bundle", "type": "transaction", "bogus": 1}'), 400
    )
    wrong_type = expect_outcome(
        post_bundle(client, '{"resourceType": "Bundle", "type": "collection"}'), 400
    )
    assert first_issue(not_json)["code"] == "structure"
    assert first_issue(not_bundle)["code"] == "structure"
    assert first_issue(invalid)["expression"] == ["Bundle.bogus"]
    assert first_issue(wrong_type)["expression"] == ["Bundle.type"]
    assert db.counts() == before
