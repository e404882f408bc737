"""The clinician worklist: each section counts what it lists (retests, not plans), pages with
its own cursor, and names each row's patient."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.builders import MRN_SYSTEM, expect_problem, make_patient, result
from tests.plans.builders import (
    LOW_MAGNESIUM,
    MODERATE_ISI,
    by_category,
    draft_plan,
    post_recent_panel,
    record_isi,
    set_status,
)

LOW_MAGNESIUM_AND_ZINC = [*LOW_MAGNESIUM, result("zinc", "7", "umol/L")]


def _patient_with_plan(client: TestClient, mrn: str, *, active: bool) -> dict[str, Any]:
    patient = make_patient(client, mrn=mrn)
    post_recent_panel(client, patient, LOW_MAGNESIUM_AND_ZINC)
    record_isi(client, patient, MODERATE_ISI)
    plan = draft_plan(client, patient)
    return set_status(client, plan, "active") if active else plan


def _section_pages(client: TestClient, section: str, cursor_param: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"due_within_days": 365, "limit": 1}
    for _ in range(50):
        body = client.get("/api/v1/plans/worklist", params=params).json()[section]
        rows += body["items"]
        assert body["truncated"] is (body["next_cursor"] is not None)
        if body["next_cursor"] is None:
            return rows
        params[cursor_param] = body["next_cursor"]
    raise AssertionError("the section's pages do not end")


def test_retests_due_total_counts_retests_and_the_section_pages_with_its_own_cursor(
    client: TestClient,
) -> None:
    plans = [_patient_with_plan(client, f"MRN-WL-{n}", active=True) for n in range(2)]
    retests = sum(len(by_category(plan, "retest")) for plan in plans)
    assert retests > len(plans)  # so counting plans would be visibly wrong

    first = client.get("/api/v1/plans/worklist", params={"due_within_days": 365, "limit": 1})
    listed = _section_pages(client, "retests_due", "retests_cursor")

    section = first.json()["retests_due"]
    assert section["total"] == len(listed) == retests
    assert section["truncated"] is True
    assert len({(r["plan_id"], r["item_id"]) for r in listed}) == retests
    assert [r["due_date"] for r in listed] == sorted(r["due_date"] for r in listed)


def test_drafts_page_with_their_own_cursor_and_rows_name_the_patient(client: TestClient) -> None:
    drafts = [_patient_with_plan(client, f"MRN-DR-{n}", active=False) for n in range(3)]

    listed = _section_pages(client, "drafts", "drafts_cursor")

    assert [d["id"] for d in listed] == [d["id"] for d in drafts]
    assert [d["patient_identifier"] for d in listed] == [
        {"system": MRN_SYSTEM, "value": f"MRN-DR-{n}"} for n in range(3)
    ]
    body = client.get("/api/v1/plans/worklist").json()
    assert body["drafts"]["total"] == 3


def test_retest_rows_name_the_patient(client: TestClient) -> None:
    _patient_with_plan(client, "MRN-RT-1", active=True)
    rows = client.get("/api/v1/plans/worklist", params={"due_within_days": 365}).json()
    assert rows["retests_due"]["items"]
    assert {r["patient_identifier"]["value"] for r in rows["retests_due"]["items"]} == {"MRN-RT-1"}


def test_a_foreign_worklist_cursor_is_a_400(client: TestClient) -> None:
    response = client.get("/api/v1/plans/worklist", params={"retests_cursor": "bm9wZQ"})
    expect_problem(response, 400, "invalid-cursor")
