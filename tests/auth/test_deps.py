"""Authentication and scope checks through HTTP, and the API-key admin routes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import keys, service
from app.auth.deps import CanReadPanels, CurrentOrganizationId, CurrentPrincipal
from app.auth.principal import Role
from app.core.config import Settings
from app.core.db import utcnow
from app.main import create_app
from app.models.api_key import ApiKey
from tests.auth.tokens import AUDIENCE, ISSUER, SigningKeys, claims, make_signing_keys, sign
from tests.conftest import Database

CHALLENGE = 'Bearer realm="mineral-labs"'


@pytest.fixture(scope="module")
def signing_keys() -> SigningKeys:
    return make_signing_keys()


@pytest.fixture(scope="module")
def auth_client(
    settings: Settings, signing_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    jwks = signing_keys.write_jwks(tmp_path_factory.mktemp("oidc") / "jwks.json")
    app_settings = settings.model_copy(
        update={"oidc_jwks_file": str(jwks), "oidc_issuer": ISSUER, "oidc_audience": AUDIENCE}
    )
    app = create_app(app_settings)  # includes the API key routes

    @app.get("/test/panels")
    async def read_panels(principal: CanReadPanels) -> dict[str, Any]:
        return {"principal": principal.id, "role": principal.role}

    @app.get("/test/whoami")
    async def whoami(
        request: Request, principal: CurrentPrincipal, organization_id: CurrentOrganizationId
    ) -> dict[str, Any]:
        return {
            "principal": principal.id,
            "organization_id": str(organization_id),
            "kind": principal.kind,
            "on_request_state": request.state.principal is principal,
        }

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def auth_db(auth_client: TestClient) -> Database:
    return Database(auth_client)


def new_organization(db: Database) -> tuple[uuid.UUID, str]:
    name = f"clinic-{uuid.uuid4().hex[:10]}"

    async def go(session: AsyncSession) -> uuid.UUID:
        return (await service.get_or_create_organization(session, name=name)).id

    return db.in_session(go), name


def new_key(
    db: Database, *, organization_id: uuid.UUID, role: Role, **changes: Any
) -> tuple[ApiKey, str]:
    async def go(session: AsyncSession) -> tuple[ApiKey, str]:
        return await service.create_api_key(
            session, organization_id=organization_id, role=role, name="test key", **changes
        )

    return db.in_session(go)


def key_for(db: Database, role: Role) -> str:
    organization_id, _ = new_organization(db)
    return new_key(db, organization_id=organization_id, role=role)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unauthorized(response: Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith(CHALLENGE)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unauthorized")


def test_no_credentials_is_401_with_a_bearer_challenge(auth_client: TestClient) -> None:
    response = auth_client.get("/test/panels")

    assert_unauthorized(response)
    assert response.headers["www-authenticate"] == CHALLENGE


def test_unknown_key_is_401_invalid_token(auth_client: TestClient) -> None:
    response = auth_client.get("/test/panels", headers={"X-API-Key": "mlk_" + "a" * 12 + "_x"})

    assert_unauthorized(response)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_integration_key_reads_panels_by_either_header(
    auth_client: TestClient, auth_db: Database
) -> None:
    full_key = key_for(auth_db, Role.INTEGRATION)

    for headers in ({"X-API-Key": full_key}, bearer(full_key)):
        response = auth_client.get("/test/panels", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "integration"


def test_admin_key_without_the_scope_is_403(auth_client: TestClient, auth_db: Database) -> None:
    response = auth_client.get("/test/panels", headers=bearer(key_for(auth_db, Role.ADMIN)))

    assert response.status_code == 403, response.text
    body = response.json()
    assert body["type"].endswith("/forbidden")
    assert body["required_scopes"] == ["panels:read"]
    assert "www-authenticate" not in response.headers


def test_revoked_key_is_401(auth_client: TestClient, auth_db: Database) -> None:
    organization_id, _ = new_organization(auth_db)
    api_key, full_key = new_key(auth_db, organization_id=organization_id, role=Role.CLINICIAN)
    assert auth_client.get("/test/panels", headers=bearer(full_key)).status_code == 200

    async def go(session: AsyncSession) -> None:
        await service.revoke_api_key(session, organization_id=organization_id, key_id=api_key.id)

    auth_db.in_session(go)

    assert_unauthorized(auth_client.get("/test/panels", headers=bearer(full_key)))


def test_expired_key_is_401(auth_client: TestClient, auth_db: Database) -> None:
    organization_id, _ = new_organization(auth_db)
    an_hour_ago = utcnow() - timedelta(hours=1)
    _, full_key = new_key(
        auth_db,
        organization_id=organization_id,
        role=Role.CLINICIAN,
        now=an_hour_ago - timedelta(days=1),
        expires_at=an_hour_ago,
    )

    assert_unauthorized(auth_client.get("/test/panels", headers=bearer(full_key)))


def test_two_different_credentials_are_401(auth_client: TestClient, auth_db: Database) -> None:
    headers = {
        **bearer(key_for(auth_db, Role.CLINICIAN)),
        "X-API-Key": key_for(auth_db, Role.INTEGRATION),
    }
    assert_unauthorized(auth_client.get("/test/panels", headers=headers))


def test_basic_authorization_is_401(auth_client: TestClient) -> None:
    response = auth_client.get("/test/panels", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert_unauthorized(response)


def test_x_api_key_holding_a_jwt_is_401(
    auth_client: TestClient, auth_db: Database, signing_keys: SigningKeys
) -> None:
    _, name = new_organization(auth_db)
    token = sign(signing_keys.rsa_key, claims(organization=name))
    assert_unauthorized(auth_client.get("/test/panels", headers={"X-API-Key": token}))


def test_principal_is_on_request_state_with_its_organization(
    auth_client: TestClient, auth_db: Database
) -> None:
    organization_id, _ = new_organization(auth_db)
    api_key, full_key = new_key(auth_db, organization_id=organization_id, role=Role.ADMIN)

    body = auth_client.get("/test/whoami", headers=bearer(full_key)).json()

    assert body == {
        "principal": f"key:{api_key.id}",
        "organization_id": str(organization_id),
        "kind": "api_key",
        "on_request_state": True,
    }


def test_request_records_the_keys_last_use(auth_client: TestClient, auth_db: Database) -> None:
    organization_id, _ = new_organization(auth_db)
    api_key, full_key = new_key(auth_db, organization_id=organization_id, role=Role.CLINICIAN)
    before = utcnow()

    auth_client.get("/test/panels", headers=bearer(full_key))

    async def last_used(session: AsyncSession) -> datetime | None:
        stored = await session.get(ApiKey, api_key.id)
        assert stored is not None
        return stored.last_used_at

    recorded = auth_db.in_session(last_used)
    assert recorded is not None
    assert recorded >= before


def test_oidc_token_for_an_existing_organization_is_accepted(
    auth_client: TestClient, auth_db: Database, signing_keys: SigningKeys
) -> None:
    organization_id, name = new_organization(auth_db)
    token = sign(signing_keys.rsa_key, claims(organization=name, role="clinician"))

    response = auth_client.get("/test/whoami", headers=bearer(token))

    assert response.status_code == 200, response.text
    assert response.json()["principal"] == f"oidc:{ISSUER}|user-8f2c"
    assert response.json()["organization_id"] == str(organization_id)
    assert auth_client.get("/test/panels", headers=bearer(token)).status_code == 200


def test_oidc_token_for_an_unknown_organization_is_401(
    auth_client: TestClient, signing_keys: SigningKeys
) -> None:
    token = sign(signing_keys.rsa_key, claims(organization="no-such-clinic"))
    assert_unauthorized(auth_client.get("/test/whoami", headers=bearer(token)))


def test_expired_oidc_token_is_401(
    auth_client: TestClient, auth_db: Database, signing_keys: SigningKeys
) -> None:
    _, name = new_organization(auth_db)
    now = int(datetime.now().timestamp())
    token = sign(signing_keys.rsa_key, claims(organization=name, iat=now - 900, exp=now - 600))
    assert_unauthorized(auth_client.get("/test/whoami", headers=bearer(token)))


def test_oidc_admin_without_the_scope_is_403(
    auth_client: TestClient, auth_db: Database, signing_keys: SigningKeys
) -> None:
    _, name = new_organization(auth_db)
    token = sign(
        signing_keys.ec_key, claims(organization=name, role="admin"), algorithm="ES256", kid="ec-1"
    )
    assert auth_client.get("/test/panels", headers=bearer(token)).status_code == 403


def test_refusals_log_a_reason_but_no_credential(
    auth_client: TestClient,
    auth_db: Database,
    signing_keys: SigningKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, name = new_organization(auth_db)
    token = sign(signing_keys.other_rsa_key, claims(organization=name, sub="patient-facing-user"))
    organization_id, _ = new_organization(auth_db)
    api_key, full_key = new_key(auth_db, organization_id=organization_id, role=Role.CLINICIAN)
    wrong_secret = full_key[:-4] + ("AAAA" if not full_key.endswith("AAAA") else "BBBB")
    app_logger = logging.getLogger("app")
    app_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="app"):
            assert_unauthorized(auth_client.get("/test/panels", headers=bearer(token)))
            assert_unauthorized(auth_client.get("/test/panels", headers=bearer(wrong_secret)))
    finally:
        app_logger.removeHandler(caplog.handler)

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "signature" in logged
    assert f"wrong secret for API key {api_key.id}" in logged
    for secret in (token, name, "patient-facing-user", full_key, wrong_secret, full_key[17:]):
        assert secret not in logged


def test_openapi_declares_both_security_schemes(auth_client: TestClient) -> None:
    document = auth_client.get("/openapi.json").json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["Bearer"]["type"] == "http"
    assert schemes["Bearer"]["scheme"] == "bearer"
    operation = document["paths"]["/test/panels"]["get"]
    assert {"Bearer": []} in operation["security"]
    assert {"ApiKey": []} in operation["security"]
    create = document["paths"]["/api/v1/api-keys"]["post"]
    assert {"401", "403", "422"} <= set(create["responses"])
    assert "WWW-Authenticate" in create["responses"]["401"]["headers"]


# --- the API-key admin routes ---------------------------------------------------------------


@pytest.fixture
def admin(auth_db: Database) -> tuple[uuid.UUID, dict[str, str]]:
    organization_id, _ = new_organization(auth_db)
    _, full_key = new_key(auth_db, organization_id=organization_id, role=Role.ADMIN)
    return organization_id, {"X-API-Key": full_key}


def create_key(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/api-keys", json={"name": "LIS", "role": "integration", **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_admin_creates_a_key_that_works_at_once(
    auth_client: TestClient, admin: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, headers = admin
    created = create_key(auth_client, headers, expires_at="2099-01-01T00:00:00Z")

    assert created["key"].startswith(created["prefix"] + "_")
    assert created["role"] == "integration"
    assert created["status"] == "active"
    assert created["created_by"].startswith("key:")
    assert created["expires_at"].startswith("2099-01-01T00:00:00")
    assert auth_client.get("/test/panels", headers=bearer(created["key"])).status_code == 200


def test_listing_never_shows_the_secret(
    auth_client: TestClient, auth_db: Database, admin: tuple[uuid.UUID, dict[str, str]]
) -> None:
    organization_id, headers = admin
    created = create_key(auth_client, headers)

    response = auth_client.get("/api/v1/api-keys", headers=headers)

    assert response.status_code == 200, response.text
    assert created["key"] not in response.text
    parsed = keys.parse_key(created["key"])
    assert parsed is not None
    assert parsed[1] not in response.text

    async def stored_hash(session: AsyncSession) -> str:
        stored = await session.get(ApiKey, uuid.UUID(created["id"]))
        assert stored is not None
        return stored.secret_hash

    assert auth_db.in_session(stored_hash) not in response.text
    items = response.json()["items"]
    assert [item["id"] for item in items][0] == created["id"]
    assert all("key" not in item and "secret_hash" not in item for item in items)


def test_listing_pages_through_the_organizations_keys_only(
    auth_client: TestClient, auth_db: Database, admin: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, headers = admin
    mine = [create_key(auth_client, headers, name=f"key {i}")["id"] for i in range(3)]
    key_for(auth_db, Role.INTEGRATION)  # another organization's

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = auth_client.get("/api/v1/api-keys", params=params, headers=headers).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # The admin's own key plus the three it created, newest first, nothing else.
    assert len(seen) == 4
    assert seen[:3] == mine[::-1]


def test_revoked_key_stops_working_and_revoking_again_is_harmless(
    auth_client: TestClient, admin: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, headers = admin
    created = create_key(auth_client, headers)
    url = f"/api/v1/api-keys/{created['id']}/revoke"

    first = auth_client.post(url, headers=headers)
    again = auth_client.post(url, headers=headers)

    assert first.status_code == 200, first.text
    assert first.json()["status"] == "revoked"
    assert again.json()["revoked_at"] == first.json()["revoked_at"]
    assert_unauthorized(auth_client.get("/test/panels", headers=bearer(created["key"])))


def test_another_organizations_key_is_404(
    auth_client: TestClient, auth_db: Database, admin: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, headers = admin
    other_organization_id, _ = new_organization(auth_db)
    other_key, other_full_key = new_key(
        auth_db, organization_id=other_organization_id, role=Role.INTEGRATION
    )

    response = auth_client.post(f"/api/v1/api-keys/{other_key.id}/revoke", headers=headers)

    assert response.status_code == 404, response.text
    assert auth_client.get("/test/panels", headers=bearer(other_full_key)).status_code == 200


@pytest.mark.parametrize("role", [Role.INTEGRATION, Role.CLINICIAN])
def test_non_admins_cannot_manage_keys(
    auth_client: TestClient, auth_db: Database, role: Role
) -> None:
    headers = bearer(key_for(auth_db, role))

    assert auth_client.get("/api/v1/api-keys", headers=headers).status_code == 403
    create = auth_client.post(
        "/api/v1/api-keys", json={"name": "mine", "role": "admin"}, headers=headers
    )
    assert create.status_code == 403
    revoke = auth_client.post(f"/api/v1/api-keys/{uuid.uuid4()}/revoke", headers=headers)
    assert revoke.status_code == 403


def test_key_routes_need_credentials(auth_client: TestClient) -> None:
    assert_unauthorized(auth_client.get("/api/v1/api-keys"))
    assert_unauthorized(auth_client.post("/api/v1/api-keys", json={"name": "x", "role": "admin"}))


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "role": "integration", "organization_id": str(uuid.uuid4())},
        {"name": "x", "role": "integration", "prefix": "aaaaaaaaaaaa"},
        {"name": "x", "role": "superuser"},
        {"name": "", "role": "integration"},
        {"name": "x", "role": "integration", "expires_at": "2099-01-01T00:00:00"},
        {"name": "x", "role": "integration", "expires_at": "2001-01-01T00:00:00Z"},
    ],
)
def test_invalid_or_server_owned_fields_are_422(
    auth_client: TestClient, admin: tuple[uuid.UUID, dict[str, str]], body: dict[str, Any]
) -> None:
    _, headers = admin
    response = auth_client.post("/api/v1/api-keys", json=body, headers=headers)
    assert response.status_code == 422, response.text


def test_key_creation_is_not_open_to_an_unknown_jwt_org(
    auth_client: TestClient, signing_keys: SigningKeys
) -> None:
    token = sign(signing_keys.rsa_key, claims(organization="nobody", role="admin"))
    response = auth_client.post(
        "/api/v1/api-keys", json={"name": "x", "role": "admin"}, headers=bearer(token)
    )
    assert_unauthorized(response)
