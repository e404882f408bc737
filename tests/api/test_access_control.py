"""Who may call: no credentials, refused credentials (revoked, expired, unknown) and wrong roles.

* No credentials → 401 with a `WWW-Authenticate: Bearer realm="mineral-labs"` challenge, on
  every protected route.
* A revoked or expired key (and an unknown or malformed one) → 401 with
  `error="invalid_token"`, and the answer never says which of these it was.
* A role without the operation's scope → 403, and nothing is stored.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service
from app.auth.cli import revoke_api_key_command
from app.auth.principal import Role
from app.core.config import Settings
from app.core.db import utcnow
from app.models.organization import DEFAULT_ORGANIZATION_ID
from tests.api.access import Keys, key_header, make_records, range_set_document
from tests.api.test_route_matrix import MATRIX
from tests.builders import expect_problem, make_patient, panel_body, result
from tests.conftest import DEFAULT_ORGANIZATION, Database
from tests.interop.fhir.builders import expect_outcome

CHALLENGE = 'Bearer realm="mineral-labs"'
INVALID_TOKEN = 'Bearer realm="mineral-labs", error="invalid_token"'


def _concrete(path: str) -> str:
    """A template path with every parameter filled (ids that exist nowhere)."""
    return (
        path.replace("{analyte}", "magnesium")
        .replace("{patient_id}", str(uuid.uuid4()))
        .replace("{panel_id}", str(uuid.uuid4()))
        .replace("{range_set_id}", str(uuid.uuid4()))
        .replace("{key_id}", str(uuid.uuid4()))
    )


def _refused(response: Response, challenge: str) -> dict[str, object]:
    problem = expect_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == challenge
    return problem


def _new_key(db: Database, role: str, **kwargs: object) -> tuple[uuid.UUID, str]:
    async def go(session: AsyncSession) -> tuple[uuid.UUID, str]:
        api_key, full_key = await service.create_api_key(
            session,
            organization_id=DEFAULT_ORGANIZATION_ID,
            role=Role(role),
            name=f"access-control {role}",
            **kwargs,  # type: ignore[arg-type]
        )
        return api_key.id, full_key

    return db.in_session(go)


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX), ids=lambda value: str(value))
def test_no_credentials_is_401_with_a_challenge(
    client: TestClient, db: Database, method: str, path: str
) -> None:
    before = db.counts()

    response = client.request(method, _concrete(path), auth=None, json={})

    if path.startswith("/fhir/"):
        # The FHIR facade answers in FHIR: an OperationOutcome, with the same challenge.
        outcome = expect_outcome(response, 401)
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        assert "X-API-Key" in str(outcome["issue"][0]["diagnostics"])
    else:
        problem = _refused(response, CHALLENGE)
        assert "X-API-Key" in str(problem["detail"])  # it tells the caller how to authenticate
    assert db.counts() == before


def test_a_malformed_authorization_header_is_401(client: TestClient) -> None:
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "mlk_notbearer"):
        response = client.get("/api/v1/patients", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"].startswith(CHALLENGE)


def test_unknown_and_garbled_keys_are_401_invalid_token(client: TestClient, api_keys: Keys) -> None:
    real = api_keys[DEFAULT_ORGANIZATION]["integration"]
    tampered = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    for key in (tampered, "mlk_000000000000_" + "x" * 43, "not-a-key", real + "x"):
        for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
            _refused(client.get("/api/v1/patients", headers=headers), INVALID_TOKEN)


def test_two_different_credentials_are_refused(client: TestClient, api_keys: Keys) -> None:
    keys = api_keys[DEFAULT_ORGANIZATION]
    headers = {"X-API-Key": keys["integration"], "Authorization": f"Bearer {keys['clinician']}"}

    _refused(client.get("/api/v1/patients", headers=headers), INVALID_TOKEN)


def test_a_key_works_as_bearer_and_as_x_api_key(client: TestClient, api_keys: Keys) -> None:
    key = api_keys[DEFAULT_ORGANIZATION]["clinician"]

    assert client.get("/api/v1/patients", headers={"X-API-Key": key}).status_code == 200
    assert (
        client.get("/api/v1/patients", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )


def test_a_key_revoked_through_the_api_is_401_from_the_next_request(
    client: TestClient, db: Database
) -> None:
    key_id, key = _new_key(db, "clinician")
    assert client.get("/api/v1/patients", headers={"X-API-Key": key}).status_code == 200

    revoked = client.post(f"/api/v1/api-keys/{key_id}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"

    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        problem = _refused(client.get("/api/v1/patients", headers=headers), INVALID_TOKEN)
        assert "revoked" in str(problem["detail"])  # the generic sentence, not a diagnosis
        assert problem["detail"] == (
            "The credentials are not valid (unknown, malformed, revoked or expired)."
        )


def test_a_key_revoked_with_the_command_is_401(
    client: TestClient, db: Database, settings: Settings
) -> None:
    key_id, key = _new_key(db, "integration")
    assert client.get("/api/v1/patients", headers={"X-API-Key": key}).status_code == 200

    assert revoke_api_key_command(settings, key=str(key_id)).endswith("revoked")

    _refused(client.get("/api/v1/patients", headers={"X-API-Key": key}), INVALID_TOKEN)
    before = db.counts()
    posted = client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": "urn:test:mrn", "value": "REVOKED-1"}], "sex": "male"},
        headers={"X-API-Key": key},
    )
    _refused(posted, INVALID_TOKEN)
    assert db.counts() == before


def test_an_expired_key_is_401_and_answers_like_a_revoked_one(
    client: TestClient, db: Database
) -> None:
    two_hours_ago = utcnow() - timedelta(hours=2)
    _, expired = _new_key(
        db, "integration", now=two_hours_ago, expires_at=two_hours_ago + timedelta(hours=1)
    )
    revoked_id, revoked = _new_key(db, "integration")
    assert client.post(f"/api/v1/api-keys/{revoked_id}/revoke").status_code == 200

    expired_response = client.get("/api/v1/patients", headers={"X-API-Key": expired})
    revoked_response = client.get("/api/v1/patients", headers={"X-API-Key": revoked})

    _refused(expired_response, INVALID_TOKEN)
    assert expired_response.json() == revoked_response.json()
    listed = client.get("/api/v1/api-keys", params={"limit": 200}).json()["items"]
    assert {item["status"] for item in listed if item["name"] == "access-control integration"} >= {
        "expired",
        "revoked",
    }


def test_a_key_that_expires_later_works_until_then(client: TestClient, db: Database) -> None:
    _, key = _new_key(db, "integration", expires_at=utcnow() + timedelta(hours=1))

    assert client.get("/api/v1/patients", headers={"X-API-Key": key}).status_code == 200


def test_a_clinician_cannot_post_a_panel(client: TestClient, db: Database, api_keys: Keys) -> None:
    patient = make_patient(client)
    before = db.counts()
    body = panel_body(patient, [result("magnesium", "0.8", "mmol/L")])

    response = client.post(
        "/api/v1/panels",
        json=body,
        headers={
            **key_header(api_keys, DEFAULT_ORGANIZATION, "clinician"),
            "Idempotency-Key": "c1",
        },
    )

    problem = expect_problem(response, 403, "forbidden")
    assert "clinician" in str(problem["detail"])
    assert "panels:write" in str(problem["detail"])
    assert "WWW-Authenticate" not in response.headers
    assert db.counts() == before


def test_an_integration_cannot_import_or_activate_ranges(
    client: TestClient, db: Database, api_keys: Keys
) -> None:
    records = make_records(client, api_keys)
    integration = key_header(api_keys, DEFAULT_ORGANIZATION, "integration")
    before = db.counts()

    imported = client.post(
        "/api/v1/range-sets", json=range_set_document("not-allowed"), headers=integration
    )
    range_set_id = records.draft_range_set["id"]
    activated = client.post(
        f"/api/v1/range-sets/{range_set_id}/activate",
        headers={**integration, "If-Match": "*"},
    )

    expect_problem(imported, 403, "forbidden")
    expect_problem(activated, 403, "forbidden")
    assert db.counts() == before
    assert client.get(f"/api/v1/range-sets/{range_set_id}").json()["status"] == "draft"


def test_an_admin_cannot_read_patient_data(
    client: TestClient, db: Database, api_keys: Keys
) -> None:
    records = make_records(client, api_keys)
    admin = key_header(api_keys, DEFAULT_ORGANIZATION, "admin")

    for path in (
        f"/api/v1/patients/{records.patient_id}",
        "/api/v1/patients",
        f"/api/v1/panels/{records.panel_id}",
        f"/api/v1/patients/{records.patient_id}/panels",
    ):
        response = client.get(path, headers=admin)
        expect_problem(response, 403, "forbidden")
        assert records.mrn not in response.text
        assert records.patient_id not in response.text.replace(path, "")


def test_clinicians_and_integrations_cannot_manage_keys_or_read_the_audit_trail(
    client: TestClient, db: Database, api_keys: Keys
) -> None:
    before = db.count("api_key")
    for role in ("integration", "clinician"):
        headers = key_header(api_keys, DEFAULT_ORGANIZATION, role)
        created = client.post(
            "/api/v1/api-keys", json={"name": "escalate", "role": "admin"}, headers=headers
        )
        expect_problem(created, 403, "forbidden")
        expect_problem(client.get("/api/v1/api-keys", headers=headers), 403, "forbidden")
        expect_problem(client.get("/api/v1/audit-events", headers=headers), 403, "forbidden")
    assert db.count("api_key") == before


def test_a_forbidden_role_is_403_before_any_lookup(client: TestClient, api_keys: Keys) -> None:
    """403 for an id that does not exist too: the role check does not depend on the record."""
    admin = key_header(api_keys, DEFAULT_ORGANIZATION, "admin")

    response = client.get(f"/api/v1/patients/{uuid.uuid4()}", headers=admin)

    expect_problem(response, 403, "forbidden")


def test_openapi_declares_the_schemes_on_every_protected_operation(client: TestClient) -> None:
    """Swagger UI's Authorize button applies to an operation only if it names the schemes."""
    document = client.get("/openapi.json", auth=None).json()

    assert set(document["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    for method, path in MATRIX:
        if path.startswith("/fhir/"):
            continue  # FHIR clients discover the facade through /fhir/R4/metadata instead
        security = document["paths"][path][method.lower()].get("security")
        assert security is not None, (method, path)
        assert {name for requirement in security for name in requirement} == {"ApiKey", "Bearer"}
        assert {} not in security  # no anonymous alternative
    for path in ("/health/live", "/health/ready"):
        assert "security" not in document["paths"][path]["get"]
