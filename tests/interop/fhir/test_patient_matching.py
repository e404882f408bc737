"""FHIR Patient matching: `ifNoneExist` and the Patient's identifiers count only as matching keys
(never an SSN or a placeholder); a match whose recorded gender or birthDate contradicts the
Patient resource is a 409 OperationOutcome naming the fields, and nothing is stored."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import BundleEntry, BundleEntryRequest
from fhir.resources.R4B.patient import Patient

from tests.audit.builders import rows_for
from tests.builders import MRN_SYSTEM
from tests.conftest import Database
from tests.interop.fhir.builders import (
    Sent,
    bundle,
    expect_outcome,
    get_json,
    location_id,
    new_accession,
    new_mrn,
    post_bundle,
    report_entries,
    response_bundle,
    statuses,
    urn,
)

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
SHARED_SSN = "524-71-9936"  # not a placeholder: the SS type alone keeps it out
CRITICAL_MAGNESIUM = (Sent("2601-3", "0.30", "mmol/L"),)


def identifier(system: str, value: str, kind: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"system": system, "value": value}
    if kind is not None:
        body["type"] = {"coding": [{"system": V2_0203, "code": kind}]}
    return body


def patient_panel(
    identifiers: list[dict[str, Any]],
    *,
    if_none_exist: str | None,
    gender: str = "female",
    birth_date: str | None = "1980-03-02",
    kind: str = "transaction",
) -> str:
    """A Patient entry (conditional create) and a panel of critical magnesium for it."""
    patient_url = urn()
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": identifiers,
        "gender": gender,
    }
    if birth_date is not None:
        resource["birthDate"] = birth_date
    request: dict[str, Any] = {"method": "POST", "url": "Patient"}
    if if_none_exist is not None:
        request["ifNoneExist"] = if_none_exist
    entries = [
        BundleEntry(
            fullUrl=patient_url,
            resource=Patient.model_validate(resource),
            request=BundleEntryRequest(**request),
        ),
        *report_entries(patient_url, CRITICAL_MAGNESIUM, accession=new_accession()),
    ]
    return bundle(entries, kind)


def register(client: TestClient, identifiers: list[dict[str, str]], **fields: str) -> str:
    response = client.post("/api/v1/patients", json={"identifiers": identifiers, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def panels_of(client: TestClient, patient_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/patients/{patient_id}/panels")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def expressions(outcome: dict[str, Any]) -> list[str]:
    return [e for issue in outcome["issue"] for e in issue.get("expression", [])]


def test_a_new_mrn_with_another_patients_ssn_creates_a_new_patient(
    client: TestClient, db: Database
) -> None:
    her = register(
        client,
        [{"system": MRN_SYSTEM, "value": new_mrn()}, {"system": US_SSN, "value": SHARED_SSN}],
        sex="female",
        birth_date="1980-03-02",
    )
    his_mrn = new_mrn()
    body = patient_panel(
        [identifier(MRN_SYSTEM, his_mrn, "MR"), identifier(US_SSN, SHARED_SSN, "SS")],
        if_none_exist=f"identifier={MRN_SYSTEM}|{his_mrn}",
        gender="male",
        birth_date="2000-01-01",
    )

    answer = response_bundle(post_bundle(client, body))

    assert statuses(answer)[0] == "201 Created"
    him = location_id(answer, 0)
    assert him != her
    assert panels_of(client, her) == []
    assert len(panels_of(client, him)) == 1
    # Only the matching key is kept: the SSN is neither matched on nor stored.
    patient = get_json(client, f"/fhir/R4/Patient/{him}")
    assert [i["value"] for i in patient["identifier"]] == [his_mrn]


def test_an_ifnoneexist_match_with_another_gender_and_birth_date_is_409_and_stores_nothing(
    client: TestClient, db: Database
) -> None:
    mrn = new_mrn()
    her = register(
        client, [{"system": MRN_SYSTEM, "value": mrn}], sex="female", birth_date="1980-03-02"
    )
    before = db.counts()
    body = patient_panel(
        [identifier(MRN_SYSTEM, mrn, "MR")],
        if_none_exist=f"identifier={MRN_SYSTEM}|{mrn}",
        gender="male",
        birth_date="2000-01-01",
    )

    request_id = f"fhir-{uuid.uuid4().hex}"

    outcome = expect_outcome(post_bundle(client, body, headers={"X-Request-ID": request_id}), 409)

    assert expressions(outcome) == [
        "Bundle.entry[0].resource.gender",
        "Bundle.entry[0].resource.birthDate",
    ]
    assert {issue["code"] for issue in outcome["issue"]} == {"conflict"}
    assert "Patient.gender" in outcome["issue"][0]["diagnostics"]
    assert db.counts() == before
    assert panels_of(client, her) == []
    [row] = db.in_session(lambda session: rows_for(session, request_id=request_id))
    assert (row["outcome"], row["status_code"]) == ("error", 409)


def test_a_batch_refuses_only_the_contradicting_patient_and_its_report(
    client: TestClient, db: Database
) -> None:
    mrn = new_mrn()
    register(client, [{"system": MRN_SYSTEM, "value": mrn}], sex="female", birth_date="1980-03-02")
    before = db.counts()
    body = patient_panel(
        [identifier(MRN_SYSTEM, mrn)],
        if_none_exist=f"identifier={MRN_SYSTEM}|{mrn}",
        birth_date="1980-03-03",
        kind="batch",
    )

    answer = response_bundle(post_bundle(client, body))

    assert statuses(answer)[0] == "409 Conflict"
    assert answer["entry"][0]["response"]["outcome"]["issue"][0]["expression"] == [
        "Bundle.entry[0].resource.birthDate"
    ]
    assert all(not s.startswith("20") for s in statuses(answer))
    assert db.counts() == before


def test_an_ifnoneexist_match_with_the_same_demographics_files_the_panel_under_it(
    client: TestClient, db: Database
) -> None:
    mrn = new_mrn()
    patient = register(
        client, [{"system": MRN_SYSTEM, "value": mrn}], sex="female", birth_date="1980-03-02"
    )
    body = patient_panel(
        [identifier(MRN_SYSTEM, mrn, "MR")],
        if_none_exist=f"identifier={MRN_SYSTEM}|{mrn}",
        gender="female",
        birth_date="1980-03-02",
    )

    answer = response_bundle(post_bundle(client, body))

    assert statuses(answer)[0] == "200 OK"
    assert location_id(answer, 0) == patient
    assert len(panels_of(client, patient)) == 1
    assert db.count("patient") == 1


def test_unknown_gender_or_missing_birth_date_is_not_a_contradiction(
    client: TestClient, db: Database
) -> None:
    mrn = new_mrn()
    patient = register(
        client, [{"system": MRN_SYSTEM, "value": mrn}], sex="female", birth_date="1980-03-02"
    )
    body = patient_panel(
        [identifier(MRN_SYSTEM, mrn)],
        if_none_exist=f"identifier={MRN_SYSTEM}|{mrn}",
        gender="unknown",
        birth_date=None,
    )

    assert statuses(response_bundle(post_bundle(client, body)))[0] == "200 OK"
    assert len(panels_of(client, patient)) == 1


def test_identifiers_naming_two_patients_are_refused(client: TestClient, db: Database) -> None:
    first, second = new_mrn(), new_mrn()
    one = register(client, [{"system": MRN_SYSTEM, "value": first}], sex="female")
    register(client, [{"system": "urn:test:other-hospital", "value": second}], sex="female")
    before = db.counts()
    body = patient_panel(
        [identifier(MRN_SYSTEM, first, "MR"), identifier("urn:test:other-hospital", second, "MR")],
        if_none_exist=f"identifier={MRN_SYSTEM}|{first}",
    )

    outcome = expect_outcome(post_bundle(client, body), 409)

    assert expressions(outcome) == [
        "Bundle.entry[0].resource.identifier[0]",
        "Bundle.entry[0].resource.identifier[1]",
    ]
    assert db.counts() == before
    assert panels_of(client, one) == []


def test_a_placeholder_or_ssn_never_matches_through_ifnoneexist(
    client: TestClient, db: Database
) -> None:
    register(client, [{"system": MRN_SYSTEM, "value": "UNKNOWN"}], sex="female")
    register(client, [{"system": US_SSN, "value": SHARED_SSN}], sex="female")
    before = db.counts()

    for criterion in (
        f"identifier={MRN_SYSTEM}|UNKNOWN",
        "identifier=unknown",
        f"identifier={US_SSN}|{SHARED_SSN}",
    ):
        body = patient_panel([identifier(MRN_SYSTEM, new_mrn())], if_none_exist=criterion)
        outcome = expect_outcome(post_bundle(client, body), 422)
        assert expressions(outcome) == ["Bundle.entry[0].request.ifNoneExist"], criterion

    # A system-less criterion never finds a patient through an SSN.
    mrn = new_mrn()
    body = patient_panel([identifier(MRN_SYSTEM, mrn)], if_none_exist=f"identifier={SHARED_SSN}")
    assert statuses(response_bundle(post_bundle(client, body)))[0] == "201 Created"
    assert db.count("patient") == before["patient"] + 1


def test_a_patient_with_only_an_ssn_or_placeholder_is_refused(
    client: TestClient, db: Database
) -> None:
    before = db.counts()
    for identifiers in (
        [identifier(US_SSN, "987-65-4320")],
        [identifier("urn:test:ssa", "987-65-4320", "SS")],
        [identifier(MRN_SYSTEM, "000-00-0000", "MR")],
        [identifier(MRN_SYSTEM, new_mrn(), "AN")],
    ):
        outcome = expect_outcome(
            post_bundle(client, patient_panel(identifiers, if_none_exist=None)), 422
        )
        assert expressions(outcome) == ["Bundle.entry[0].resource.identifier"]
    assert db.counts() == before


def test_a_report_naming_its_patient_by_placeholder_or_ssn_is_refused(
    client: TestClient, db: Database
) -> None:
    register(client, [{"system": US_SSN, "value": SHARED_SSN}], sex="female")
    register(client, [{"system": MRN_SYSTEM, "value": "999999999"}], sex="female")
    before = db.counts()

    for subject in (
        f"Patient?identifier={US_SSN}|{SHARED_SSN}",
        f"Patient?identifier={MRN_SYSTEM}|999999999",
    ):
        body = bundle(report_entries(subject, CRITICAL_MAGNESIUM, accession=new_accession()))
        outcome = expect_outcome(post_bundle(client, body), 422)
        assert expressions(outcome) == ["Bundle.entry[0].resource.subject"], subject

    assert db.counts() == before
