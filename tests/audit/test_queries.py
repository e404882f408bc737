"""Admins' view of the audit trail: filters, keyset pagination and the HTTP route."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import repository
from app.audit.service import AuditEntry, append
from app.models.audit import AuditEvent
from app.models.organization import DEFAULT_ORGANIZATION_ID
from tests.audit.builders import audit_entry
from tests.conftest import Database

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Trail:
    organization_id: uuid.UUID
    patient_a: uuid.UUID
    patient_b: uuid.UUID


def _write_trail(db: Database, organization_id: uuid.UUID) -> Trail:
    """Six events an hour apart: patient A read, searched, updated (denied) by `key:alice`,
    patient B read by `key:bob` twice and created by `key:alice`. Plus noise in another org."""
    trail = Trail(organization_id, uuid.uuid4(), uuid.uuid4())
    request_id = f"trail-{uuid.uuid4()}"
    plan: list[tuple[uuid.UUID, str, str, str]] = [
        (trail.patient_a, "key:alice", "read", "success"),
        (trail.patient_a, "key:alice", "search", "success"),
        (trail.patient_b, "key:bob", "read", "success"),
        (trail.patient_a, "key:alice", "update", "denied"),
        (trail.patient_b, "key:bob", "read", "success"),
        (trail.patient_b, "key:alice", "create", "success"),
    ]
    entries: list[AuditEntry] = [
        audit_entry(
            organization_id=organization_id,
            request_id=request_id,
            patient_id=patient_id,
            principal_id=principal_id,
            action=action,
            outcome=outcome,  # type: ignore[arg-type]
            occurred_at=START + timedelta(hours=hour),
        )
        for hour, (patient_id, principal_id, action, outcome) in enumerate(plan)
    ]
    entries.append(
        audit_entry(
            organization_id=uuid.uuid4(),
            request_id=request_id,
            patient_id=trail.patient_a,
            principal_id="key:alice",
            occurred_at=START,
        )
    )
    db.in_session(lambda session: append(session, entries))
    return trail


def _list(db: Database, **filters: Any) -> Sequence[AuditEvent]:
    async def go(session: AsyncSession) -> Sequence[AuditEvent]:
        return await repository.list_events(session, **{"limit": 100, **filters})

    return db.in_session(go)


def _hours(events: Sequence[AuditEvent]) -> list[int]:
    return [int((event.occurred_at - START) / timedelta(hours=1)) for event in events]


def test_events_are_listed_newest_first_and_only_for_the_organization(db: Database) -> None:
    trail = _write_trail(db, uuid.uuid4())

    events = _list(db, organization_id=trail.organization_id)

    assert _hours(events) == [5, 4, 3, 2, 1, 0]
    assert {event.organization_id for event in events} == {trail.organization_id}


@pytest.mark.parametrize(
    ("filters", "hours"),
    [
        ({"patient": "a"}, [3, 1, 0]),
        ({"principal_id": "key:bob"}, [4, 2]),
        ({"action": "read"}, [4, 2, 0]),
        ({"outcome": "denied"}, [3]),
        ({"occurred_from": START + timedelta(hours=2)}, [5, 4, 3, 2]),
        ({"occurred_to": START + timedelta(hours=2)}, [1, 0]),
        ({"patient": "b", "principal_id": "key:alice"}, [5]),
        ({"patient": "a", "action": "create"}, []),
    ],
)
def test_filters_combine(db: Database, filters: dict[str, Any], hours: list[int]) -> None:
    trail = _write_trail(db, uuid.uuid4())
    filters = dict(filters)  # the parameter is shared by both backends' runs
    patient = filters.pop("patient", None)
    if patient is not None:
        filters["patient_id"] = trail.patient_a if patient == "a" else trail.patient_b

    events = _list(db, organization_id=trail.organization_id, **filters)

    assert _hours(events) == hours


def test_keyset_pages_cover_every_event_once(db: Database) -> None:
    trail = _write_trail(db, uuid.uuid4())
    seen: list[AuditEvent] = []
    before_seq: int | None = None

    while True:
        page = _list(db, organization_id=trail.organization_id, limit=4, before_seq=before_seq)
        seen.extend(page[:3])
        if len(page) <= 3:
            break
        before_seq = page[2].seq

    assert _hours(seen) == [5, 4, 3, 2, 1, 0]


def test_the_route_pages_through_filtered_events(db: Database, client: TestClient) -> None:
    trail = _write_trail(db, DEFAULT_ORGANIZATION_ID)
    params: dict[str, Any] = {"patient_id": str(trail.patient_b), "limit": 2}

    first = client.get("/api/v1/audit-events", params=params)
    assert first.status_code == 200, first.text
    second = client.get(
        "/api/v1/audit-events", params={**params, "cursor": first.json()["next_cursor"]}
    )
    assert second.status_code == 200, second.text

    assert [item["action"] for item in first.json()["items"]] == ["create", "read"]
    assert [item["action"] for item in second.json()["items"]] == ["read"]
    assert second.json()["next_cursor"] is None
    item = second.json()["items"][0]
    assert item["patient_id"] == str(trail.patient_b)
    assert item["principal_id"] == "key:bob"
    assert item["occurred_at"] == "2026-11-20T10:00:00Z"
    assert len(item["hash"]) == 64


def test_the_route_refuses_a_forged_cursor_and_a_time_without_offset(
    client: TestClient,
) -> None:
    forged = client.get("/api/v1/audit-events", params={"cursor": "bm90LWEtY3Vyc29y"})
    naive = client.get("/api/v1/audit-events", params={"occurred_from": "2026-11-20T08:00:00"})

    assert forged.status_code == 400
    assert forged.json()["type"].endswith("/invalid-cursor")
    assert naive.status_code == 422
    assert naive.headers["content-type"] == "application/problem+json"


def test_the_route_needs_the_admin_role(
    client: TestClient, api_keys: dict[str, dict[str, str]]
) -> None:
    """`audit:read` belongs to admins only: clinicians and integrations are 403, no key is 401."""
    for role in ("integration", "clinician"):
        response = client.get(
            "/api/v1/audit-events", headers={"X-API-Key": api_keys["default"][role]}
        )
        assert response.status_code == 403, (role, response.text)
    assert client.get("/api/v1/audit-events", auth=None).status_code == 401
    admin = client.get("/api/v1/audit-events", headers={"X-API-Key": api_keys["default"]["admin"]})
    assert admin.status_code == 200, admin.text


def test_the_route_shows_only_the_callers_organization(
    db: Database, client: TestClient, api_keys: dict[str, dict[str, str]]
) -> None:
    trail = _write_trail(db, DEFAULT_ORGANIZATION_ID)
    other_admin = {"X-API-Key": api_keys["other-clinic"]["admin"]}

    response = client.get(
        "/api/v1/audit-events", params={"patient_id": str(trail.patient_b)}, headers=other_admin
    )

    assert response.status_code == 200, response.text
    assert response.json()["items"] == []
