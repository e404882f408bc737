"""Principals carry a display name: an API key's (given at creation, default its name) is what
plans record as author and approver, and what the printable page shows."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.builders import make_patient
from tests.plans.builders import LOW_MAGNESIUM, draft_plan, etag, post_recent_panel


def test_an_api_key_gets_a_display_name_defaulting_to_its_name(client: TestClient) -> None:
    named = client.post(
        "/api/v1/api-keys",
        json={"name": "front-end 4", "role": "clinician", "display_name": "Dr Anna Keller"},
    )
    assert named.status_code == 201, named.text
    assert named.json()["display_name"] == "Dr Anna Keller"
    plain = client.post("/api/v1/api-keys", json={"name": "LIS 2", "role": "integration"})
    assert plain.json()["display_name"] == "LIS 2"


def test_the_approver_is_shown_by_display_name(client: TestClient) -> None:
    created = client.post(
        "/api/v1/api-keys",
        json={"name": "fe4", "role": "clinician", "display_name": "Dr Anna Keller"},
    )
    key = {"X-API-Key": created.json()["key"]}
    patient = make_patient(client)
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    plan = draft_plan(client, patient)
    activated = client.post(
        f"/api/v1/plans/{plan['id']}/status",
        json={"status": "active"},
        headers={**key, "If-Match": etag(client, plan["id"])},
    )
    assert activated.status_code == 200, activated.text
    page = client.get(f"/api/v1/plans/{plan['id']}", headers={"Accept": "text/html", **key})
    assert "Approved by Dr Anna Keller" in page.text
    assert "fe4" not in page.text
    assert "mlk_" not in page.text
