"""Nothing dropped: refused HL7 messages, FHIR Bundles and JSON panels are kept, listed,
re-processed after a fix (once) or discarded, and every access is audited."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.builders import MRN_SYSTEM, panel_body, result
from tests.conftest import DEFAULT_ORGANIZATION, OTHER_ORGANIZATION, Database
from tests.interop.fhir.builders import Sent, panel_bundle, post_bundle
from tests.interop.hl7.messages import next_id, obx, oru, segment
from tests.interop.hl7.test_oru_route import ack_code, post_er7

URL = "/api/v1/refused-inputs"
Keys = dict[str, dict[str, str]]


def listed(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get(URL, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def audit_actions(client: TestClient) -> list[str]:
    response = client.get("/api/v1/audit-events", params={"limit": "200"})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    return [e["action"] for e in items if e["resource_type"] == "refused_input"]


def test_an_ae_message_is_kept_reprocessed_after_the_code_map_fix_once_and_audited(
    client: TestClient, db: Database
) -> None:
    message = oru([obx("XMG", "0.62", "mmol/L", system="L")], mrn=next_id("MRN"))
    refused = post_er7(client, message)
    assert ack_code(refused) == "AE"
    assert post_er7(client, message).status_code == 200  # resent before the fix: still one row

    [item] = listed(client, channel="hl7-http")
    assert item["status"] == "refused"
    assert item["attempts"] == 2
    assert item["sending_facility"] == "ACME-LAB"
    assert "XMG" in item["reason"]
    detail = client.get(f"{URL}/{item['id']}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["payload"] == message

    fixed = client.put("/api/v1/code-maps/ACME-LAB/XMG", json={"analyte": "magnesium"})
    assert fixed.status_code == 201, fixed.text
    again = client.post(f"{URL}/{item['id']}/reprocess")
    assert again.status_code == 200, again.text
    assert segment(again.text, "MSA")[1] == "AA"
    assert again.headers["Refused-Input-Status"] == "reprocessed"
    assert db.count("panel") == 1
    assert db.count("refused_input") == 1

    # Re-processing twice runs nothing twice; the sender's own resend is the same panel (AA).
    assert client.post(f"{URL}/{item['id']}/reprocess").status_code == 409
    assert ack_code(post_er7(client, message)) == "AA"
    assert db.count("panel") == 1
    assert db.count("refused_input") == 1
    [done] = listed(client, status="reprocessed")
    assert done["result"]["panel_ids"]
    assert not listed(client, status="refused")
    actions = audit_actions(client)
    assert {"search", "read", "reprocess"} <= set(actions)


def test_a_refused_json_panel_is_reprocessed_once_its_patient_exists(
    client: TestClient, db: Database
) -> None:
    mrn = next_id("MRN")
    patient = {"identifiers": [{"system": MRN_SYSTEM, "value": mrn}], "sex": "female"}
    ref = {"identifier": {"system": MRN_SYSTEM, "value": mrn}}
    body = panel_body(patient, [result("magnesium", "0.80", "mmol/L")], patient_ref=ref)
    refused = client.post("/api/v1/panels", json=body)
    assert refused.status_code in (404, 422), refused.text
    [item] = listed(client, channel="json")
    assert item["response_status"] == refused.status_code

    still = client.post(f"{URL}/{item['id']}/reprocess")
    assert still.status_code == refused.status_code
    assert still.headers["Refused-Input-Status"] == "refused"

    made = client.post("/api/v1/patients", json={**patient, "birth_date": "1981-04-12"})
    assert made.status_code == 201, made.text
    stored = client.post(f"{URL}/{item['id']}/reprocess")
    assert stored.status_code == 201, stored.text
    assert db.count("panel") == 1
    assert db.count("refused_input") == 1
    [done] = listed(client)
    assert (done["status"], done["attempts"]) == ("reprocessed", 2)


def test_a_refused_fhir_bundle_with_an_unknown_unit_is_discarded(
    client: TestClient, db: Database
) -> None:
    body = panel_bundle(results=(Sent("2601-3", "0.62", "furlongs"),))
    refused = post_bundle(client, body)
    assert refused.status_code == 422, refused.text
    [item] = listed(client, channel="fhir")
    assert "furlongs" in item["reason"]
    assert client.get(f"{URL}/{item['id']}").json()["payload"] == body

    discarded = client.post(f"{URL}/{item['id']}/discard")
    assert discarded.status_code == 200, discarded.text
    assert discarded.json()["status"] == "discarded"
    assert client.post(f"{URL}/{item['id']}/reprocess").status_code == 409
    assert db.count("panel") == 0


def test_a_batch_with_a_failed_entry_is_kept_once_naming_it(client: TestClient) -> None:
    body = panel_bundle(results=(Sent("2601-3", "0.62", "furlongs"),), kind="batch")
    answer = post_bundle(client, body)
    assert answer.status_code == 200, answer.text
    [item] = listed(client, channel="fhir")
    assert item["details"]["failed_entries"]


def test_only_admin_and_integration_of_the_organization_see_refused_inputs(
    client: TestClient, api_keys: Keys
) -> None:
    message = oru([obx("XZN", "9", "umol/L", system="L")], mrn=next_id("MRN"))
    assert ack_code(post_er7(client, message)) == "AE"
    [item] = listed(client)
    for role in ("admin", "integration"):
        headers = {"X-API-Key": api_keys[DEFAULT_ORGANIZATION][role]}
        assert client.get(f"{URL}/{item['id']}", headers=headers).status_code == 200
    clinician = {"X-API-Key": api_keys[DEFAULT_ORGANIZATION]["clinician"]}
    assert client.get(URL, headers=clinician).status_code == 403
    other = {"X-API-Key": api_keys[OTHER_ORGANIZATION]["integration"]}
    assert client.get(f"{URL}/{item['id']}", headers=other).status_code == 404
    assert client.get(URL, headers=other).json()["items"] == []


def test_auth_failures_and_unsupported_media_are_not_kept(client: TestClient, db: Database) -> None:
    assert client.post("/api/v1/panels", json={}, auth=None).status_code == 401
    assert (
        client.post("/api/v1/panels", content=b"x", headers={"Content-Type": "text/csv"})
    ).status_code == 415
    assert db.count("refused_input") == 0
