"""POST /api/v1/hl7/oru: ORU^R01 messages in, ACKs out, stored exactly like JSON panels."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app.core.config import Settings
from tests.audit.builders import rows_for
from tests.builders import make_patient, post_panel, result, result_for
from tests.conftest import DEFAULT_ORGANIZATION, Database
from tests.interop.hl7.messages import (
    MRN_SYSTEM,
    acks,
    magnesium_mmol,
    next_id,
    obx,
    oru,
    segment,
)

URL = "/api/v1/hl7/oru"
ER7 = "x-application/hl7-v2+er7"


def post_er7(client: TestClient, body: str, **kwargs: Any) -> Response:
    headers = {"Content-Type": ER7, **kwargs.pop("headers", {})}
    response: Response = client.post(URL, content=body.encode(), headers=headers, **kwargs)
    return response


def ack_code(response: Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(ER7)
    return segment(response.text, "MSA")[1]


def patient_by_mrn(client: TestClient, mrn: str) -> dict[str, Any]:
    found = client.get("/api/v1/patients", params={"identifier": f"{MRN_SYSTEM}|{mrn}"})
    assert found.status_code == 200, found.text
    [patient] = found.json()["items"]
    return dict(patient)


def panels_of(client: TestClient, patient_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/patients/{patient_id}/panels")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_mmol_message_creates_the_patient_and_an_interpreted_panel(client: TestClient) -> None:
    mrn = next_id("MRN")
    response = post_er7(
        client, oru([magnesium_mmol("0.62", flag="L")], mrn=mrn, control_id="CTL-1", sex="M")
    )
    assert ack_code(response) == "AA"
    assert segment(response.text, "MSA")[2] == "CTL-1"
    assert segment(response.text, "MSH")[2:6] == ["MINERAL-LABS", "CLINIC", "LIS", "ACME-LAB"]
    patient = patient_by_mrn(client, mrn)
    assert (patient["sex"], patient["birth_date"]) == ("male", "1981-04-12")
    [panel] = panels_of(client, patient["id"])
    assert (panel["source"], panel["source_format"], panel["status"]) == (
        "LIS^ACME-LAB",
        "hl7v2",
        "final",
    )
    magnesium = result_for(panel, "magnesium")
    assert magnesium["reported"] == {
        "text": "0.62",
        "value": 0.62,
        "comparator": None,
        "unit": "mmol/L",
    }
    assert magnesium["interpretation"]["code"] == "L"
    assert magnesium["lab"]["flag"] == "L"
    assert magnesium["lab"]["range_text"] == "0.70-1.00"


def test_mg_dl_and_ug_dl_local_codes_are_converted(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru(
        [
            obx("MG", "1.9", "mg/dL", system="L"),
            obx("CA", "9.1", "mg/dL", system="L"),
            obx("ZN", "85", "ug/dL", system="L"),
            obx("CU", "100", "ug/dL", system="L"),
            obx("FE", "90", "ug/dL", system="L"),
            obx("FERR", "50", "ng/mL", system="L"),
        ],
        mrn=mrn,
    )
    assert ack_code(post_er7(client, message)) == "AA"
    [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    magnesium = result_for(panel, "magnesium")
    assert magnesium["canonical"]["unit"] == "mmol/L"
    assert magnesium["canonical"]["value"] == pytest.approx(0.7817, abs=0.001)
    assert magnesium["code_sent"] == "magnesium"
    zinc = result_for(panel, "zinc")
    assert (zinc["reported"]["unit"], zinc["canonical"]["unit"]) == ("ug/dL", "umol/L")
    assert zinc["canonical"]["value"] == pytest.approx(13.0, abs=0.05)
    assert {r["analyte"] for r in panel["results"]} == {
        "magnesium",
        "calcium",
        "zinc",
        "copper",
        "iron",
        "ferritin",
    }


def test_free_text_ranges_are_kept_and_parsed_where_possible(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru(
        [
            magnesium_mmol(range_text="0.70 - 1.00 mmol/L"),
            obx("ZN", "85", "ug/dL", system="L", range_text="see lab note"),
            obx("2276-4", "50", "ug/L", range_text="<300"),
        ],
        mrn=mrn,
    )
    assert ack_code(post_er7(client, message)) == "AA"
    [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    assert result_for(panel, "magnesium")["lab"]["low"] == 0.7
    assert result_for(panel, "magnesium")["lab"]["high"] == 1.0
    zinc_lab = result_for(panel, "zinc")["lab"]
    assert (zinc_lab["range_text"], zinc_lab["low"], zinc_lab["high"]) == (
        "see lab note",
        None,
        None,
    )
    assert result_for(panel, "ferritin")["lab"]["high"] == 300


def test_a_less_than_value_keeps_its_comparator(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru(
        [
            obx("ZN", "<^10", "ug/dL", value_type="SN", system="L"),
            obx("CU", "<5", "ug/dL", system="L"),
        ],
        mrn=mrn,
    )
    assert ack_code(post_er7(client, message)) == "AA"
    [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    zinc = result_for(panel, "zinc")
    assert (zinc["reported"]["text"], zinc["reported"]["comparator"]) == ("<10", "<")
    assert result_for(panel, "copper")["reported"]["comparator"] == "<"


def test_an_unknown_code_is_refused_ae_and_nothing_is_stored(
    client: TestClient, db: Database
) -> None:
    before = db.counts()
    message = oru([magnesium_mmol(), obx("XYZ", "1", "mg/dL", system="L")])
    response = post_er7(client, message)
    assert ack_code(response) == "AE"
    err = segment(response.text, "ERR")
    assert err[2] == "OBX^2^3^1"
    assert err[3].startswith("103^")
    assert "'XYZ'" in err[8]
    assert db.counts() == before


def test_an_unknown_unit_is_refused_ae_naming_the_obx(client: TestClient, db: Database) -> None:
    before = db.counts()
    response = post_er7(client, oru([magnesium_mmol(), obx("ZN", "85", "furlongs", system="L")]))
    assert ack_code(response) == "AE"
    err = segment(response.text, "ERR")
    assert err[2] == "OBX^2^6^1"
    assert "furlongs" in err[8]
    assert db.counts() == before


def test_a_malformed_segment_is_refused_and_nothing_is_stored(
    client: TestClient, db: Database
) -> None:
    before = db.counts()
    message = oru([magnesium_mmol()]).replace("PV1|1|O", "PV|1|O")
    response = post_er7(client, message)
    assert ack_code(response) == "AE"
    assert segment(response.text, "ERR")[3].startswith("100^")
    assert db.counts() == before


def test_a_truncated_message_is_refused_and_nothing_is_stored(
    client: TestClient, db: Database
) -> None:
    before = db.counts()
    message = oru([magnesium_mmol(), obx("ZN", "85", "ug/dL", system="L")])
    response = post_er7(client, message[: message.rindex("|85|") + 3])
    assert ack_code(response) == "AE"
    err = segment(response.text, "ERR")
    assert err[2] == "OBX^2^6^1"
    assert err[3].startswith("101^")
    assert db.counts() == before


def test_the_same_message_twice_stores_once(client: TestClient, db: Database) -> None:
    message = oru([magnesium_mmol()], control_id="RESEND-1")
    assert ack_code(post_er7(client, message)) == "AA"
    after_first = db.counts()
    assert after_first["panel"] == 1
    assert after_first["patient"] == 1
    assert ack_code(post_er7(client, message)) == "AA"
    assert db.counts() == after_first


def test_a_batch_acks_each_message_and_stores_only_the_good_one(
    client: TestClient, db: Database
) -> None:
    good = oru([magnesium_mmol()], control_id="B-GOOD", mrn=next_id("MRN"))
    bad = oru([obx("NOPE", "1", "mg/dL", system="L")], control_id="B-BAD", mrn=next_id("MRN"))
    body = f"FHS|^~\\&|LIS\rBHS|^~\\&|LIS\r{good}{bad}BTS|2\rFTS|1\r"
    response = post_er7(client, body)
    assert response.status_code == 200
    first, second = acks(response.text)
    assert segment(first, "MSA")[1:3] == ["AA", "B-GOOD"]
    assert segment(second, "MSA")[1:3] == ["AE", "B-BAD"]
    counts = db.counts()
    assert (counts["panel"], counts["patient"]) == (1, 1)


def test_consecutive_messages_without_envelope_are_each_acked(client: TestClient) -> None:
    body = oru([magnesium_mmol()]) + oru([magnesium_mmol()], version="2.3")
    codes = [segment(a, "MSA")[1] for a in acks(post_er7(client, body).text)]
    assert codes == ["AA", "AA"]


def test_a_message_that_is_not_oru_r01_is_rejected_ar(client: TestClient, db: Database) -> None:
    before = db.counts()
    response = post_er7(client, oru([magnesium_mmol()], message_type="ADT^A01"))
    assert ack_code(response) == "AR"
    assert segment(response.text, "ERR")[3].startswith("200^")
    assert ack_code(post_er7(client, "hello")) == "AR"
    assert db.counts() == before


def test_a_correction_updates_the_stored_result_and_keeps_its_history(
    client: TestClient, db: Database
) -> None:
    mrn, accession = next_id("MRN"), next_id("ACC")
    original = oru(
        [magnesium_mmol("0.62"), obx("ZN", "85", "ug/dL", system="L")], mrn=mrn, accession=accession
    )
    assert ack_code(post_er7(client, original)) == "AA"
    [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    magnesium_id = result_for(panel, "magnesium")["id"]

    correction = oru(
        [magnesium_mmol("0.82", status="C"), obx("ZN", "85", "ug/dL", system="L")],
        mrn=mrn,
        accession=accession,
        control_id="CORR-1",
    )
    assert ack_code(post_er7(client, correction)) == "AA"
    [corrected] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    assert corrected["id"] == panel["id"]
    assert corrected["status"] == "corrected"
    magnesium = result_for(corrected, "magnesium")
    assert magnesium["id"] == magnesium_id
    assert magnesium["reported"]["text"] == "0.82"
    assert magnesium["interpretation"]["code"] == "N"
    versions = client.get(f"/api/v1/panels/{panel['id']}/interpretations").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert "CORR-1" in versions[1]["reason"]
    assert db.counts()["result"] == 2

    assert ack_code(post_er7(client, correction)) == "AA"  # re-sent correction: no change
    assert len(client.get(f"/api/v1/panels/{panel['id']}/interpretations").json()) == 2
    # The original re-sent under its own control id is a duplicate: acknowledged as before, and
    # the correction stays.
    assert ack_code(post_er7(client, original)) == "AA"
    assert (
        result_for(panels_of(client, corrected["patient_id"])[0], "magnesium")["reported"]["text"]
        == "0.82"
    )
    # The superseded values as a new message (a new control id) are refused.
    stale = post_er7(
        client,
        oru(
            [magnesium_mmol("0.62"), obx("ZN", "85", "ug/dL", system="L")],
            mrn=mrn,
            accession=accession,
        ),
    )
    assert ack_code(stale) == "AE"
    assert segment(stale.text, "ERR")[3].startswith("205^")


def test_preliminary_results_are_stored_as_preliminary_then_finalised(
    client: TestClient,
) -> None:
    mrn, accession = next_id("MRN"), next_id("ACC")
    preliminary = oru([magnesium_mmol("0.62", status="P")], mrn=mrn, accession=accession)
    assert ack_code(post_er7(client, preliminary)) == "AA"
    patient_id = patient_by_mrn(client, mrn)["id"]
    assert panels_of(client, patient_id)[0]["status"] == "preliminary"
    final = oru([magnesium_mmol("0.64")], mrn=mrn, accession=accession)
    assert ack_code(post_er7(client, final)) == "AA"
    [panel] = panels_of(client, patient_id)
    assert panel["status"] == "final"
    assert result_for(panel, "magnesium")["reported"]["text"] == "0.64"


def test_a_registered_patient_is_found_by_pid_identifier(client: TestClient, db: Database) -> None:
    mrn = next_id("MRN")
    registered = client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": MRN_SYSTEM, "value": mrn}], "sex": "female"},
    ).json()
    assert ack_code(post_er7(client, oru([magnesium_mmol()], mrn=mrn))) == "AA"
    assert db.counts()["patient"] == 1
    assert len(panels_of(client, registered["id"])) == 1


def test_hl7_and_json_store_equal_results(client: TestClient) -> None:
    patient = make_patient(client, sex="female", mrn=next_id("MRN"))
    mrn = patient["identifiers"][0]["value"]
    json_panel = post_panel(
        client,
        patient,
        [
            result("magnesium", "0.62", "mmol/L", reference_range={"text": "0.70-1.00"}),
            result("zinc", "85", "ug/dL"),
        ],
        collected_at="2026-11-20T08:30:00Z",
    )
    message = oru(
        [magnesium_mmol("0.62"), obx("ZN", "85", "ug/dL", system="L")],
        mrn=mrn,
    ).replace(f"{mrn}^^^&urn:test:hl7-mrn&URI", f"{mrn}^^^&urn:test:mrn&URI")
    assert ack_code(post_er7(client, message)) == "AA"
    hl7_panel = next(p for p in panels_of(client, patient["id"]) if p["source_format"] == "hl7v2")

    def comparable(panel: dict[str, Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (
                r["analyte"],
                r["reported"]["text"],
                r["canonical"]["value"],
                r["canonical"]["unit"],
                r["interpretation"]["code"],
            )
            for r in panel["results"]
        )

    assert comparable(hl7_panel) == comparable(json_panel)
    assert hl7_panel["collected_at"] == json_panel["collected_at"]


def test_text_plain_is_accepted_and_other_media_types_are_415(client: TestClient) -> None:
    message = oru([magnesium_mmol()])
    plain = post_er7(client, message, headers={"Content-Type": "text/plain; charset=utf-8"})
    assert ack_code(plain) == "AA"
    refused = post_er7(client, message, headers={"Content-Type": "application/json"})
    assert refused.status_code == 415
    assert refused.headers["content-type"] == "application/problem+json"


def test_credentials_and_scope_are_required(
    client: TestClient, api_keys: dict[str, dict[str, str]]
) -> None:
    message = oru([magnesium_mmol()])
    assert post_er7(client, message, auth=None).status_code == 401
    clinician = {"X-API-Key": api_keys[DEFAULT_ORGANIZATION]["clinician"]}
    assert post_er7(client, message, headers=clinician).status_code == 403


def test_an_audit_row_names_the_stored_panel(client: TestClient, db: Database) -> None:
    mrn = next_id("MRN")
    request_id = f"hl7-{uuid.uuid4().hex}"
    response = post_er7(
        client, oru([magnesium_mmol()], mrn=mrn), headers={"X-Request-ID": request_id}
    )
    assert ack_code(response) == "AA"
    patient = patient_by_mrn(client, mrn)
    [panel] = panels_of(client, patient["id"])
    [row] = db.in_session(lambda session: rows_for(session, request_id=request_id))
    assert (row["action"], row["resource_type"], row["outcome"]) == ("create", "panel", "success")
    assert row["resource_id"] == panel["id"]
    assert str(row["patient_id"]) == patient["id"]
    assert row["path"] == URL


def test_each_obr_is_a_panel_and_one_bad_obr_refuses_the_whole_message(
    client: TestClient, db: Database
) -> None:
    mrn = next_id("MRN")
    message = oru([magnesium_mmol()], mrn=mrn, accession="ACC-OBR-1")
    second_order = "OBR|2|PL-2|ACC-OBR-2|MIN^Mineral panel^L|||20261121083000+0000\r"
    good = message + second_order + obx("ZN", "85", "ug/dL", system="L").replace("{n}", "1") + "\r"
    assert ack_code(post_er7(client, good)) == "AA"
    panels = panels_of(client, patient_by_mrn(client, mrn)["id"])
    assert sorted(p["accession"] for p in panels) == ["ACC-OBR-1", "ACC-OBR-2"]

    before = db.counts()
    bad = oru([magnesium_mmol()], mrn=next_id("MRN")) + second_order.replace("ACC-OBR-2", "X")
    bad += obx("ZN", "85", "furlongs", system="L").replace("{n}", "1") + "\r"
    response = post_er7(client, bad)
    assert ack_code(response) == "AE"
    # Refused by the ingestion of the second panel, after the first was written: the message's
    # savepoint takes the first panel (and the patient created for it) back.
    assert segment(response.text, "ERR")[2] == "OBX^2^6^1"
    assert db.counts() == before


def test_a_collection_time_in_the_future_is_refused_naming_obr7(
    client: TestClient, db: Database
) -> None:
    before = db.counts()
    response = post_er7(client, oru([magnesium_mmol()], collected="20991231235900+0000"))
    assert ack_code(response) == "AE"
    assert segment(response.text, "ERR")[2] == "OBR^1^7^1"
    assert db.counts() == before


def test_a_body_over_the_limit_is_413(client: TestClient, settings: Settings) -> None:
    observation = magnesium_mmol(text="x" * 200)
    observations = [observation] * (settings.max_body_bytes // len(observation) + 1)
    body = oru(observations)
    assert len(body.encode()) > settings.max_body_bytes
    response = post_er7(client, body)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_a_resent_control_id_is_acknowledged_without_processing_again(
    client: TestClient, db: Database
) -> None:
    mrn = next_id("MRN")
    message = oru([magnesium_mmol("0.62")], mrn=mrn, control_id="CTRL-ONCE")
    first = post_er7(client, message)
    assert ack_code(first) == "AA"
    after_first = db.counts()
    assert after_first["hl7_message"] == 1

    # The same message with LF separators (a resend through another interface engine).
    again = post_er7(client, message.replace("\r", "\n"))

    assert ack_code(again) == "AA"
    assert segment(again.text, "MSA")[2] == "CTRL-ONCE"
    assert db.counts() == after_first


def test_a_reused_control_id_with_other_content_is_refused(
    client: TestClient, db: Database
) -> None:
    mrn = next_id("MRN")
    assert (
        ack_code(post_er7(client, oru([magnesium_mmol("0.62")], mrn=mrn, control_id="C-7"))) == "AA"
    )
    before = db.counts()

    reused = post_er7(client, oru([magnesium_mmol("0.95")], mrn=mrn, control_id="C-7"))

    assert ack_code(reused) == "AE"
    err = segment(reused.text, "ERR")
    assert err[2] == "MSH^1^10^1"
    assert err[3].startswith("205^")
    assert "C-7" in err[8]
    assert db.counts() == before
    # Another sender may use the same control id: ids are per sending application/facility.
    other_sender = oru([magnesium_mmol("0.95")], mrn=next_id("MRN"), control_id="C-7", facility="B")
    assert ack_code(post_er7(client, other_sender)) == "AA"


def test_a_refused_message_can_be_sent_again_once_fixed(client: TestClient, db: Database) -> None:
    message = oru([obx("LOCALMG", "0.62", "mmol/L", system="L")], control_id="FIX-ME")
    assert ack_code(post_er7(client, message)) == "AE"
    assert db.count("hl7_message") == 0
    mapped = client.put("/api/v1/code-maps/ACME-LAB/LOCALMG", json={"analyte": "magnesium"})
    assert mapped.status_code == 201, mapped.text

    assert ack_code(post_er7(client, message)) == "AA"
    assert db.count("hl7_message") == 1


def test_an_overlong_control_id_is_rejected(client: TestClient, db: Database) -> None:
    before = db.counts()
    response = post_er7(client, oru([magnesium_mmol()], control_id="X" * 201))
    assert ack_code(response) == "AR"
    assert segment(response.text, "ERR")[2] == "MSH^1^10^1"
    assert db.counts() == before
