"""Issue 10 over HL7 v2: a critical value is surfaced whatever PID lacks, the lab's OBX-8
critical flag counts, and non-ASCII digits in OBX-5 are refused (AE, nothing stored)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.interop.hl7.messages import next_id, obx, oru
from tests.interop.hl7.test_oru_route import ack_code, panels_of, patient_by_mrn, post_er7


def test_a_critical_calcium_for_a_patient_with_no_birth_date_is_critical(
    client: TestClient,
) -> None:
    mrn = next_id("MRN")
    message = oru([obx("17861-6", "14.5", "mg/dL", text="Calcium")], mrn=mrn, birth_date="")
    response = post_er7(client, message)
    assert ack_code(response) == "AA", response.text

    [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    assert panel["has_critical"] is True
    calcium = panel["results"][0]["interpretation"]
    assert (calcium["code"], calcium["critical"]) == ("HH", True)


def test_the_labs_ll_flag_in_obx_8_makes_a_normal_value_critical(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru([obx("19123-9", "1.8", "mg/dL", text="Magnesium", flag="LL")], mrn=mrn)
    response = post_er7(client, message)
    assert ack_code(response) == "AA", response.text

    [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    magnesium = panel["results"][0]
    assert magnesium["interpretation"]["code"] == "N"
    assert magnesium["interpretation"]["critical"] is True
    assert "treated as critical" in magnesium["lab"]["disagreement"]


def test_an_arabic_indic_digit_in_obx_5_is_refused(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru([obx("2601-3", "\u0663", "mmol/L", text="Magnesium")], mrn=mrn)
    response = post_er7(client, message)
    assert ack_code(response) in ("AE", "AR"), response.text
    assert "non-ASCII digits" in response.text
