"""The lab's data is what comes back: the code it sent, the value and unit as reported, the
canonical value in a documented extension (rounded to the reported significant figures), and
no LOINC whose property contradicts the unit."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.builders import make_patient, post_panel, result, result_for
from tests.interop.fhir.builders import (
    LOINC,
    UCUM,
    Sent,
    get_json,
    location_id,
    new_mrn,
    panel_bundle,
    post_bundle,
    response_bundle,
)
from tests.interop.fhir.test_independent_validation import _validate
from tests.interop.hl7.messages import next_id, obx, oru
from tests.interop.hl7.test_oru_route import post_er7

CANONICAL_VALUE = "https://mineral-labs.example/fhir/StructureDefinition/canonical-value"
ANALYTE_SYSTEM = "https://mineral-labs.example/fhir/CodeSystem/analyte"


def _fhir_panel(client: TestClient, *results: Sent) -> tuple[str, list[dict[str, Any]]]:
    """Posts a transaction Bundle; the patient id and its Observations (read one by one)."""
    answer = response_bundle(post_bundle(client, panel_bundle(mrn=new_mrn(), results=results)))
    patient_id = location_id(answer, 0)
    found = get_json(client, f"/fhir/R4/Observation?patient={patient_id}")
    ids = [entry["resource"]["id"] for entry in found["entry"]]
    return patient_id, [get_json(client, f"/fhir/R4/Observation/{i}") for i in ids]


def _loincs(obs: dict[str, Any]) -> list[str]:
    return [c["code"] for c in obs["code"]["coding"] if c["system"] == LOINC]


def _canonical(obs: dict[str, Any]) -> dict[str, Any]:
    [extension] = [e for e in obs["extension"] if e["url"] == CANONICAL_VALUE]
    quantity: dict[str, Any] = extension["valueQuantity"]
    return quantity


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {entry["resource"]["id"] for entry in bundle.get("entry", [])}


def test_calcium_posted_in_mg_per_dl_under_17861_6_reads_back_as_sent(
    client: TestClient,
) -> None:
    _, [calcium] = _fhir_panel(client, Sent("17861-6", "9.2", "mg/dL"))

    assert _loincs(calcium) == ["17861-6"]
    assert {"system": ANALYTE_SYSTEM, "code": "calcium"}.items() <= calcium["code"]["coding"][
        -1
    ].items()
    assert calcium["valueQuantity"] == {
        "value": 9.2,
        "unit": "mg/dL",
        "system": UCUM,
        "code": "mg/dL",
    }
    # 2.29552 mmol/L stored; shown at the reported 2 figures, at least 3: 2.30 (JSON 2.3).
    assert _canonical(calcium) == {"value": 2.3, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}
    # Our reference range is given in the unit of the value, so the two compare.
    ours = calcium["referenceRange"][0]
    assert ours["low"]["code"] == ours["high"]["code"] == "mg/dL"
    assert ours["low"]["value"] < 9.2 < ours["high"]["value"] * 1.5


def test_a_search_by_the_lab_code_or_any_code_of_the_analyte_finds_the_result(
    client: TestClient,
) -> None:
    patient_id, [calcium] = _fhir_panel(client, Sent("17861-6", "9.2", "mg/dL"))
    base = f"/fhir/R4/Observation?patient={patient_id}"

    for code in ("17861-6", f"{LOINC}|17861-6", "2000-8", f"{ANALYTE_SYSTEM}|calcium"):
        assert _ids(get_json(client, f"{base}&code={code}")) == {calcium["id"]}, code
    assert _ids(get_json(client, f"{base}&code=19123-9")) == set()


def test_zinc_in_umol_per_l_carries_no_mass_loinc(client: TestClient) -> None:
    # The lab sent its mass code on a molar value: that code is not emitted as a coding.
    _, [sent_by_fhir] = _fhir_panel(client, Sent("5763-8", "12", "umol/L"))
    patient = make_patient(client)
    panel = post_panel(client, patient, [result("zinc", "12", "umol/L")])
    native = result_for(panel, "zinc")
    read = get_json(client, f"/fhir/R4/Observation/{native['id']}")

    assert native["loinc"] is None
    for obs in (sent_by_fhir, read):
        assert _loincs(obs) == []
        assert [c["code"] for c in obs["code"]["coding"]] == ["zinc"]
        assert obs["valueQuantity"]["value"] == 12
        assert obs["valueQuantity"]["code"] == "umol/L"
    assert "5763-8" in sent_by_fhir["code"]["text"]


def test_zinc_in_ug_per_dl_keeps_its_mass_loinc(client: TestClient) -> None:
    _, [zinc] = _fhir_panel(client, Sent("5763-8", "78", "ug/dL"))

    assert _loincs(zinc) == ["5763-8"]
    assert _canonical(zinc)["value"] == 11.9  # 11.9302 umol/L at 3 figures
    assert zinc["code"]["text"] == "Zinc"


def test_iron_190_ug_per_dl_shows_34_0_umol_per_l_in_both_apis(client: TestClient) -> None:
    patient = make_patient(client)
    panel = post_panel(client, patient, [result("iron", "190", "ug/dL")])
    iron = result_for(panel, "iron")
    read = get_json(client, f"/fhir/R4/Observation/{iron['id']}")

    assert iron["canonical"]["value"] == 34.0227  # full precision kept for computation
    assert iron["canonical"]["display_value"] == "34.0"
    assert iron["loinc"] == "2498-4"
    assert _canonical(read)["value"] == 34.0
    assert read["valueQuantity"]["value"] == 190
    assert _loincs(read) == ["2498-4"]


def test_a_comparator_value_keeps_its_comparator_in_the_value_and_the_extension(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    panel = post_panel(client, patient, [result("zinc", ">120", "ug/dL")])
    read = get_json(client, f"/fhir/R4/Observation/{result_for(panel, 'zinc')['id']}")

    assert read["valueQuantity"]["comparator"] == ">"
    assert read["valueQuantity"]["value"] == 120
    assert _canonical(read) == {
        "value": 18.4,
        "comparator": ">",
        "unit": "umol/L",
        "system": UCUM,
        "code": "umol/L",
    }


def test_a_name_the_lab_sent_is_the_code_text_beside_the_fitting_loinc(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    panel = post_panel(client, patient, [result("CALCIUM, SERUM", "9.20", "mg/dL")])
    calcium = result_for(panel, "calcium")
    read = get_json(client, f"/fhir/R4/Observation/{calcium['id']}")

    assert read["code"]["text"] == "CALCIUM, SERUM"
    assert _loincs(read) == ["17861-6"]
    assert calcium["canonical"]["display_value"] == "2.30"  # 3 figures reported


def test_a_value_sent_by_hl7_is_served_in_its_unit_and_code(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru([obx("17861-6", "9.2", "mg/dL", text="Calcium")], mrn=mrn)
    assert post_er7(client, message).status_code == 200
    found = get_json(client, "/fhir/R4/Observation?code=17861-6")
    [calcium] = [e["resource"] for e in found["entry"]]

    assert _loincs(calcium) == ["17861-6"]
    assert calcium["valueQuantity"]["code"] == "mg/dL"
    assert _canonical(calcium)["value"] == 2.3


def test_what_fidelity_emits_passes_medplums_validator(client: TestClient) -> None:
    _, observations = _fhir_panel(
        client,
        Sent("17861-6", "9.2", "mg/dL"),
        Sent("5763-8", "12", "umol/L"),
        Sent("2498-4", "190", "ug/dL", comparator=">"),
    )
    assert [v for v in _validate(observations) if v["errors"]] == []
