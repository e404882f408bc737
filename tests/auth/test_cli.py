"""The operator commands behind `python -m app create-api-key` / `revoke-api-key`."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service
from app.auth.cli import create_api_key_command, revoke_api_key_command
from app.auth.principal import Principal, Role
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import NotFoundError, UnprocessableError
from tests.conftest import Database


def authenticate(db: Database, token: str) -> Principal | None:
    async def go(session: AsyncSession) -> Principal | None:
        return await service.authenticate_api_key(
            session, token=token, now=utcnow() + timedelta(seconds=1), touch_interval=60
        )

    return db.in_session(go)


def test_create_prints_a_working_key_as_its_last_line(settings: Settings, db: Database) -> None:
    org = f"clinic-{uuid.uuid4().hex[:8]}"

    output = create_api_key_command(settings, org=org, role="clinician", name="front desk")
    again = create_api_key_command(settings, org=org, role="integration", name="LIS")

    key = output.splitlines()[-1]
    principal = authenticate(db, key)
    assert principal is not None
    assert principal.role is Role.CLINICIAN
    assert output.splitlines()[0] == again.splitlines()[0]  # same organization, reused
    assert f"({principal.organization_id})" in output.splitlines()[0]
    second = authenticate(db, again.splitlines()[-1])
    assert second is not None
    assert second.organization_id == principal.organization_id


def test_create_refuses_an_unknown_role(settings: Settings) -> None:
    with pytest.raises(UnprocessableError):
        create_api_key_command(settings, org="clinic", role="root", name="x")


def test_revoke_by_prefix_then_again(settings: Settings, db: Database) -> None:
    output = create_api_key_command(
        settings, org=f"clinic-{uuid.uuid4().hex[:8]}", role="admin", name="ops"
    )
    key = output.splitlines()[-1]
    prefix = key[: len("mlk_") + 12]

    first = revoke_api_key_command(settings, key=prefix)
    second = revoke_api_key_command(settings, key=key)

    assert first.endswith("revoked")
    assert "already revoked" in second
    assert authenticate(db, key) is None


def test_revoke_unknown_key_is_not_found(settings: Settings) -> None:
    with pytest.raises(NotFoundError):
        revoke_api_key_command(settings, key=str(uuid.uuid4()))


def test_a_new_organization_starts_with_the_shipped_ranges_and_plan_rules(
    settings: Settings, client: TestClient
) -> None:
    org = f"clinic-{uuid.uuid4().hex[:8]}"
    clinician = create_api_key_command(settings, org=org, role="clinician", name="c")
    admin = create_api_key_command(settings, org=org, role="admin", name="a")

    for path in ("/api/v1/range-sets/active", "/api/v1/plan-rule-sets/active"):
        response = client.get(path, headers={"X-API-Key": admin.splitlines()[-1]})
        assert response.status_code == 200, (path, response.text)
        assert response.json()["name"] == "default"
    rules = client.get(
        "/api/v1/plan-rule-sets", headers={"X-API-Key": clinician.splitlines()[-1]}
    ).json()
    assert len(rules["items"]) == 1  # a second key for the organization loads nothing again
