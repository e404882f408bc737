"""The patient's printable plan, fetched from the API by content negotiation and rendered in
headless Chromium: plain language, the draft warning, no internal codes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.browser import Browser, browser_fixture  # noqa: F401  (provides `browser`)
from tests.builders import MRN_SYSTEM, expect_problem, make_patient, result
from tests.plans.builders import (
    LOW_MAGNESIUM,
    MODERATE_ISI,
    draft_plan,
    editable,
    finding_codes,
    items,
    post_recent_panel,
    put_items,
    record_isi,
    set_context,
    set_status,
)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _page(client: TestClient, plan_id: str, accept: str = "text/html") -> str:
    response = client.get(f"/api/v1/plans/{plan_id}", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["vary"] == "Accept"
    page: str = response.text
    return page


def test_the_printable_plan_reads_in_plain_language(client: TestClient, browser: Browser) -> None:
    patient = make_patient(client)
    post_recent_panel(client, patient, [*LOW_MAGNESIUM, result("calcium", "5.0", "mg/dL")])
    record_isi(client, patient, MODERATE_ISI)
    plan = draft_plan(client, patient)

    text = browser.rendered_text(_page(client, plan["id"]))

    assert "not yet approved by your clinician" in text
    assert patient["identifiers"][0]["value"] in text
    for item in items(plan):
        assert item["title"] in text
    assert text.index("Please act on this first") < text.index("Supplements")
    assert re.search(r"200 mg of magnesium \(as magnesium glycinate\), once a day", text)
    assert "in the evening" in text
    for code in (plan["id"], *(i["id"] for i in items(plan)), "sleep-hygiene", "LL"):
        assert code not in text
    assert not UUID.search(text)
    assert not re.search(r"\b\d{4}-\d{2}-\d{2}\b", text), "dates are written out"
    assert browser.printed_pdf(_page(client, plan["id"])).startswith(b"%PDF")


def test_an_active_plan_page_names_the_approver(client: TestClient, browser: Browser) -> None:
    patient = make_patient(client)
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    plan = set_status(client, draft_plan(client, patient), "active")

    text = browser.rendered_text(
        _page(client, plan["id"], "text/html,application/xhtml+xml,*/*;q=0.8")
    )

    assert "not yet approved" not in text
    assert "approved" in text.lower()


def test_json_stays_the_default_and_other_types_are_406(client: TestClient) -> None:
    patient = make_patient(client)
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    plan = draft_plan(client, patient)
    path = f"/api/v1/plans/{plan['id']}"

    for accept in ("application/json", "*/*", "application/json, text/html;q=0.5", ""):
        response = client.get(path, headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
    expect_problem(client.get(path, headers={"Accept": "image/png"}), 406, "not-acceptable")


INTERNAL_CODES = re.compile(
    r"\b(ca_mg_molar|zn_cu_molar|magnesium-rbc|calcium-ionized|interaction:|upper-limit|"
    r"contradiction:|[A-Z]\d{2}[A-Z]{2}\d{2}|\d{6,})\b"
)


def test_the_printable_plan_names_patient_and_clinic_says_each_thing_once_and_follows_edits(
    client: TestClient, browser: Browser, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "clinic_name", "Riverside Clinic")
    monkeypatch.setattr(settings, "clinic_contact", "Phone 555 0100")
    response = client.post(
        "/api/v1/patients",
        json={
            "identifiers": [{"system": MRN_SYSTEM, "value": "PAGE-NAME-1"}],
            "sex": "female",
            "birth_date": "1981-04-12",
            "name": {"family": "Okafor", "given": ["Adaeze"]},
        },
    )
    assert response.status_code == 201, response.text
    patient = response.json()
    set_context(client, patient, medications=[{"code": "levothyroxine", "name": "Euthyrox"}])
    post_recent_panel(client, patient, [*LOW_MAGNESIUM, result("calcium", "5.0", "mg/dL")])
    record_isi(client, patient, MODERATE_ISI)
    plan = draft_plan(client, patient)
    assert "interaction:magnesium-levothyroxine" in finding_codes(plan)
    edited = []
    for item in items(plan):
        item = editable(item)
        if item.get("supplement") and item["supplement"]["mineral"] == "magnesium":
            item["supplement"]["timing"] = "bedtime"
        edited.append(item)
    plan = put_items(client, plan, edited)

    text = browser.rendered_text(_page(client, plan["id"]))

    assert "Adaeze Okafor" in text
    assert "12 April 1981" in text
    assert "Riverside Clinic" in text
    assert "Phone 555 0100" in text
    assert "Magnesium glycinate at bedtime" in text
    assert "Magnesium glycinate in the evening" not in text
    assert not INTERNAL_CODES.search(text), INTERNAL_CODES.search(text)
    for clinical in ("divalent", "neutropenia", "not retrieved", "clinic choice"):
        assert clinical not in text.lower()
    for item in items(plan):
        assert item["rationale"] not in text, "clinician rationale stays in the clinician view"
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 20]
    repeated = {line for line in lines if lines.count(line) > 1}
    assert not repeated, repeated
    assert text.count("levothyroxine at least 4 hours apart") == 1
