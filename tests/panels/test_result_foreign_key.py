"""A result's one foreign key, (panel_id, organization_id, patient_id) -> panel (migration
b8d0f2a4c6e1), on both databases: the database itself refuses a result whose organization or
patient is not its panel's, a panel's deletion still takes its results with it, and a patient
with panels (so with results) still cannot be deleted (the panel's own RESTRICT key)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from app.models.panel import Panel, Result
from app.models.patient import Patient
from tests.builders import make_patient, post_panel, result
from tests.conftest import OTHER_ORGANIZATION, Database

_RESULT: Any = Result.__table__


def _panel(client: TestClient, patient: dict[str, Any]) -> dict[str, Any]:
    return post_panel(
        client,
        patient,
        [result("magnesium", "0.8", "mmol/L"), result("calcium", "9.1", "mg/dL")],
    )


def _stored_result(db: Database, panel_id: str) -> dict[str, Any]:
    async def go(session: Any) -> dict[str, Any]:
        query = select(_RESULT).where(_RESULT.c.panel_id == uuid.UUID(panel_id)).limit(1)
        return dict((await session.execute(query)).one()._mapping)

    return db.in_session(go)


def _insert_result(db: Database, row: dict[str, Any]) -> None:
    async def go(session: Any) -> None:
        await session.execute(insert(_RESULT).values(**row))

    db.in_session(go)


def _results_of(db: Database, panel_id: str) -> int:
    async def go(session: Any) -> int:
        query = select(func.count()).where(_RESULT.c.panel_id == uuid.UUID(panel_id))
        return int((await session.execute(query)).scalar_one())

    return db.in_session(go)


def _organization_of(db: Database, patient_id: str) -> uuid.UUID:
    async def go(session: Any) -> uuid.UUID:
        query = select(Patient.organization_id).where(Patient.id == uuid.UUID(patient_id))
        found: uuid.UUID = (await session.execute(query)).scalar_one()
        return found

    return db.in_session(go)


def _delete(db: Database, model: type[Patient] | type[Panel], row_id: str) -> None:
    async def go(session: Any) -> None:
        await session.execute(delete(model).where(model.id == uuid.UUID(row_id)))

    db.in_session(go)


def test_sqlite_connections_enforce_foreign_keys(db: Database, backend: str) -> None:
    """SQLite checks foreign keys only on a connection that asks for it (app.core.db); on
    PostgreSQL they always are."""
    if backend != "sqlite":
        return

    async def go(session: Any) -> int:
        return int((await session.execute(text("PRAGMA foreign_keys"))).scalar_one())

    assert db.in_session(go) == 1


def test_the_database_refuses_a_result_whose_patient_or_organization_is_not_its_panels(
    client: TestClient, db: Database, api_keys: dict[str, dict[str, str]]
) -> None:
    panel = _panel(client, make_patient(client))
    same_org_patient = make_patient(client)
    response = client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": "urn:test:mrn", "value": "FK-OTHER"}], "sex": "male"},
        headers={"X-API-Key": api_keys[OTHER_ORGANIZATION]["integration"]},
    )
    assert response.status_code == 201, response.text
    other_org_patient = uuid.UUID(response.json()["id"])
    other_org = _organization_of(db, str(other_org_patient))
    stored = _stored_result(db, panel["id"])
    assert other_org != stored["organization_id"]
    before = _results_of(db, panel["id"])

    def copy(**changes: Any) -> dict[str, Any]:
        return {**stored, "id": uuid.uuid4(), "position": 99, **changes}

    refused = (
        # Another patient of the panel's organization.
        copy(patient_id=uuid.UUID(same_org_patient["id"])),
        # Another organization's patient, with that organization.
        copy(organization_id=other_org, patient_id=other_org_patient),
        # The panel's patient under another organization.
        copy(organization_id=other_org),
        # No such panel.
        copy(panel_id=uuid.uuid4()),
    )
    for row in refused:
        with pytest.raises(IntegrityError):
            _insert_result(db, row)
    assert _results_of(db, panel["id"]) == before

    # The same row with the panel's own organization and patient is stored: what the database
    # refused above is the mismatch, nothing else about the row.
    _insert_result(db, copy())
    assert _results_of(db, panel["id"]) == before + 1


def test_a_patient_with_panels_cannot_be_deleted(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    panel = _panel(client, patient)

    with pytest.raises(IntegrityError):
        _delete(db, Patient, patient["id"])
    assert _results_of(db, panel["id"]) == 2
    assert client.get(f"/api/v1/panels/{panel['id']}").status_code == 200


def test_deleting_a_panel_deletes_its_results(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    panel = _panel(client, patient)
    kept = _panel(client, patient)

    _delete(db, Panel, panel["id"])

    assert _results_of(db, panel["id"]) == 0
    assert _results_of(db, kept["id"]) == 2
