"""OBX-11 result status over HL7 v2 (table 0085): W / X / D no longer refuse the message. A
withdrawn OBX with a value is stored withdrawn; one without a value withdraws the stored result
of its analyte under the same accession (AA with a note when there is none), and a plan
resting on a withdrawn or corrected result is marked as needing review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.builders import result_for
from tests.conftest import Database
from tests.interop.hl7.messages import magnesium_mmol, next_id, obx, oru, segment
from tests.interop.hl7.test_oru_route import ack_code, panels_of, patient_by_mrn, post_er7
from tests.plans.builders import draft_plan, etag


def _recent(days: int = 2) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y%m%d%H%M%S+0000")


def _withdraw(code: str, status: str) -> str:
    """An OBX withdrawing a result: OBX-11 W / D / X, no value and no unit."""
    return obx(code, "", "", text="withdrawn", status=status)


def _panel(client: TestClient, mrn: str) -> dict[str, Any]:
    [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    return panel


def test_a_w_obx_with_a_value_is_stored_entered_in_error_and_not_critical(
    client: TestClient,
) -> None:
    mrn = next_id("MRN")
    message = oru(
        [magnesium_mmol("0.3", status="W"), obx("17861-6", "9.1", "mg/dL", text="Calcium")],
        mrn=mrn,
    )
    response = post_er7(client, message)
    assert ack_code(response) == "AA", response.text

    panel = _panel(client, mrn)
    magnesium = result_for(panel, "magnesium")
    assert magnesium["status"] == "entered-in-error"
    assert magnesium["interpretation"]["critical"] is False
    assert panel["has_critical"] is False
    assert result_for(panel, "calcium")["status"] == "final"
    assert panel["ratios"] == []


def test_x_and_d_without_a_value_and_nothing_stored_are_accepted_with_a_note(
    client: TestClient, db: Database
) -> None:
    before = db.count("result")
    message = oru([_withdraw("2601-3", "X"), _withdraw("17861-6", "D")], mrn=next_id("MRN"))
    response = post_er7(client, message)

    assert ack_code(response) == "AA", response.text
    err = segment(response.text, "ERR")
    assert err[4] == "I"  # ERR-4 severity: information, not an error
    assert "nothing to withdraw" in response.text
    assert db.count("result") == before


def test_a_d_obx_without_a_value_withdraws_the_stored_critical_result(client: TestClient) -> None:
    mrn, accession = next_id("MRN"), next_id("ACC")
    first = oru(
        [magnesium_mmol("0.3"), obx("17861-6", "9.1", "mg/dL", text="Calcium")],
        mrn=mrn,
        accession=accession,
    )
    assert ack_code(post_er7(client, first)) == "AA"
    stored = _panel(client, mrn)
    assert stored["has_critical"] is True
    assert [r["code"] for r in stored["ratios"]] == ["ca_mg_molar"]

    response = post_er7(client, oru([_withdraw("2601-3", "D")], mrn=mrn, accession=accession))
    assert ack_code(response) == "AA", response.text
    assert "ERR" not in response.text

    panel = _panel(client, mrn)
    magnesium = result_for(panel, "magnesium")
    assert magnesium["id"] == result_for(stored, "magnesium")["id"]
    assert magnesium["status"] == "entered-in-error"
    assert magnesium["reported"]["text"] == "0.3"
    assert magnesium["interpretation"]["critical"] is False
    assert panel["has_critical"] is False
    assert panel["ratios"] == []
    assert result_for(panel, "calcium")["status"] == "final"

    patient_id = patient_by_mrn(client, mrn)["id"]
    history = client.get(f"/api/v1/patients/{patient_id}/analytes/magnesium/history").json()
    assert history["items"] == []
    # The withdrawal is kept in the panel's interpretation history.
    versions = client.get(f"/api/v1/panels/{panel['id']}/interpretations").json()
    assert any("withdrawal" in (v.get("reason") or "") for v in versions)


def test_a_plan_resting_on_a_result_later_withdrawn_needs_review(client: TestClient) -> None:
    mrn, accession = next_id("MRN"), next_id("ACC")
    message = oru([magnesium_mmol("0.55")], mrn=mrn, accession=accession, collected=_recent())
    assert ack_code(post_er7(client, message)) == "AA"
    patient = patient_by_mrn(client, mrn)
    plan = draft_plan(client, patient)
    assert plan["review_reason"] is None
    old_etag = etag(client, plan["id"])

    withdrawal = oru([_withdraw("2601-3", "W")], mrn=mrn, accession=accession, collected=_recent())
    assert ack_code(post_er7(client, withdrawal)) == "AA"

    response = client.get(f"/api/v1/plans/{plan['id']}")
    marked = response.json()
    assert "magnesium" in marked["review_reason"]
    assert "withdrawn (entered-in-error)" in marked["review_reason"]
    assert marked["version"] == plan["version"] + 1
    assert response.headers["ETag"] != old_etag
    listed = client.get(f"/api/v1/patients/{patient['id']}/plans").json()["items"]
    assert [p["review_reason"] for p in listed] == [marked["review_reason"]]
    versions = client.get(f"/api/v1/plans/{plan['id']}/versions").json()
    assert versions["items"][-1]["change"] == "review-needed"


def test_a_plan_resting_on_a_result_later_corrected_needs_review(client: TestClient) -> None:
    mrn, accession = next_id("MRN"), next_id("ACC")
    message = oru([magnesium_mmol("0.55")], mrn=mrn, accession=accession, collected=_recent())
    assert ack_code(post_er7(client, message)) == "AA"
    plan = draft_plan(client, patient_by_mrn(client, mrn))

    correction = oru(
        [magnesium_mmol("0.85", status="C")], mrn=mrn, accession=accession, collected=_recent()
    )
    assert ack_code(post_er7(client, correction)) == "AA"

    marked = client.get(f"/api/v1/plans/{plan['id']}").json()
    assert "magnesium" in marked["review_reason"]
    assert "corrected from 0.55 mmol/L to 0.85 mmol/L" in marked["review_reason"]


def test_a_correction_that_changes_no_value_leaves_the_plan_alone(client: TestClient) -> None:
    mrn, accession = next_id("MRN"), next_id("ACC")
    collected = _recent()
    message = oru(
        [magnesium_mmol("0.55", status="P")], mrn=mrn, accession=accession, collected=collected
    )
    assert ack_code(post_er7(client, message)) == "AA"
    plan = draft_plan(client, patient_by_mrn(client, mrn))

    final = oru([magnesium_mmol("0.55")], mrn=mrn, accession=accession, collected=collected)
    assert ack_code(post_er7(client, final)) == "AA"

    assert client.get(f"/api/v1/plans/{plan['id']}").json()["review_reason"] is None
    assert result_for(_panel(client, mrn), "magnesium")["status"] == "final"


def test_r_and_s_are_stored_as_preliminary(client: TestClient) -> None:
    mrn = next_id("MRN")
    message = oru(
        [magnesium_mmol("0.8", status="R"), obx("17861-6", "9.1", "mg/dL", status="S")], mrn=mrn
    )
    assert ack_code(post_er7(client, message)) == "AA"
    panel = _panel(client, mrn)
    assert {r["status"] for r in panel["results"]} == {"preliminary"}
    assert panel["status"] == "preliminary"
