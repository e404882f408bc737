"""Builders for treatment-plan tests: recent panels, context, ISI scores, drafted plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.builders import post_panel, result


def recent(days: int = 2) -> str:
    """A collection time inside the plan's default 365-day look-back, whatever today is."""
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def today(days: int = 0) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days)).isoformat()


LOW_MAGNESIUM = [result("magnesium", "0.55", "mmol/L")]
MODERATE_ISI = [3, 2, 2, 3, 2, 2, 3]  # 17: moderate


def post_recent_panel(
    client: TestClient, patient: dict[str, Any], results: list[dict[str, Any]], days: int = 2
) -> dict[str, Any]:
    return post_panel(client, patient, results, collected_at=recent(days))


def set_context(client: TestClient, patient: dict[str, Any], **context: Any) -> dict[str, Any]:
    path = f"/api/v1/patients/{patient['id']}/context"
    current = client.get(path)
    headers = {"If-Match": current.headers["ETag"]} if current.status_code == 200 else {}
    response = client.put(path, json=context, headers=headers)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def record_isi(client: TestClient, patient: dict[str, Any], items: list[int]) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/patients/{patient['id']}/sleep-assessments",
        json={"instrument": "ISI", "assessed_on": today(1), "items": items},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def draft_plan(
    client: TestClient, patient: dict[str, Any], expect: int = 201, **body: Any
) -> dict[str, Any]:
    response = client.post(f"/api/v1/patients/{patient['id']}/plans", json=body)
    assert response.status_code == expect, response.text
    plan: dict[str, Any] = response.json()
    return plan


def items(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of a plan, in plan order."""
    return [item for group in plan["groups"] for item in group["items"]]


def by_category(plan: dict[str, Any], category: str) -> list[dict[str, Any]]:
    return [item for item in items(plan) if item["category"] == category]


def supplements(plan: dict[str, Any], mineral: str) -> list[dict[str, Any]]:
    return [i for i in by_category(plan, "supplement") if i["supplement"]["mineral"] == mineral]


def finding_codes(plan: dict[str, Any]) -> set[str]:
    return {finding["code"] for finding in plan["findings"]}


def editable(item: dict[str, Any]) -> dict[str, Any]:
    """An item as a clinician sends it back (server-owned provenance left out)."""
    return {k: v for k, v in item.items() if k not in ("rule_id", "template_id")}


def etag(client: TestClient, plan_id: str) -> str:
    response = client.get(f"/api/v1/plans/{plan_id}")
    assert response.status_code == 200, response.text
    value: str = response.headers["ETag"]
    return value


def put_items(
    client: TestClient,
    plan: dict[str, Any],
    new_items: list[dict[str, Any]],
    expect: int = 200,
    **extra: Any,
) -> dict[str, Any]:
    response = client.put(
        f"/api/v1/plans/{plan['id']}/items",
        json={"items": new_items, **extra},
        headers={"If-Match": etag(client, plan["id"])},
    )
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


def set_status(
    client: TestClient, plan: dict[str, Any], status: str, expect: int = 200, **extra: Any
) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/plans/{plan['id']}/status",
        json={"status": status, **extra},
        headers={"If-Match": etag(client, plan["id"])},
    )
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


MAGNESIUM_BY_HAND: dict[str, Any] = {
    "id": "clinician.magnesium",
    "category": "supplement",
    "title": "Magnesium glycinate",
    "instruction": "Take one capsule in the evening.",
    "rationale": "Added at review.",
    "analytes": ["magnesium"],
    "supplement": {
        "mineral": "magnesium",
        "form": "magnesium glycinate",
        "dose": 200,
        "doses_per_day": 1,
        "timing": "evening",
        "duration_days": 56,
    },
}

WALK_BY_HAND: dict[str, Any] = {
    "id": "clinician.walk",
    "category": "stress-management",
    "title": "Evening walk",
    "instruction": "Take a 20-minute walk after dinner, most days of the week.",
    "rationale": "Patient prefers activity-based stress relief.",
}
