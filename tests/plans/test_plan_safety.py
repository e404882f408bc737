"""Clinical safety of treatment plans through HTTP: possibly critical values, stale drafts,
withdrawn bases, ratios only from results collected together, no contradictory items,
unrecorded pregnancy, kidney context and hard stops (issue 10)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.models.plan import TreatmentPlan
from tests.builders import expect_problem, make_patient, result
from tests.conftest import Database
from tests.plans.builders import (
    LOW_MAGNESIUM,
    MAGNESIUM_BY_HAND,
    MODERATE_ISI,
    by_category,
    draft_plan,
    editable,
    etag,
    finding_codes,
    items,
    post_recent_panel,
    put_items,
    record_isi,
    set_context,
    set_status,
    supplements,
    today,
)


def _activate(client: TestClient, plan: dict[str, Any], **body: Any) -> Any:
    return client.post(
        f"/api/v1/plans/{plan['id']}/status",
        json={"status": "active", **body},
        headers={"If-Match": etag(client, plan["id"])},
    )


def _template_ids(plan: dict[str, Any]) -> set[str]:
    return {item["template_id"] for item in items(plan) if item.get("template_id")}


def _hand_supplement(mineral: str, dose: int) -> dict[str, Any]:
    return {
        **MAGNESIUM_BY_HAND,
        "id": f"clinician.{mineral}",
        "title": f"{mineral} by hand",
        "analytes": [],
        "supplement": {**MAGNESIUM_BY_HAND["supplement"], "mineral": mineral, "dose": dose},
    }


# --- critical and possibly critical -------------------------------------------------------------


def test_a_possibly_critical_comparator_value_puts_the_urgent_referral_first(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    panel = post_recent_panel(client, patient, [result("magnesium", "<0.5", "mmol/L")])
    assert panel["results"][0]["interpretation"]["possibly_critical"] is True

    plan = draft_plan(client, patient)

    first = items(plan)[0]
    assert first["referral"]["urgent"] is True
    assert "possibly critical" in first["rationale"]
    without = [editable(i) for i in items(plan) if not (i.get("referral") or {}).get("urgent")]
    edited = put_items(client, plan, without)
    assert "critical-without-urgent-referral" in finding_codes(edited)
    set_status(client, edited, "active", expect=409)


# --- stale drafts and withdrawn bases -----------------------------------------------------------


def test_activation_fails_after_a_newer_critical_result_arrives(client: TestClient) -> None:
    patient = make_patient(client)
    post_recent_panel(client, patient, LOW_MAGNESIUM, days=3)
    plan = draft_plan(client, patient)
    assert supplements(plan, "magnesium")
    critical = post_recent_panel(client, patient, [result("magnesium", "8.0", "mg/dL")], days=1)
    critical_id = critical["results"][0]["id"]
    assert critical["results"][0]["interpretation"]["critical"] is True

    # Reading the draft already says it cannot be activated, and why.
    read = client.get(f"/api/v1/plans/{plan['id']}").json()
    assert read["can_activate"] is False
    assert [b["code"] for b in read["activation_blockers"]] == ["new-critical-result"]

    problem = expect_problem(_activate(client, plan), 409, "blocking-findings")
    [finding] = [f for f in problem["findings"] if f["code"] == "new-critical-result"]
    assert "8.0 mg/dL" in finding["message"]
    assert finding["overridable"] is False
    # A new critical result can be neither acknowledged nor overridden away.
    refused = expect_problem(
        _activate(client, plan, acknowledge_results=[critical_id]), 422, "cannot-acknowledge"
    )
    assert "critical" in refused["errors"][0]["message"]
    expect_problem(
        _activate(client, plan, overrides=[{"code": "new-critical-result", "reason": "seen"}]),
        422,
        "invalid-override",
    )
    assert client.get(f"/api/v1/plans/{plan['id']}").json()["status"] == "draft"

    # Regenerating drafts from the present: the urgent referral first, no magnesium supplement.
    response = client.post(f"/api/v1/plans/{plan['id']}/regenerate", json={})
    assert response.status_code == 201, response.text
    fresh = response.json()
    assert items(fresh)[0]["referral"]["urgent"] is True
    assert supplements(fresh, "magnesium") == []
    assert "stop-magnesium" in _template_ids(fresh)
    assert set_status(client, fresh, "active")["status"] == "active"


def test_a_newer_result_blocks_activation_until_acknowledged_and_is_recorded(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    post_recent_panel(client, patient, LOW_MAGNESIUM, days=3)
    plan = draft_plan(client, patient)
    newer = post_recent_panel(client, patient, [result("magnesium", "0.62", "mmol/L")], days=1)
    newer_id = newer["results"][0]["id"]

    problem = expect_problem(_activate(client, plan), 409, "blocking-findings")
    [finding] = [f for f in problem["findings"] if f["code"] == "newer-result:magnesium"]
    assert finding["result_ids"] == [newer_id]
    expect_problem(
        _activate(client, plan, acknowledge_results=[str(uuid.uuid4())]), 422, "cannot-acknowledge"
    )

    active = set_status(client, plan, "active", acknowledge_results=[newer_id])

    assert active["status"] == "active"
    version = client.get(f"/api/v1/plans/{plan['id']}/versions/{active['version']}").json()
    [ack] = version["document"]["acknowledged_results"]
    assert ack["result_id"] == newer_id
    assert ack["analyte"] == "magnesium"
    assert ack["by"] == active["approver"]


def test_activation_fails_while_a_result_the_plan_rests_on_is_withdrawn(
    client: TestClient, db: Database
) -> None:
    plan = draft_plan(client, _patient_with(client, LOW_MAGNESIUM))
    reason = "Magnesium result was entered in error."

    async def mark(session: Any) -> None:
        await session.execute(
            update(TreatmentPlan)
            .where(TreatmentPlan.id == uuid.UUID(plan["id"]))
            .values(review_reason=reason)
        )

    db.in_session(mark)

    problem = expect_problem(_activate(client, plan), 409, "blocking-findings")
    [finding] = [f for f in problem["findings"] if f["code"] == "basis-under-review"]
    assert reason in finding["message"]

    active = set_status(client, plan, "active", acknowledge_review=True)
    assert active["status"] == "active"
    version = client.get(f"/api/v1/plans/{plan['id']}/versions/{active['version']}").json()
    assert version["document"]["review_acknowledged"]["reason"] == reason


# --- ratios and contradictions ------------------------------------------------------------------


def test_a_ratio_from_an_old_panel_adds_nothing_beside_a_current_high_magnesium(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    old = post_recent_panel(
        client,
        patient,
        [result("calcium", "2.45", "mmol/L"), result("magnesium", "0.62", "mmol/L")],
        days=200,
    )
    assert any(r["code"] == "ca_mg_molar" and r["interpretation"] == "H" for r in old["ratios"])
    post_recent_panel(client, patient, [result("magnesium", "1.3", "mmol/L")], days=1)

    plan = draft_plan(client, patient)

    ids = _template_ids(plan)
    assert "stop-magnesium" in ids
    assert "magnesium-diet" not in ids
    assert plan["basis"]["ratios"] == []


def test_low_total_with_high_ionized_calcium_never_drafts_calcium(client: TestClient) -> None:
    patient = make_patient(client)
    post_recent_panel(
        client,
        patient,
        [
            result("calcium", "7.9", "mg/dL"),
            result("calcium-ionized", "1.45", "mmol/L"),
            result("magnesium", "0.85", "mmol/L"),
        ],
    )

    plan = draft_plan(client, patient)

    assert supplements(plan, "calcium") == []
    assert "calcium-diet" not in _template_ids(plan)
    assert "calcium-high-referral" in _template_ids(plan)
    [dropped, *_] = [f for f in plan["findings"] if f["code"] == "contradiction-resolved:calcium"]
    assert "restriction wins" in dropped["message"]

    # Adding the calcium back by hand contradicts the restriction: a hard stop.
    edited = put_items(
        client, plan, [*map(editable, items(plan)), _hand_supplement("calcium", 500)]
    )
    assert {"contradiction:calcium", "contraindication:calcium-high"} <= finding_codes(edited)
    assert edited["can_activate"] is False
    refused = expect_problem(
        _activate(
            client, edited, overrides=[{"code": "contradiction:calcium", "reason": "I know"}]
        ),
        422,
        "invalid-override",
    )
    assert "hard stop" in refused["detail"]


# --- patient context ----------------------------------------------------------------------------


def _patient_with(
    client: TestClient, results: list[dict[str, Any]], **patient: Any
) -> dict[str, Any]:
    created = make_patient(client, **patient)
    post_recent_panel(client, created, results)
    record_isi(client, created, MODERATE_ISI)
    return created


def _herbs(plan: dict[str, Any]) -> set[str]:
    return {item["herbal"]["name"] for item in by_category(plan, "herbal")}


def test_unrecorded_pregnancy_of_childbearing_age_keeps_valerian_and_chamomile_out(
    client: TestClient,
) -> None:
    woman = _patient_with(client, LOW_MAGNESIUM, sex="female", birth_date="1998-01-10")

    unknown = draft_plan(client, woman)
    assert _herbs(unknown) == set()
    assert "pregnancy-omitted:chamomile-tea" in finding_codes(unknown)

    set_context(client, woman, pregnant=True)
    assert _herbs(draft_plan(client, woman)) == set()

    set_context(client, woman, pregnant=False)
    assert _herbs(draft_plan(client, woman)) == {"valerian", "chamomile"}


def test_kidney_disease_without_an_egfr_gets_no_magnesium(client: TestClient) -> None:
    patient = _patient_with(client, LOW_MAGNESIUM)
    set_context(client, patient, pregnant=False, conditions=[{"code": "chronic-kidney-disease"}])

    plan = draft_plan(client, patient)

    assert supplements(plan, "magnesium") == []
    assert "magnesium-kidney-referral" in _template_ids(plan)


def test_an_old_egfr_gives_a_warning_asking_for_a_new_one(client: TestClient) -> None:
    patient = _patient_with(client, LOW_MAGNESIUM)
    set_context(client, patient, pregnant=False, egfr={"value": 75, "measured_on": today(900)})

    plan = draft_plan(client, patient)

    [stale] = [f for f in plan["findings"] if f["code"] == "caution:egfr-stale"]
    assert stale["severity"] == "warning"
    assert "12 months" in stale["message"]


# --- hard stops ---------------------------------------------------------------------------------


def _hard_stop_refused(
    client: TestClient, plan: dict[str, Any], mineral: str, code: str
) -> dict[str, Any]:
    edited = put_items(client, plan, [*map(editable, items(plan)), _hand_supplement(mineral, 20)])
    [finding] = [f for f in edited["findings"] if f["code"] == code]
    assert finding["severity"] == "blocking"
    assert finding["overridable"] is False
    problem = expect_problem(
        _activate(client, edited, overrides=[{"code": code, "reason": "Specialist agreed."}]),
        422,
        "invalid-override",
    )
    assert "can never be overridden" in problem["detail"]
    assert client.get(f"/api/v1/plans/{plan['id']}").json()["status"] == "draft"
    return problem


def test_magnesium_with_egfr_below_30_or_kidney_disease_is_a_hard_stop(
    client: TestClient,
) -> None:
    low_egfr = _patient_with(client, LOW_MAGNESIUM)
    set_context(client, low_egfr, pregnant=False, egfr={"value": 25, "measured_on": today(10)})
    _hard_stop_refused(
        client, draft_plan(client, low_egfr), "magnesium", "contraindication:magnesium-kidney"
    )
    ckd = _patient_with(client, LOW_MAGNESIUM)
    set_context(client, ckd, pregnant=False, conditions=[{"code": "chronic-kidney-disease"}])
    _hard_stop_refused(
        client, draft_plan(client, ckd), "magnesium", "contraindication:magnesium-kidney"
    )


def test_iron_with_hemochromatosis_or_high_ferritin_is_a_hard_stop(client: TestClient) -> None:
    hemochromatosis = _patient_with(client, LOW_MAGNESIUM)
    set_context(client, hemochromatosis, pregnant=False, conditions=[{"code": "hemochromatosis"}])
    _hard_stop_refused(
        client, draft_plan(client, hemochromatosis), "iron", "contraindication:iron-overload"
    )
    high_ferritin = _patient_with(client, [result("ferritin", "900", "ng/mL")])
    _hard_stop_refused(
        client, draft_plan(client, high_ferritin), "iron", "contraindication:iron-overload"
    )


def test_calcium_with_high_total_or_ionized_calcium_is_a_hard_stop(client: TestClient) -> None:
    for high in (result("calcium", "11.2", "mg/dL"), result("calcium-ionized", "1.45", "mmol/L")):
        patient = _patient_with(client, [high])
        _hard_stop_refused(
            client, draft_plan(client, patient), "calcium", "contraindication:calcium-high"
        )
