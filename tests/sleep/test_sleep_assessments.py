"""ISI questionnaires through HTTP: scoring on the server, per-item validation, idempotent
retries, keyset pagination with date filters, and the latest one for the plan rules."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.plans.facts import SleepFact
from app.models.organization import DEFAULT_ORGANIZATION_ID
from app.sleep import repository
from app.sleep.service import sleep_fact
from tests.builders import error_fields, expect_problem, make_patient
from tests.conftest import Database


def _url(patient: dict[str, Any], suffix: str = "") -> str:
    return f"/api/v1/patients/{patient['id']}/sleep-assessments{suffix}"


def _body(items: list[Any] | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "instrument": "ISI",
        "assessed_on": "2026-11-20",
        "items": items if items is not None else [3, 2, 2, 3, 2, 2, 3],
    }
    body.update(overrides)
    return body


def _post(client: TestClient, patient: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = client.post(_url(patient), json=_body(**kwargs))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_assessment_is_scored_by_the_server(client: TestClient, db: Database) -> None:
    patient = make_patient(client)

    response = client.post(_url(patient), json=_body(note="before magnesium"))

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["total"], body["category"]) == (17, "moderate")
    assert body["category_display"] == "Clinical insomnia (moderate severity)"
    assert body["items"] == [3, 2, 2, 3, 2, 2, 3]
    assert (body["patient_id"], body["assessed_on"], body["note"]) == (
        patient["id"],
        "2026-11-20",
        "before magnesium",
    )
    assert response.headers["Location"] == _url(patient, f"/{body['id']}")
    read = client.get(response.headers["Location"])
    assert read.status_code == 200
    assert read.json() == body
    assert db.count("sleep_assessment") == 1


@pytest.mark.parametrize(
    ("items", "total", "category"),
    [
        ([1, 1, 1, 1, 1, 1, 1], 7, "none"),
        ([2, 1, 1, 1, 1, 1, 1], 8, "subthreshold"),
        ([2, 2, 2, 2, 2, 2, 2], 14, "subthreshold"),
        ([3, 2, 2, 2, 2, 2, 2], 15, "moderate"),
        ([3, 3, 3, 3, 3, 3, 3], 21, "moderate"),
        ([4, 3, 3, 3, 3, 3, 3], 22, "severe"),
    ],
)
def test_category_boundaries_through_the_api(
    client: TestClient, items: list[int], total: int, category: str
) -> None:
    body = _post(client, make_patient(client), items=items)

    assert (body["total"], body["category"]) == (total, category)


INVALID: dict[str, tuple[dict[str, Any], list[str]]] = {
    "an answer above 4": ({"items": [0, 0, 0, 5, 0, 0, 0]}, ["body.items[3]"]),
    "a negative answer": ({"items": [0, 0, 0, 0, 0, 0, -1]}, ["body.items[6]"]),
    "an answer as text": ({"items": [0, "2", 0, 0, 0, 0, 0]}, ["body.items[1]"]),
    "an answer as a boolean": ({"items": [0, 0, True, 0, 0, 0, 0]}, ["body.items[2]"]),
    "a fractional answer": ({"items": [0, 0, 0, 0, 1.5, 0, 0]}, ["body.items[4]"]),
    "two bad answers": ({"items": [9, 0, 0, 0, 0, 0, 9]}, ["body.items[0]", "body.items[6]"]),
    "six answers": ({"items": [1, 1, 1, 1, 1, 1]}, ["body.items"]),
    "eight answers": ({"items": [1] * 8}, ["body.items"]),
    "another instrument": ({"instrument": "PSQI"}, ["body.instrument"]),
    "a future date": (
        {"assessed_on": (date.today() + timedelta(days=2)).isoformat()},
        ["body.assessed_on"],
    ),
    "a date before 1900": ({"assessed_on": "1899-12-31"}, ["body.assessed_on"]),
    "a server-owned total": ({"total": 12}, ["body.total"]),
}


@pytest.mark.parametrize(("overrides", "fields"), INVALID.values(), ids=INVALID.keys())
def test_an_invalid_assessment_is_refused_naming_the_item(
    client: TestClient, db: Database, overrides: dict[str, Any], fields: list[str]
) -> None:
    patient = make_patient(client)

    problem = expect_problem(
        client.post(_url(patient), json=_body(**overrides)), 422, "validation-error"
    )

    assert error_fields(problem) == fields
    assert db.count("sleep_assessment") == 0


def test_an_assessment_before_the_birth_date_is_refused(client: TestClient, db: Database) -> None:
    patient = make_patient(client, birth_date="2000-01-01")

    problem = expect_problem(
        client.post(_url(patient), json=_body(assessed_on="1999-12-31")),
        422,
        "assessed-before-birth",
    )

    assert error_fields(problem) == ["body.assessed_on"]
    assert db.count("sleep_assessment") == 0


def test_an_unknown_patient_is_not_found(client: TestClient, db: Database) -> None:
    unknown = {"id": str(uuid.uuid4())}

    expect_problem(client.post(_url(unknown), json=_body()), 404, "not-found")
    expect_problem(client.get(_url(unknown)), 404, "not-found")
    expect_problem(client.get(_url(unknown, f"/{uuid.uuid4()}")), 404, "not-found")
    assert db.count("sleep_assessment") == 0


def test_a_retry_with_the_same_idempotency_key_replays_the_first_response(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    headers = {"Idempotency-Key": "isi-retry-1"}

    first = client.post(_url(patient), json=_body(), headers=headers)
    retry = client.post(_url(patient), json=_body(), headers=headers)

    assert first.status_code == retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["Location"] == first.headers["Location"]
    assert db.count("sleep_assessment") == 1
    changed = client.post(_url(patient), json=_body(items=[0] * 7), headers=headers)
    assert changed.status_code == 422, changed.text
    assert db.count("sleep_assessment") == 1


def _listed(client: TestClient, patient: dict[str, Any], **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(_url(patient), params=query)
        assert response.status_code == 200, response.text
        pages.append([item["assessed_on"] for item in response.json()["items"]])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20


@pytest.mark.parametrize("limit", [1, 2, 10])
def test_assessments_are_listed_newest_first_exactly_once(client: TestClient, limit: int) -> None:
    patient = make_patient(client)
    days = ["2026-01-10", "2026-03-01", "2025-12-24", "2026-03-01", "2026-06-30"]
    for day in days:
        _post(client, patient, assessed_on=day)

    pages = _listed(client, patient, limit=limit)

    assert [day for page in pages for day in page] == sorted(days, reverse=True)
    assert len(pages) == -(-len(days) // limit)


def test_from_and_to_limit_the_days_inclusively(client: TestClient) -> None:
    patient = make_patient(client)
    for day in ["2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01"]:
        _post(client, patient, assessed_on=day)

    pages = _listed(client, patient, limit=1, **{"from": "2026-02-01", "to": "2026-03-01"})

    assert [day for page in pages for day in page] == ["2026-03-01", "2026-02-01"]
    expect_problem(
        client.get(_url(patient), params={"from": "2026-03-02", "to": "2026-03-01"}),
        400,
        "invalid-query",
    )
    expect_problem(client.get(_url(patient), params={"cursor": "nonsense"}), 400, "invalid-cursor")


def test_the_latest_assessment_is_the_sleep_fact(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    _post(client, patient, assessed_on="2026-01-10", items=[4] * 7)
    _post(client, patient, assessed_on="2026-05-02", items=[1] * 7)
    _post(client, patient, assessed_on="2026-03-01", items=[2] * 7)

    async def go(session: AsyncSession) -> SleepFact | None:
        latest = await repository.latest(
            session, organization_id=DEFAULT_ORGANIZATION_ID, patient_id=uuid.UUID(patient["id"])
        )
        return sleep_fact(latest) if latest is not None else None

    assert db.in_session(go) == SleepFact(total=7, category="none", assessed_on=date(2026, 5, 2))


def test_a_patient_without_assessments_has_no_sleep_fact(client: TestClient, db: Database) -> None:
    patient = make_patient(client)

    async def go(session: AsyncSession) -> object:
        return await repository.latest(
            session, organization_id=DEFAULT_ORGANIZATION_ID, patient_id=uuid.UUID(patient["id"])
        )

    assert db.in_session(go) is None
