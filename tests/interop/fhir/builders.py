"""FHIR Bundles built with the fhir.resources models (as a FHIR client would), and checks."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from httpx import Response

from tests.builders import MRN_SYSTEM

FHIR_JSON = "application/fhir+json"
LAB_SYSTEM = "urn:oid:2.16.840.1.113883.3.1234.accession"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_counter = itertools.count(1)


@dataclass(frozen=True)
class Sent:
    """One result as the lab sends it."""

    loinc: str
    value: str
    unit: str
    comparator: str | None = None
    range_text: str | None = None
    flag: str | None = None


# A mineral panel: the same values the native JSON test posts.
MINERAL_PANEL = (
    Sent("2601-3", "0.62", "mmol/L", range_text="0.70-1.00", flag="L"),
    Sent("17861-6", "9.1", "mg/dL"),
    Sent("5763-8", "58", "ug/dL"),
    Sent("5631-7", "95", "ug/dL"),
)


def new_mrn() -> str:
    return f"FHIR-MRN-{next(_counter):06d}-{uuid.uuid4().hex[:6]}"


def new_accession() -> str:
    return f"FHIR-ACC-{next(_counter):06d}-{uuid.uuid4().hex[:6]}"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def observation(sent: Sent, subject: str) -> Observation:
    quantity: dict[str, Any] = {
        "value": Decimal(sent.value),
        "unit": sent.unit,
        "system": UCUM,
        "code": sent.unit,
    }
    if sent.comparator:
        quantity["comparator"] = sent.comparator
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": sent.loinc}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2026-11-20T08:00:00Z",
        "valueQuantity": quantity,
    }
    if sent.range_text:
        body["referenceRange"] = [{"text": sent.range_text}]
    if sent.flag:
        body["interpretation"] = [{"coding": [{"system": V3_INTERPRETATION, "code": sent.flag}]}]
    return Observation.model_validate(body)


def patient_entry(
    full_url: str, *, mrn: str, sex: str = "female", if_none_exist: str | None = None
) -> BundleEntry:
    request: dict[str, Any] = {"method": "POST", "url": "Patient"}
    if if_none_exist is not None:
        request["ifNoneExist"] = if_none_exist
    return BundleEntry(
        fullUrl=full_url,
        resource=Patient.model_validate(
            {
                "resourceType": "Patient",
                "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
                "gender": sex,
                "birthDate": "1981-04-12",
            }
        ),
        request=BundleEntryRequest(**request),
    )


def report_entries(
    subject: str,
    results: tuple[Sent, ...] = MINERAL_PANEL,
    *,
    accession: str,
    collected_at: str = "2026-11-20T08:00:00Z",
) -> list[BundleEntry]:
    urls = [urn() for _ in results]
    report = DiagnosticReport.model_validate(
        {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": LAB_SYSTEM, "value": accession}],
            "status": "final",
            "code": {"text": "Mineral panel"},
            "subject": {"reference": subject},
            "effectiveDateTime": collected_at,
            "performer": [{"display": "Acme Reference Lab"}],
            "result": [{"reference": url} for url in urls],
        }
    )
    entries = [
        BundleEntry(
            fullUrl=urn(),
            resource=report,
            request=BundleEntryRequest(method="POST", url="DiagnosticReport"),
        )
    ]
    entries += [
        BundleEntry(
            fullUrl=url,
            resource=observation(sent, subject),
            request=BundleEntryRequest(method="POST", url="Observation"),
        )
        for url, sent in zip(urls, results, strict=True)
    ]
    return entries


def bundle(entries: list[BundleEntry], kind: str = "transaction") -> str:
    return Bundle(type=kind, entry=entries).model_dump_json()


def panel_bundle(
    *,
    mrn: str | None = None,
    accession: str | None = None,
    results: tuple[Sent, ...] = MINERAL_PANEL,
    kind: str = "transaction",
    sex: str = "female",
) -> str:
    """Patient (ifNoneExist on its MRN) + DiagnosticReport + Observations, urn:uuid linked."""
    mrn = mrn or new_mrn()
    patient_url = urn()
    entries = [
        patient_entry(patient_url, mrn=mrn, sex=sex, if_none_exist=f"identifier={MRN_SYSTEM}|{mrn}")
    ]
    entries += report_entries(patient_url, results, accession=accession or new_accession())
    return bundle(entries, kind)


def post_bundle(client: TestClient, body: str, **kwargs: Any) -> Response:
    headers = {"Content-Type": FHIR_JSON, **kwargs.pop("headers", {})}
    response: Response = client.post("/fhir/R4", content=body, headers=headers, **kwargs)
    return response


def fhir_json(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    return body


def response_bundle(response: Response) -> dict[str, Any]:
    """A transaction-/batch-response Bundle, validated by the model library, as JSON."""
    body = fhir_json(response, 200)
    Bundle.model_validate(body)
    return body


def expect_outcome(response: Response, status: int) -> dict[str, Any]:
    """An OperationOutcome (validated by the model library) with this HTTP status, as JSON."""
    body = fhir_json(response, status)
    OperationOutcome.model_validate(body)
    assert body["issue"]
    return body


def first_issue(outcome: dict[str, Any]) -> dict[str, Any]:
    issue: dict[str, Any] = outcome["issue"][0]
    return issue


def statuses(answer: dict[str, Any]) -> list[str]:
    return [entry["response"]["status"] for entry in answer.get("entry", [])]


def location_id(answer: dict[str, Any], index: int) -> str:
    location: str = answer["entry"][index]["response"]["location"]
    return location.split("/")[1]


def get_json(client: TestClient, url: str, **kwargs: Any) -> dict[str, Any]:
    return fhir_json(client.get(url, **kwargs), 200)
