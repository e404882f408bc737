"""POST /fhir/R4 with Bundles shaped as EHRs send them: valueString, dataAbsentReason,
component panels, effectivePeriod, reports without identifier, ranges in another unit,
conditional create with several criteria, conditional update, per-entry batch outcomes."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

from tests.builders import MRN_SYSTEM
from tests.conftest import Database
from tests.interop.fhir.builders import (
    LAB_SYSTEM,
    LOINC,
    UCUM,
    expect_outcome,
    fhir_json,
    first_issue,
    location_id,
    new_accession,
    new_mrn,
    post_bundle,
    response_bundle,
    statuses,
    urn,
)

DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"


def quantity(value: str, unit: str) -> dict[str, Any]:
    return {"value": Decimal(value), "unit": unit, "system": UCUM, "code": unit}


def obs(loinc: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Observation", "status": "final", **fields}
    if loinc is not None:
        body["code"] = {"coding": [{"system": LOINC, "code": loinc}]}
    body.setdefault("effectiveDateTime", "2026-11-20T08:00:00Z")
    return body


def patient(mrn: str, **request: Any) -> dict[str, Any]:
    return {
        "fullUrl": urn(),
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
            "gender": "female",
            "birthDate": "1981-04-12",
        },
        "request": request or {"method": "POST", "url": "Patient"},
    }


def ehr_bundle(
    observations: list[dict[str, Any]],
    *,
    mrn: str | None = None,
    kind: str = "transaction",
    report: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """Patient + DiagnosticReport + these Observations (entries 0, 1, 2...), as a dict."""
    mrn = mrn or new_mrn()
    subject = patient(
        mrn, method="POST", url="Patient", ifNoneExist=f"identifier={MRN_SYSTEM}|{mrn}"
    )
    urls = [urn() for _ in observations]
    report_body: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": LAB_SYSTEM, "value": new_accession()}],
        "status": "final",
        "code": {"text": "Mineral panel"},
        "subject": {"reference": subject["fullUrl"]},
        "effectiveDateTime": "2026-11-20T08:00:00Z",
        "result": [{"reference": url} for url in urls],
        **(report or {}),
    }
    report_body = {k: v for k, v in report_body.items() if v is not None}
    entries = [
        subject,
        {
            "fullUrl": urn(),
            "resource": report_body,
            "request": {"method": "POST", "url": "DiagnosticReport"},
        },
    ]
    for url, body in zip(urls, observations, strict=True):
        body = {**body, "subject": {"reference": subject["fullUrl"]}}
        entries.append(
            {"fullUrl": url, "resource": body, "request": {"method": "POST", "url": "Observation"}}
        )
    return {"resourceType": "Bundle", "type": kind, "entry": entries}, mrn


def send(client: TestClient, body: dict[str, Any]) -> Any:
    return post_bundle(client, _json(body))


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, default=str)


def stored(db: Database) -> dict[str, int]:
    """Row counts of what a Bundle stores (a refused one may be kept as a refused input)."""
    return {k: v for k, v in db.counts().items() if k != "refused_input"}


def stored_panel(client: TestClient, answer: dict[str, Any]) -> dict[str, Any]:
    response = client.get(f"/api/v1/panels/{location_id(answer, 1)}")
    assert response.status_code == 200, response.text
    panel: dict[str, Any] = response.json()
    return panel


def by_analyte(panel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["analyte"]: r for r in panel["results"]}


def test_value_string_with_a_comparator_or_a_plain_number_is_stored_as_a_result(
    client: TestClient,
) -> None:
    body, _ = ehr_bundle(
        [
            # Unit from the lab's range, as EHRs that send text values do.
            obs(
                "2601-3",
                valueString="<0.5",
                referenceRange=[{"low": quantity("0.70", "mmol/L")}],
            ),
            obs("5763-8", valueString="58 ug/dL"),
            obs("5631-7", valueString="> 300 ug/dL"),
        ]
    )

    answer = response_bundle(send(client, body))

    assert statuses(answer) == ["201 Created"] * 5
    results = by_analyte(stored_panel(client, answer))
    magnesium = results["magnesium"]["reported"]
    assert (magnesium["text"], magnesium["comparator"], magnesium["unit"]) == (
        "<0.5",
        "<",
        "mmol/L",
    )
    assert Decimal(str(magnesium["value"])) == Decimal("0.5")
    assert results["zinc"]["reported"]["text"] == "58"
    assert results["zinc"]["reported"]["unit"] == "ug/dL"
    assert results["copper"]["reported"]["text"] == ">300"


def test_a_value_string_that_is_not_a_number_or_has_no_unit_names_value_string(
    client: TestClient, db: Database
) -> None:
    before = stored(db)
    body, _ = ehr_bundle([obs("2601-3", valueString="see note"), obs("5763-8", valueString="58")])

    outcome = expect_outcome(send(client, body), 422)

    assert stored(db) == before
    expressions = [i["expression"] for i in outcome["issue"]]
    assert expressions == [
        ["Bundle.entry[2].resource.valueString"],
        ["Bundle.entry[3].resource.valueString"],
    ]
    assert "'<0.5 mg/L'" in outcome["issue"][0]["diagnostics"]
    assert "no unit" in outcome["issue"][1]["diagnostics"]


def test_an_observation_with_data_absent_reason_is_not_stored_and_never_blocks_the_others(
    client: TestClient, db: Database
) -> None:
    absent = obs(
        "5631-7",
        dataAbsentReason={"coding": [{"system": DATA_ABSENT, "code": "not-performed"}]},
    )
    body, _ = ehr_bundle([obs("2601-3", valueQuantity=quantity("0.82", "mmol/L")), absent])

    answer = response_bundle(send(client, body))

    assert statuses(answer) == ["201 Created", "201 Created", "201 Created", "200 OK"]
    assert db.count("result") == 1
    assert set(by_analyte(stored_panel(client, answer))) == {"magnesium"}
    note = answer["entry"][3]["response"]
    assert "location" not in note
    issue = first_issue(note["outcome"])
    assert issue["severity"] == "warning"
    assert issue["expression"] == ["Bundle.entry[3].resource.dataAbsentReason"]
    assert "not stored" in issue["diagnostics"].lower()
    assert "no value" in issue["diagnostics"]


def test_a_component_panel_stores_one_result_per_known_component(client: TestClient) -> None:
    panel_obs = obs(
        None,
        code={"text": "Mineral panel"},
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "2601-3"}]},
                "valueQuantity": quantity("0.62", "mmol/L"),
                "referenceRange": [
                    {"low": quantity("0.70", "mmol/L"), "high": quantity("1.00", "mmol/L")}
                ],
                "interpretation": [{"coding": [{"code": "L"}]}],
            },
            {"code": {"coding": [{"system": LOINC, "code": "5763-8"}]}, "valueString": "58 ug/dL"},
        ],
    )
    body, _ = ehr_bundle([panel_obs])

    answer = response_bundle(send(client, body))

    assert statuses(answer) == ["201 Created"] * 3
    results = by_analyte(stored_panel(client, answer))
    assert set(results) == {"magnesium", "zinc"}
    assert results["magnesium"]["reported"]["text"] == "0.62"
    assert results["magnesium"]["lab"]["flag"] == "L"
    assert Decimal(str(results["magnesium"]["lab"]["low"])) == Decimal("0.70")
    assert results["zinc"]["reported"]["text"] == "58"
    entry = answer["entry"][2]["response"]
    assert entry["location"] == f"Observation/{results['magnesium']['id']}"
    listed = first_issue(entry["outcome"])
    assert listed["severity"] == "information"
    assert results["zinc"]["id"] in listed["diagnostics"]


def test_an_unknown_component_code_is_named_with_what_would_be_accepted(
    client: TestClient, db: Database
) -> None:
    before = stored(db)
    panel_obs = obs(
        None,
        code={"text": "Panel"},
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "2601-3"}]},
                "valueQuantity": quantity("0.8", "mmol/L"),
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "2345-7"}]},
                "valueQuantity": quantity("90", "mg/dL"),
            },
        ],
    )
    body, _ = ehr_bundle([panel_obs])

    outcome = expect_outcome(send(client, body), 422)

    assert stored(db) == before
    issue = first_issue(outcome)
    assert issue["expression"] == ["Bundle.entry[2].resource.component[1].code"]
    assert "2345-7" in issue["diagnostics"]
    assert "magnesium (LOINC" in issue["diagnostics"]


def test_effective_period_start_is_the_collection_time_not_issued(client: TestClient) -> None:
    period = {"start": "2026-11-19T09:15:00+01:00", "end": "2026-11-19T09:20:00+01:00"}
    body, _ = ehr_bundle(
        [
            obs(
                "2601-3",
                valueQuantity=quantity("0.82", "mmol/L"),
                effectiveDateTime=None,
                effectivePeriod=period,
            )
        ],
        report={"effectiveDateTime": None, "issued": "2026-11-20T07:15:00Z"},
    )
    for entry in body["entry"][2:]:
        entry["resource"].pop("effectiveDateTime", None)

    answer = response_bundle(send(client, body))

    collected = datetime.fromisoformat(stored_panel(client, answer)["collected_at"])
    assert collected == datetime(2026, 11, 19, 8, 15, tzinfo=UTC)


def test_a_report_without_identifier_is_keyed_by_its_id_and_time_so_a_resend_is_a_no_op(
    client: TestClient, db: Database
) -> None:
    body, _ = ehr_bundle(
        [obs("2601-3", valueQuantity=quantity("0.82", "mmol/L"))],
        report={"identifier": None, "id": "rpt-4711", "meta": {"source": "urn:ehr:epic-prod"}},
    )

    first = response_bundle(send(client, body))
    after_first = db.counts()
    again = response_bundle(send(client, copy.deepcopy(body)))

    assert statuses(first)[1:] == ["201 Created"] * 2
    assert statuses(again)[1:] == ["200 OK"] * 2
    assert db.counts() == after_first
    panel = stored_panel(client, first)
    assert panel["source"] == "urn:ehr:epic-prod"
    assert panel["accession"] == "rpt-4711@2026-11-20T08:00:00+00:00"

    # Without any sender named and without a resource id: the entry's fullUrl.
    bare, _ = ehr_bundle(
        [obs("2601-3", valueQuantity=quantity("0.9", "mmol/L"))], report={"identifier": None}
    )
    answer = response_bundle(send(client, bare))
    assert stored_panel(client, answer)["accession"].startswith(bare["entry"][1]["fullUrl"] + "@")


def test_a_reference_range_in_another_unit_is_converted_to_the_values_unit(
    client: TestClient,
) -> None:
    ranged = obs(
        "2601-3",
        valueQuantity=quantity("0.62", "mmol/L"),
        referenceRange=[{"low": quantity("1.7", "mg/dL"), "high": quantity("2.2", "mg/dL")}],
    )
    body, _ = ehr_bundle([ranged])

    answer = response_bundle(send(client, body))

    lab = by_analyte(stored_panel(client, answer))["magnesium"]["lab"]
    # Magnesium 24.305 g/mol: 1.7 mg/dL = 0.699 mmol/L, 2.2 mg/dL = 0.905 mmol/L.
    assert abs(Decimal(str(lab["low"])) - Decimal("0.6994")) < Decimal("0.001")
    assert abs(Decimal(str(lab["high"])) - Decimal("0.9052")) < Decimal("0.001")


def test_a_range_in_a_unit_that_cannot_be_converted_names_the_bound(
    client: TestClient,
) -> None:
    ranged = obs(
        "2601-3",
        valueQuantity=quantity("0.62", "mmol/L"),
        referenceRange=[{"low": quantity("1.7", "furlong")}],
    )
    body, _ = ehr_bundle([ranged])

    issue = first_issue(expect_outcome(send(client, body), 422))

    assert issue["expression"] == ["Bundle.entry[2].resource.referenceRange[0].low.code"]
    assert "mmol/L" in issue["diagnostics"]


def test_if_none_exist_with_several_criteria_matches_only_when_all_agree(
    client: TestClient, db: Database
) -> None:
    mrn = new_mrn()
    created = response_bundle(
        send(client, {"resourceType": "Bundle", "type": "transaction", "entry": [patient(mrn)]})
    )
    criteria = (
        f"identifier={MRN_SYSTEM}|{mrn}&birthdate=1981-04-12&gender=female",
        f"identifier={MRN_SYSTEM}|{mrn}&identifier={mrn}",
    )
    for criterion in criteria:
        entry = patient(mrn, method="POST", url="Patient", ifNoneExist=criterion)
        answer = response_bundle(
            send(client, {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        )
        assert statuses(answer) == ["200 OK"], criterion
        assert location_id(answer, 0) == location_id(created, 0)
    assert db.count("patient") == 1

    unsupported = patient(mrn, method="POST", url="Patient", ifNoneExist=f"identifier={mrn}&name=x")
    issue = first_issue(
        expect_outcome(
            send(client, {"resourceType": "Bundle", "type": "transaction", "entry": [unsupported]}),
            400,
        )
    )
    assert issue["expression"] == ["Bundle.entry[0].request.ifNoneExist"]
    assert "'name'" in issue["diagnostics"]
    assert "birthdate" in issue["diagnostics"]


def test_put_patient_by_identifier_creates_then_matches_without_overwriting(
    client: TestClient, db: Database
) -> None:
    mrn = new_mrn()
    put = {"method": "PUT", "url": f"Patient?identifier={MRN_SYSTEM}|{mrn}"}

    first = response_bundle(
        send(
            client,
            {"resourceType": "Bundle", "type": "transaction", "entry": [patient(mrn, **put)]},
        )
    )
    again = response_bundle(
        send(
            client,
            {"resourceType": "Bundle", "type": "transaction", "entry": [patient(mrn, **put)]},
        )
    )

    assert statuses(first) == ["201 Created"]
    assert statuses(again) == ["200 OK"]
    assert location_id(first, 0) == location_id(again, 0)
    assert db.count("patient") == 1

    # A contradicting birth date is refused, never written over the registered one.
    changed = patient(mrn, **put)
    changed["resource"]["birthDate"] = "1990-01-01"
    outcome = expect_outcome(
        send(client, {"resourceType": "Bundle", "type": "transaction", "entry": [changed]}), 409
    )
    assert first_issue(outcome)["expression"] == ["Bundle.entry[0].resource.birthDate"]
    stored = fhir_json(client.get(f"/fhir/R4/Patient/{location_id(first, 0)}"), 200)
    assert stored["birthDate"] == "1981-04-12"


def test_put_observation_is_refused_with_what_to_send_instead(
    client: TestClient, db: Database
) -> None:
    before = stored(db)
    body, _ = ehr_bundle([obs("2601-3", valueQuantity=quantity("0.82", "mmol/L"))])
    body["entry"][2]["request"] = {"method": "PUT", "url": f"Observation?identifier={LAB_SYSTEM}|x"}

    outcome = expect_outcome(send(client, body), 422)

    assert stored(db) == before
    issue = first_issue(outcome)
    assert issue["expression"] == ["Bundle.entry[2].request.method"]
    assert "DiagnosticReport" in issue["diagnostics"]
    assert "POST" in issue["diagnostics"]


def test_a_batch_answers_each_failed_entry_with_its_own_outcome(
    client: TestClient, db: Database
) -> None:
    body, _ = ehr_bundle([obs("2601-3", valueQuantity=quantity("0.82", "mmol/L"))], kind="batch")
    bad, _ = ehr_bundle([obs("2601-3", valueString="pending")], kind="batch")
    body["entry"] += bad["entry"][1:]  # a second report for the same patient
    bad_report = body["entry"][3]["resource"]
    bad_report["subject"] = {"reference": body["entry"][0]["fullUrl"]}
    body["entry"][4]["resource"]["subject"] = {"reference": body["entry"][0]["fullUrl"]}

    answer = response_bundle(send(client, body))

    assert statuses(answer)[:3] == ["201 Created"] * 3
    assert [s.split()[0] for s in statuses(answer)[3:]] == ["422", "422"]
    failed = answer["entry"][4]["response"]["outcome"]
    assert first_issue(failed)["expression"] == ["Bundle.entry[4].resource.valueString"]
    assert db.count("result") == 1
