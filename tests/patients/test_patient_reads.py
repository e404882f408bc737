"""A patient a request has already read is not read again in the same transaction: a nested
route (`/patients/{id}/...`) finds its patient, then the service's own check answers from the
session instead of a second round trip (app.patients.repository.get_plain)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, select

from app.models.patient import Patient
from app.patients import repository
from tests.builders import make_patient, panel_body, result
from tests.conftest import Database


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    engine = db.app.state.engine.sync_engine
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _patient_reads(seen: list[str]) -> int:
    return sum(1 for s in seen if s.startswith("SELECT patient.") and "FROM patient " in s)


def test_a_patients_history_and_panel_list_read_the_patient_once(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    posted = client.post(
        "/api/v1/panels", json=panel_body(patient, [result("magnesium", "1.6", "mg/dL")])
    )
    assert posted.status_code == 201, posted.text
    for path in ("analytes/magnesium/history", "panels", "ratios/ca_mg_molar/history"):
        with _statements(db) as seen:
            response = client.get(f"/api/v1/patients/{patient['id']}/{path}")
        assert response.status_code == 200, (path, response.text)
        assert _patient_reads(seen) == 1, (path, seen)
    # Another organization's patient, or an unknown one, is still 404.
    assert client.get(f"/api/v1/patients/{uuid.uuid4()}/panels").status_code == 404


def test_only_a_patient_read_whole_in_this_session_and_of_this_organization_is_reused(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    patient_id = uuid.UUID(patient["id"])

    async def go(session: Any) -> None:
        organization_id = await session.scalar(
            select(Patient.organization_id).where(Patient.id == patient_id)
        )
        with _statements(db) as seen:
            first = await repository.get_plain(
                session, organization_id=organization_id, patient_id=patient_id
            )
            again = await repository.get_plain(
                session, organization_id=organization_id, patient_id=patient_id
            )
            assert first is not None
            assert again is first
            assert len(seen) == 1
            other = await repository.get_plain(
                session, organization_id=uuid.uuid4(), patient_id=patient_id
            )
            assert other is None  # never another organization's patient: asked, not found
            assert len(seen) == 2
            session.expire(first)  # e.g. a rolled-back savepoint: read again
            reread = await repository.get_plain(
                session, organization_id=organization_id, patient_id=patient_id
            )
            assert reread is first
            assert reread.sex == patient["sex"]
            assert len(seen) == 3

    db.in_session(go)
