"""CapabilityStatement and ObservationDefinition: valid documents that claim only the truth."""

from __future__ import annotations

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.observationdefinition import ObservationDefinition

from tests.interop.fhir.builders import expect_outcome, get_json


def test_capability_statement_validates_and_claims_only_what_is_implemented(
    client: TestClient,
) -> None:
    body = get_json(client, "/fhir/R4/metadata", auth=None)
    CapabilityStatement.model_validate(body)

    assert body["fhirVersion"] == "4.0.1"
    assert body["kind"] == "instance"
    (rest,) = body["rest"]
    claimed = {
        resource["type"]: sorted(i["code"] for i in resource["interaction"])
        for resource in rest["resource"]
    }
    assert claimed == {
        "Patient": ["read", "search-type"],
        "Observation": ["read", "search-type"],
        "DiagnosticReport": ["read", "search-type"],
        "CarePlan": ["read", "search-type"],
        "ObservationDefinition": ["search-type"],
    }
    assert sorted(i["code"] for i in rest["interaction"]) == ["batch", "transaction"]
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    # Exactly what the search parser applies (one table drives both; issue 12).
    assert sorted(p["name"] for p in observation["searchParam"]) == [
        "_count",
        "_id",
        "_summary",
        "_total",
        "code",
        "date",
        "patient",
        "patient._id",
        "status",
        "subject",
    ]


def test_observation_definitions_validate_and_cover_the_active_ranges(client: TestClient) -> None:
    found = get_json(client, "/fhir/R4/ObservationDefinition")
    Bundle.model_validate(found)

    definitions = [entry["resource"] for entry in found["entry"]]
    for definition in definitions:
        ObservationDefinition.model_validate(definition)
    assert found["total"] == len(definitions) > 0
    magnesium = next(d for d in definitions if d["id"] == "magnesium")
    assert magnesium["code"]["coding"][0]["system"] == "http://loinc.org"
    assert magnesium["permittedDataType"] == ["Quantity"]
    categories = {i["category"] for i in magnesium["qualifiedInterval"]}
    assert {"reference", "critical"} <= categories
    reference = next(i for i in magnesium["qualifiedInterval"] if i["category"] == "reference")
    low, high = reference["range"]["low"], reference["range"]["high"]
    assert (low["system"], low["code"]) == ("http://unitsofmeasure.org", "mmol/L")
    assert low["value"] < high["value"]
    intervals = [i for d in definitions for i in d["qualifiedInterval"]]
    assert any(i.get("gender") in ("female", "male") for i in intervals)
    assert any(i.get("age", {}).get("low", {}).get("code") == "a" for i in intervals)


def test_observation_definitions_need_credentials(client: TestClient) -> None:
    expect_outcome(client.get("/fhir/R4/ObservationDefinition", auth=None), 401)
