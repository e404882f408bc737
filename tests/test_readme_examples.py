"""The README's FHIR and HL7 examples (`docs/examples/`) work as written: posted byte for byte
as the curl commands send them, they are stored and read back with the values the lab sent."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


def _curl_targets() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"--data-binary @(docs/examples/[\w.-]+)", readme)


def test_the_readme_names_the_example_files() -> None:
    assert sorted(_curl_targets()) == [
        "docs/examples/fhir-transaction.json",
        "docs/examples/oru-r01.hl7",
    ]
    for target in _curl_targets():
        assert (ROOT / target).is_file(), target


def test_the_fhir_transaction_example_is_stored(client: TestClient) -> None:
    body = (EXAMPLES / "fhir-transaction.json").read_bytes()
    response = client.post(
        "/fhir/R4", content=body, headers={"content-type": "application/fhir+json"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"][:3] for e in answer["entry"]] == ["201"] * 4

    patients = client.get(
        "/api/v1/patients", params={"identifier": "urn:oid:2.16.840.1.113883.19.5|MRN-0077"}
    ).json()["items"]
    [patient] = patients
    assert patient["name"]["family"] == "Rivera"  # Patient.name kept on the new patient
    assert patient["name"]["given"] == ["Ana", "Lucia"]
    [panel] = client.get(f"/api/v1/patients/{patient['id']}/panels").json()["items"]
    reported = {r["analyte"]: r["reported"]["text"] for r in panel["results"]}
    assert reported == {"magnesium": "1.6", "calcium": "9.2"}
    assert json.loads(body)["entry"][1]["resource"]["effectiveDateTime"].startswith(
        panel["collected_at"][:16]
    )


def test_the_oru_example_is_acknowledged_aa_and_stored(client: TestClient) -> None:
    body = (EXAMPLES / "oru-r01.hl7").read_bytes()
    # Segments separated by CR, as curl sends the file.
    assert b"\r" in body
    assert b"\n" not in body
    response = client.post(
        "/api/v1/hl7/oru", content=body, headers={"content-type": "x-application/hl7-v2+er7"}
    )
    assert response.status_code == 200, response.text
    assert "MSA|AA|MSG-0501" in response.text

    patients = client.get(
        "/api/v1/patients", params={"identifier": "urn:oid:2.16.840.1.113883.19.5|MRN-0078"}
    ).json()["items"]
    [patient] = patients
    assert patient["name"]["family"] == "DOE"  # PID-5 kept on the new patient
    assert patient["name"]["given"] == ["JANE"]
    [panel] = client.get(f"/api/v1/patients/{patient['id']}/panels").json()["items"]
    interpretations = {r["analyte"]: r["interpretation"]["code"] for r in panel["results"]}
    assert interpretations == {"magnesium": "L", "calcium": "N"}
