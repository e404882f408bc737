"""What is audited besides patient data: every change of who may see what (API keys, range
sets, rule sets, code maps), reads of the audit trail, OIDC logins; and the real outcome and
every patient of HL7 messages and patient searches."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.oidc import audit_first_use
from app.auth.principal import Principal, Role, scopes_for
from tests.api.access import Keys, key_header, range_set_document
from tests.audit.builders import rows_for
from tests.builders import MRN_SYSTEM, make_patient
from tests.conftest import DEFAULT_ORGANIZATION, Database
from tests.interop.hl7.messages import magnesium_mmol, oru

ER7 = {"Content-Type": "x-application/hl7-v2+er7"}


def _send(
    client: TestClient, db: Database, method: str, url: str, **kwargs: Any
) -> tuple[Response, list[dict[str, Any]]]:
    request_id = f"coverage-{uuid.uuid4().hex}"
    headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
    response = client.request(method, url, headers=headers, **kwargs)
    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))
    return response, rows


def _summary(rows: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str, int | None]]:
    return [
        (r["action"], r["resource_type"], r["resource_id"], r["outcome"], r["status_code"])
        for r in rows
    ]


def _principal_of(client: TestClient, key: str) -> str:
    """`key:<id>` of an API key, from the key listing (prefix match)."""
    prefix = "_".join(key.split("_")[:2])
    listing = client.get("/api/v1/api-keys", params={"limit": 200}).json()["items"]
    return f"key:{next(item['id'] for item in listing if item['prefix'] == prefix)}"


def test_an_admin_may_issue_a_clinician_key_but_never_silently(
    client: TestClient, db: Database, api_keys: Keys
) -> None:
    admin = _principal_of(client, api_keys[DEFAULT_ORGANIZATION]["admin"])

    created, rows = _send(
        client, db, "POST", "/api/v1/api-keys", json={"name": "by admin", "role": "clinician"}
    )
    assert created.status_code == 201, created.text
    key_id, key = created.json()["id"], created.json()["key"]
    assert created.json()["created_by"] == admin
    assert _summary(rows) == [("create", "api_key", key_id, "success", 201)]
    assert (rows[0]["principal_id"], rows[0]["role"], rows[0]["patient_id"]) == (
        admin,
        "admin",
        None,
    )

    # The listing names the issuer; what the key then reads is audited under the key.
    listing = client.get("/api/v1/api-keys", params={"limit": 200}).json()["items"]
    assert next(item for item in listing if item["id"] == key_id)["created_by"] == admin
    patient = make_patient(client)
    read, [read_row] = _send(
        client, db, "GET", f"/api/v1/patients/{patient['id']}", headers={"X-API-Key": key}
    )
    assert read.status_code == 200
    assert read_row["principal_id"] == f"key:{key_id}"

    revoked, rows = _send(client, db, "POST", f"/api/v1/api-keys/{key_id}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_by"] == admin
    assert _summary(rows) == [("revoke", "api_key", key_id, "success", 200)]

    # A role that may not manage keys: the attempt is recorded as denied.
    denied, rows = _send(
        client,
        db,
        "POST",
        "/api/v1/api-keys",
        json={"name": "sneaky", "role": "admin"},
        headers=key_header(api_keys, DEFAULT_ORGANIZATION, "clinician"),
    )
    assert denied.status_code == 403
    assert _summary(rows) == [("create", "api_key", None, "denied", 403)]
    unknown = str(uuid.uuid4())
    missing, rows = _send(client, db, "POST", f"/api/v1/api-keys/{unknown}/revoke")
    assert missing.status_code == 404
    assert _summary(rows) == [("revoke", "api_key", unknown, "denied", 404)]


def test_range_set_and_rule_set_changes_are_audited(client: TestClient, db: Database) -> None:
    imported, rows = _send(
        client, db, "POST", "/api/v1/range-sets", json=range_set_document("audited")
    )
    assert imported.status_code == 201, imported.text
    range_set = imported.json()["id"]
    assert _summary(rows) == [("create", "range_set", range_set, "success", 201)]

    etag = client.get(f"/api/v1/range-sets/{range_set}").headers["ETag"]
    activated, rows = _send(
        client, db, "POST", f"/api/v1/range-sets/{range_set}/activate", headers={"If-Match": etag}
    )
    assert activated.status_code == 200, activated.text
    assert _summary(rows) == [("activate", "range_set", range_set, "success", 200)]
    stale, rows = _send(
        client, db, "POST", f"/api/v1/range-sets/{range_set}/activate", headers={"If-Match": etag}
    )
    assert stale.status_code == 412
    assert _summary(rows) == [("activate", "range_set", range_set, "error", 412)]

    document = client.get("/api/v1/plan-rule-sets/active").json()["document"]
    rules, rows = _send(
        client,
        db,
        "POST",
        "/api/v1/plan-rule-sets",
        params={"activate": "true"},
        json=document | {"name": "audited rules"},
    )
    assert rules.status_code == 201, rules.text
    assert _summary(rows) == [("activate", "plan_rule_set", rules.json()["id"], "success", 201)]
    draft, rows = _send(
        client, db, "POST", "/api/v1/plan-rule-sets", json=document | {"name": "draft rules"}
    )
    assert _summary(rows) == [("create", "plan_rule_set", draft.json()["id"], "success", 201)]
    etag = client.get(f"/api/v1/plan-rule-sets/{draft.json()['id']}").headers["ETag"]
    _, rows = _send(
        client,
        db,
        "POST",
        f"/api/v1/plan-rule-sets/{draft.json()['id']}/activate",
        headers={"If-Match": etag},
    )
    assert _summary(rows) == [("activate", "plan_rule_set", draft.json()["id"], "success", 200)]


def test_code_map_changes_are_audited(client: TestClient, db: Database) -> None:
    url = "/api/v1/code-maps/AUDIT-LAB/MAGS"
    created, rows = _send(client, db, "PUT", url, json={"analyte": "magnesium"})
    assert created.status_code == 201, created.text
    assert _summary(rows) == [("create", "code_map", created.json()["id"], "success", 201)]
    replaced, rows = _send(client, db, "PUT", url, json={"analyte": "zinc"})
    assert replaced.status_code == 200
    assert _summary(rows) == [("update", "code_map", replaced.json()["id"], "success", 200)]
    removed, rows = _send(client, db, "DELETE", url)
    assert removed.status_code == 204
    assert _summary(rows) == [("delete", "code_map", "AUDIT-LAB/MAGS", "success", 204)]
    gone, rows = _send(client, db, "DELETE", url)
    assert gone.status_code == 404
    assert _summary(rows) == [("delete", "code_map", None, "denied", 404)]


def test_reading_the_audit_trail_is_audited_with_the_patient_looked_up(
    client: TestClient, db: Database, api_keys: Keys
) -> None:
    patient = make_patient(client)
    filters = {"patient_id": patient["id"]}
    read, [row] = _send(client, db, "GET", "/api/v1/audit-events", params=filters)
    assert read.status_code == 200
    assert _summary([row]) == [("search", "audit_event", None, "success", 200)]
    assert str(row["patient_id"]) == patient["id"]
    # The page was read before its own row was written: it lists the patient's creation only.
    assert [item["action"] for item in read.json()["items"]] == ["create"]

    denied, rows = _send(
        client,
        db,
        "GET",
        "/api/v1/audit-events",
        headers=key_header(api_keys, DEFAULT_ORGANIZATION, "clinician"),
    )
    assert denied.status_code == 403
    assert _summary(rows) == [("search", "audit_event", None, "denied", 403)]


def test_a_patient_search_records_every_patient_it_returned(
    client: TestClient, db: Database
) -> None:
    first = make_patient(client, mrn="MRN-SEARCH-1", birth_date="1970-01-02")
    second = make_patient(client, mrn="MRN-SEARCH-2", birth_date="1970-01-02")
    make_patient(client, mrn="MRN-SEARCH-3", birth_date="1990-05-06")

    found, rows = _send(
        client, db, "GET", "/api/v1/patients", params={"identifier": f"{MRN_SYSTEM}|MRN-SEARCH-2"}
    )
    assert [p["id"] for p in found.json()["items"]] == [second["id"]]
    assert [(str(r["patient_id"]), r["outcome"]) for r in rows] == [(second["id"], "success")]

    both, rows = _send(client, db, "GET", "/api/v1/patients", params={"birth_date": "1970-01-02"})
    assert {str(r["patient_id"]) for r in rows} == {first["id"], second["id"]}
    assert {item["id"] for item in both.json()["items"]} == {first["id"], second["id"]}
    assert {(r["action"], r["resource_type"], r["outcome"]) for r in rows} == {
        ("search", "patient", "success")
    }

    _, rows = _send(client, db, "GET", "/api/v1/patients", params={"birth_date": "1900-01-01"})
    assert [(r["patient_id"], r["outcome"]) for r in rows] == [(None, "success")]


def test_an_hl7_ae_is_audited_as_an_error(client: TestClient, db: Database) -> None:
    unmapped = oru(["OBX|1|NM|NOPE^Unknown^L||1.0|mg/dL|||||F"], mrn="MRN-AE-1")
    response, rows = _send(client, db, "POST", "/api/v1/hl7/oru", content=unmapped, headers=ER7)
    assert response.status_code == 200
    assert "MSA|AE" in response.text
    assert [(r["action"], r["outcome"], r["status_code"]) for r in rows] == [
        ("create", "error", 200)
    ]


def test_a_two_patient_hl7_batch_audits_every_patient(client: TestClient, db: Database) -> None:
    batch = (
        oru([magnesium_mmol("0.80")], mrn="MRN-BATCH-1")
        + oru([magnesium_mmol("0.81")], mrn="MRN-BATCH-2")
        + oru(["OBX|1|NM|NOPE^Unknown^L||1.0|mg/dL|||||F"], mrn="MRN-BATCH-3")
    )
    response, rows = _send(client, db, "POST", "/api/v1/hl7/oru", content=batch, headers=ER7)
    assert response.status_code == 200
    assert response.text.count("MSA|AA") == 2

    stored = [r for r in rows if r["outcome"] == "success"]
    patients = {
        mrn: client.get(
            "/api/v1/patients", params={"identifier": f"urn:test:hl7-mrn|{mrn}"}
        ).json()["items"][0]["id"]
        for mrn in ("MRN-BATCH-1", "MRN-BATCH-2")
    }
    assert [str(r["patient_id"]) for r in stored] == [
        patients["MRN-BATCH-1"],
        patients["MRN-BATCH-2"],
    ]
    assert all(r["action"] == "create" and r["resource_id"] for r in stored)
    assert len({r["resource_id"] for r in stored}) == 2  # each row names its own panel
    # The refused third message: an error row (nothing stored, so no patient to name).
    assert [(r["outcome"], r["patient_id"]) for r in rows if r not in stored] == [("error", None)]


def test_an_oidc_token_is_audited_as_a_login_on_first_use_only(db: Database) -> None:
    principal = Principal(
        id=f"oidc:https://idp.test|user-{uuid.uuid4().hex[:8]}",
        organization_id=uuid.uuid4(),
        role=Role.CLINICIAN,
        kind="oidc",
        scopes=scopes_for(Role.CLINICIAN),
        display="Dr Test",
    )
    scope: dict[str, Any] = {
        "method": "GET",
        "path": "/api/v1/patients",
        "client": ("192.0.2.7", 1234),
        "state": {"request_id": "login-1"},
    }

    async def use(token: str) -> None:
        await audit_first_use(
            db.app.state.sessionmaker, token=token, principal=principal, scope=scope
        )

    token = f"eyJ.{uuid.uuid4().hex}.sig"
    db.run(use, token)
    db.run(use, token)
    db.run(use, f"eyJ.{uuid.uuid4().hex}.renewed")

    async def logins(session: AsyncSession) -> list[dict[str, Any]]:
        return await rows_for(session, request_id="login-1")

    rows = [r for r in db.in_session(logins) if r["principal_id"] == principal.id]
    assert [(r["action"], r["resource_type"], r["outcome"]) for r in rows] == [
        ("login", "principal", "success")
    ] * 2
    assert rows[0]["organization_id"] == principal.organization_id
    assert rows[0]["role"] == "clinician"
    assert rows[0]["client_address"] == "192.0.2.7"
