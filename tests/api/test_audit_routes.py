"""The PHI audit trail, seen from HTTP: every request to a patient-data route writes exactly one
audit row, with the right who / what / outcome; other routes write none; the rows hold ids,
never patient values; the database refuses to change them; `verify-audit` notices if it is
made to.

Rows are found by the request id each request sends (`X-Request-ID`), so the counts are exact
whatever else the session's database holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.__main__ import main
from app.auth import service
from app.auth.principal import Rejection
from app.config import Settings, get_settings
from app.db import utcnow
from app.models.organization import DEFAULT_ORGANIZATION_ID
from tests.api.access import Keys, key_header
from tests.audit.builders import bypassing_append_only, rows_for
from tests.builders import MRN_SYSTEM, make_patient, panel_body, post_panel, result
from tests.conftest import DEFAULT_ORGANIZATION, OTHER_ORGANIZATION, Database

# Patient values that must never reach an audit row (distinctive, so a match is not chance).
MRN = "MRN-AUDIT-7Q4Z"
BIRTH_DATE = "1957-06-23"
MAGNESIUM = "0.6173"
ZINC = "83.29"


@dataclass(frozen=True)
class Who:
    principal_id: str | None
    organization_id: uuid.UUID | None
    role: str | None


NOBODY = Who(None, None, None)


@pytest.fixture
def who(db: Database, api_keys: Keys) -> dict[tuple[str, str], Who]:
    """(org, role) → the principal id, organization and role its key is audited as."""

    async def resolve(session: AsyncSession) -> dict[tuple[str, str], Who]:
        out: dict[tuple[str, str], Who] = {}
        for org, by_role in api_keys.items():
            for role, key in by_role.items():
                api_key = await service.verify_api_key(session, token=key, now=utcnow())
                assert not isinstance(api_key, Rejection)
                out[(org, role)] = Who(f"key:{api_key.id}", api_key.organization_id, role)
        return out

    return db.in_session(resolve)


class Audited:
    """Sends requests with a fresh X-Request-ID and returns the audit rows each one wrote."""

    def __init__(self, client: TestClient, db: Database, api_keys: Keys) -> None:
        self.client = client
        self.db = db
        self.api_keys = api_keys
        self.rows: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        url: str,
        *,
        org: str | None = DEFAULT_ORGANIZATION,
        role: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[Response, list[dict[str, Any]]]:
        request_id = f"audit-{uuid.uuid4().hex}"
        sent = {"X-Request-ID": request_id, **(headers or {})}
        auth: Any = self.client.auth
        if org is None:
            auth = None
        elif role is not None:
            sent.update(key_header(self.api_keys, org, role))
        response = self.client.request(method, url, headers=sent, auth=auth, **kwargs)
        assert response.headers["X-Request-ID"] == request_id
        rows = self.db.in_session(lambda session: rows_for(session, request_id=request_id))
        self.rows.extend(rows)
        return response, rows

    def one(
        self,
        method: str,
        url: str,
        *,
        status: int,
        action: str,
        resource_type: str,
        outcome: str,
        who: Who,
        resource_id: str | None = None,
        patient_id: str | None = None,
        **kwargs: Any,
    ) -> Response:
        """The request answers `status` and writes exactly this one audit row."""
        response, rows = self.call(method, url, **kwargs)
        assert response.status_code == status, response.text
        assert len(rows) == 1, rows
        _assert_row(
            rows[0],
            action=action,
            resource_type=resource_type,
            outcome=outcome,
            status=status,
            who=who,
            resource_id=resource_id,
            patient_id=patient_id,
            method=method,
            path=url.split("?")[0],
        )
        return response

    def none(self, method: str, url: str, **kwargs: Any) -> Response:
        response, rows = self.call(method, url, **kwargs)
        assert rows == [], (method, url, rows)
        return response


def _assert_row(
    row: dict[str, Any],
    *,
    action: str,
    resource_type: str,
    outcome: str,
    status: int,
    who: Who,
    resource_id: str | None,
    patient_id: str | None,
    method: str,
    path: str,
) -> None:
    actual = {
        "action": row["action"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
        "patient_id": str(row["patient_id"]) if row["patient_id"] else None,
        "outcome": row["outcome"],
        "status_code": row["status_code"],
        "principal_id": row["principal_id"],
        "organization_id": row["organization_id"],
        "role": row["role"],
        "method": row["method"],
        "path": row["path"],
    }
    assert actual == {
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "patient_id": patient_id,
        "outcome": outcome,
        "status_code": status,
        "principal_id": who.principal_id,
        "organization_id": who.organization_id,
        "role": who.role,
        "method": method,
        "path": path,
    }
    assert row["occurred_at"].utcoffset().total_seconds() == 0
    assert row["client_address"] == "testclient"
    assert row["principal_kind"] == ("api_key" if who.principal_id else None)


@pytest.fixture
def audited(client: TestClient, db: Database, api_keys: Keys) -> Iterator[Audited]:
    recorder = Audited(client, db, api_keys)
    yield recorder
    _assert_no_patient_values(recorder.rows)


def _assert_no_patient_values(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        stored = " ".join(str(value) for value in row.values())
        for value in (MRN, BIRTH_DATE, MAGNESIUM, ZINC, "female", "male"):
            assert value not in stored, (value, row)


def _patient_body(mrn: str = MRN) -> dict[str, Any]:
    return {
        "identifiers": [{"system": MRN_SYSTEM, "value": mrn}],
        "sex": "female",
        "birth_date": BIRTH_DATE,
    }


def _results() -> list[dict[str, Any]]:
    return [result("magnesium", MAGNESIUM, "mmol/L"), result("zinc", ZINC, "ug/dL")]


def test_patient_routes_write_one_row_per_request(
    audited: Audited, who: dict[tuple[str, str], Who]
) -> None:
    integration = who[(DEFAULT_ORGANIZATION, "integration")]
    clinician = who[(DEFAULT_ORGANIZATION, "clinician")]
    admin = who[(DEFAULT_ORGANIZATION, "admin")]
    other = who[(OTHER_ORGANIZATION, "integration")]
    common = {"resource_type": "patient"}

    # create: success (the new patient is both the resource and the patient)
    created, [row] = audited.call("POST", "/api/v1/patients", json=_patient_body())
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    _assert_row(
        row,
        action="create",
        outcome="success",
        status=201,
        who=integration,
        resource_type="patient",
        resource_id=patient_id,
        patient_id=patient_id,
        method="POST",
        path="/api/v1/patients",
    )
    # ... conflict and invalid (error), no credentials and wrong role (denied)
    refusals: list[tuple[int, str, dict[str, Any]]] = [
        (409, "error", {"json": _patient_body()}),
        (422, "error", {"json": {**_patient_body(f"{MRN}-3"), "version": 7}}),
        (401, "denied", {"json": _patient_body(f"{MRN}-4"), "org": None}),
        (403, "denied", {"json": _patient_body(f"{MRN}-5"), "role": "clinician"}),
    ]
    for status, outcome, kwargs in refusals:
        caller = {401: NOBODY, 403: clinician}.get(status, integration)
        audited.one(
            "POST",
            "/api/v1/patients",
            status=status,
            action="create",
            outcome=outcome,
            who=caller,
            **common,
            **kwargs,
        )

    # read
    url = f"/api/v1/patients/{patient_id}"
    target = {"resource_id": patient_id, "patient_id": patient_id}
    read = audited.one(
        "GET",
        url,
        status=200,
        action="read",
        outcome="success",
        who=integration,
        **common,
        **target,
    )
    audited.one(
        "GET",
        url,
        role="clinician",
        status=200,
        action="read",
        outcome="success",
        who=clinician,
        **common,
        **target,
    )
    audited.one(
        "GET", url, role="admin", status=403, action="read", outcome="denied", who=admin, **common
    )
    audited.one(
        "GET", url, org=None, status=401, action="read", outcome="denied", who=NOBODY, **common
    )
    audited.one(
        "GET",
        url,
        org=OTHER_ORGANIZATION,
        role="integration",
        status=404,
        action="read",
        outcome="denied",
        who=other,
        **common,
        **target,
    )
    unknown = str(uuid.uuid4())
    audited.one(
        "GET",
        f"/api/v1/patients/{unknown}",
        status=404,
        action="read",
        outcome="denied",
        who=integration,
        resource_id=unknown,
        patient_id=unknown,
        **common,
    )
    audited.one(
        "GET",
        "/api/v1/patients/not-a-uuid",
        status=422,
        action="read",
        outcome="error",
        who=integration,
        **common,
    )

    # update: success, missing If-Match (428), stale If-Match (412)
    etag = read.headers["ETag"]
    updated = audited.one(
        "PATCH",
        url,
        json={"sex": "male"},
        headers={"If-Match": etag},
        status=200,
        action="update",
        outcome="success",
        who=integration,
        **common,
        **target,
    )
    assert updated.json()["version"] == 2
    audited.one(
        "PATCH",
        url,
        json={"sex": "female"},
        status=428,
        action="update",
        outcome="error",
        who=integration,
        **common,
        **target,
    )
    audited.one(
        "PATCH",
        url,
        json={"sex": "female"},
        headers={"If-Match": etag},
        status=412,
        action="update",
        outcome="error",
        who=integration,
        **common,
        **target,
    )

    # search: the patient it found is recorded; the identifier searched for is not stored
    # (only the path)
    audited.one(
        "GET",
        f"/api/v1/patients?identifier={MRN_SYSTEM}|{MRN}",
        status=200,
        action="search",
        outcome="success",
        who=integration,
        patient_id=patient_id,
        **common,
    )
    audited.one(
        "GET",
        f"/api/v1/patients?identifier={MRN_SYSTEM}|{MRN}-none",
        status=200,
        action="search",
        outcome="success",
        who=integration,
        **common,
    )
    audited.one(
        "GET",
        "/api/v1/patients?identifier=no-separator",
        status=400,
        action="search",
        outcome="error",
        who=integration,
        **common,
    )
    audited.one(
        "GET",
        "/api/v1/patients",
        role="admin",
        status=403,
        action="search",
        outcome="denied",
        who=admin,
        **common,
    )


def test_panel_routes_write_one_row_per_request(
    audited: Audited, client: TestClient, who: dict[tuple[str, str], Who]
) -> None:
    integration = who[(DEFAULT_ORGANIZATION, "integration")]
    clinician = who[(DEFAULT_ORGANIZATION, "clinician")]
    other = who[(OTHER_ORGANIZATION, "clinician")]
    patient = make_patient(client, mrn=MRN, birth_date=BIRTH_DATE)
    patient_id = patient["id"]
    body = panel_body(patient, _results(), accession="ACC-AUDIT-1")
    common = {"resource_type": "panel"}

    # post: created (201), the same panel again (a read of the stored one, 200)
    response, [row] = audited.call("POST", "/api/v1/panels", json=body)
    assert response.status_code == 201, response.text
    panel_id = response.json()["id"]
    _assert_row(
        row,
        action="create",
        outcome="success",
        status=201,
        who=integration,
        resource_type="panel",
        resource_id=panel_id,
        patient_id=patient_id,
        method="POST",
        path="/api/v1/panels",
    )
    target = {"resource_id": panel_id, "patient_id": patient_id}
    audited.one(
        "POST",
        "/api/v1/panels",
        json=body,
        status=200,
        action="read",
        outcome="success",
        who=integration,
        **common,
        **target,
    )
    # with an Idempotency-Key: the first is the create, a replay a read of the same panel
    keyed = panel_body(patient, _results(), accession="ACC-AUDIT-2")
    first, [first_row] = audited.call(
        "POST", "/api/v1/panels", json=keyed, headers={"Idempotency-Key": "audit-1"}
    )
    assert first.status_code == 201, first.text
    keyed_target = {"resource_id": first.json()["id"], "patient_id": patient_id}
    _assert_row(
        first_row,
        action="create",
        outcome="success",
        status=201,
        who=integration,
        resource_type="panel",
        method="POST",
        path="/api/v1/panels",
        **keyed_target,
    )
    replay = audited.one(
        "POST",
        "/api/v1/panels",
        json=keyed,
        headers={"Idempotency-Key": "audit-1"},
        status=201,
        action="read",
        outcome="success",
        who=integration,
        **common,
        **keyed_target,
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    # refused posts
    stranger = panel_body({"id": str(uuid.uuid4())}, _results())
    audited.one(
        "POST",
        "/api/v1/panels",
        json=stranger,
        status=422,
        action="create",
        outcome="error",
        who=integration,
        **common,
    )
    audited.one(
        "POST",
        "/api/v1/panels",
        json=panel_body(patient, _results()),
        role="clinician",
        status=403,
        action="create",
        outcome="denied",
        who=clinician,
        **common,
    )

    # read, list, history, interpretations, reinterpret
    for url, action, resource_type, resource in [
        (f"/api/v1/panels/{panel_id}", "read", "panel", panel_id),
        (f"/api/v1/patients/{patient_id}/panels", "search", "panel", None),
        (f"/api/v1/patients/{patient_id}/analytes/magnesium/history", "read", "result", None),
        (f"/api/v1/panels/{panel_id}/interpretations", "read", "panel", panel_id),
    ]:
        audited.one(
            "GET",
            url,
            role="clinician",
            status=200,
            action=action,
            resource_type=resource_type,
            outcome="success",
            who=clinician,
            resource_id=resource,
            patient_id=patient_id,
        )
        # another organization: 404, recorded as denied, under its own principal
        denied_target = {"resource_id": resource, "patient_id": patient_id}
        if resource_type == "panel" and resource is not None:
            denied_target["patient_id"] = None  # the panel was not found: no patient known
        audited.one(
            "GET",
            url,
            org=OTHER_ORGANIZATION,
            role="clinician",
            status=404,
            action=action,
            resource_type=resource_type,
            outcome="denied",
            who=other,
            **denied_target,
        )
    reinterpret = f"/api/v1/panels/{panel_id}/reinterpret"
    audited.one(
        "POST",
        reinterpret,
        json={"reason": "audit test"},
        status=200,
        action="reinterpret",
        outcome="success",
        who=clinician,
        **common,
        **target,
    )
    audited.one(
        "POST",
        reinterpret,
        json={"reason": "audit test"},
        role="integration",
        status=403,
        action="reinterpret",
        outcome="denied",
        who=integration,
        **common,
    )
    unknown = str(uuid.uuid4())
    audited.one(
        "POST",
        f"/api/v1/panels/{unknown}/reinterpret",
        json={},
        status=404,
        action="reinterpret",
        outcome="denied",
        who=clinician,
        resource_id=unknown,
        **common,
    )
    audited.one(
        "GET",
        f"/api/v1/patients/{patient_id}/panels?flag=nonsense",
        status=422,
        action="search",
        outcome="error",
        who=integration,
        resource_type="panel",
    )


def test_a_body_that_is_not_json_is_audited_too(audited: Audited, client: TestClient) -> None:
    """FastAPI refuses a body that is not JSON while reading it, before the route's audit
    dependency and authentication run; the attempt still gets its one `error` row (with no
    principal: the credentials were never checked)."""
    patient = make_patient(client, mrn=MRN)
    panel = post_panel(client, patient, _results())
    garbled: dict[str, Any] = {
        "content": b'{"sex": "ma',
        "headers": {"content-type": "application/json"},
    }
    for method, url, action, resource_type in [
        ("POST", "/api/v1/patients", "create", "patient"),
        ("PATCH", f"/api/v1/patients/{patient['id']}", "update", "patient"),
        ("POST", "/api/v1/panels", "create", "panel"),
        ("POST", f"/api/v1/panels/{panel['id']}/reinterpret", "reinterpret", "panel"),
    ]:
        response = audited.one(
            method,
            url,
            status=400,
            action=action,
            resource_type=resource_type,
            outcome="error",
            who=NOBODY,
            **garbled,
        )
        assert response.json()["type"].endswith("/malformed-json")


def test_routes_without_patient_data_write_no_audit_rows(
    audited: Audited, client: TestClient
) -> None:
    """Reads of configuration write none. (Changes of who may see what: keys, range sets, rule
    sets, code maps, and reads of the trail itself, are audited: see
    tests/audit/test_coverage.py.)"""
    range_set_id = client.get("/api/v1/range-sets/active").json()["id"]
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/v1/range-sets", {}),
        ("GET", "/api/v1/range-sets/active", {}),
        ("GET", f"/api/v1/range-sets/{range_set_id}", {}),
        ("GET", f"/api/v1/range-sets/{uuid.uuid4()}", {}),
        ("GET", "/api/v1/range-sets", {"org": None}),
        ("GET", "/api/v1/api-keys", {}),
        ("GET", "/api/v1/plan-rule-sets", {"role": "clinician"}),
        ("GET", "/api/v1/plan-rule-sets/active", {"role": "admin"}),
        ("GET", "/api/v1/code-maps", {}),
        ("GET", "/health/live", {"org": None}),
        ("GET", "/health/ready", {"org": None}),
        ("GET", "/openapi.json", {"org": None}),
        ("GET", "/docs", {"org": None}),
        ("GET", "/no-such-route", {}),
    ]
    for method, url, kwargs in calls:
        response = audited.none(method, url, **kwargs)
        assert response.status_code < 500, (method, url, response.text)


def test_the_database_refuses_to_change_or_delete_audit_rows(
    audited: Audited, db: Database
) -> None:
    response, [row, *_] = audited.call("GET", "/api/v1/patients")  # one row per patient listed
    assert response.status_code == 200
    before = db.count("audit_event")

    for sql in (
        "UPDATE audit_event SET outcome = 'denied' WHERE seq = :seq",
        "UPDATE audit_event SET principal_id = NULL WHERE seq = :seq",
        "DELETE FROM audit_event WHERE seq = :seq",
    ):

        async def tamper(session: AsyncSession, sql: str = sql) -> None:
            await session.execute(text(sql), {"seq": row["seq"]})

        with pytest.raises(DBAPIError, match="append-only"):
            db.in_session(tamper)

    assert db.count("audit_event") == before
    assert db.in_session(lambda session: rows_for(session, request_id=row["request_id"])) == [row]


def _verify_audit(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> int:
    """`python -m app verify-audit` against the test database, in this process."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        return main(["verify-audit"])
    finally:
        get_settings.cache_clear()


def test_verify_audit_reports_ok_then_names_a_tampered_row(
    audited: Audited,
    db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    patient = make_patient(audited.client, mrn=MRN)
    response, [row] = audited.call("GET", f"/api/v1/patients/{patient['id']}")
    assert response.status_code == 200

    assert _verify_audit(settings, monkeypatch) == 0
    assert "audit trail intact" in capsys.readouterr().out

    # Someone with DDL rights hides who read the record: the chain no longer verifies.
    update = "UPDATE audit_event SET principal_id = :value WHERE seq = :seq"
    db.in_session(
        lambda session: bypassing_append_only(
            session, "UPDATE", [(update, {"value": "key:someone-else", "seq": row["seq"]})]
        )
    )
    try:
        exit_code = _verify_audit(settings, monkeypatch)
        output = capsys.readouterr().out
    finally:
        db.in_session(
            lambda session: bypassing_append_only(
                session, "UPDATE", [(update, {"value": row["principal_id"], "seq": row["seq"]})]
            )
        )

    assert exit_code == 1
    assert f"BROKEN at seq {row['seq']}" in output
    assert "modified" in output
    assert _verify_audit(settings, monkeypatch) == 0
    assert db.in_session(lambda session: rows_for(session, request_id=row["request_id"])) == [row]


def test_rows_are_scoped_to_the_callers_organization(
    audited: Audited, client: TestClient, api_keys: Keys, who: dict[tuple[str, str], Who]
) -> None:
    """The other organization's denied attempt is in its own trail, not the default one's."""
    patient = make_patient(client, mrn=MRN)
    post_panel(client, patient, _results())
    _, [row] = audited.call(
        "GET", f"/api/v1/patients/{patient['id']}", org=OTHER_ORGANIZATION, role="clinician"
    )
    assert row["organization_id"] == who[(OTHER_ORGANIZATION, "clinician")].organization_id
    assert row["organization_id"] != DEFAULT_ORGANIZATION_ID

    own = client.get("/api/v1/audit-events", params={"patient_id": patient["id"]})
    theirs = client.get(
        "/api/v1/audit-events",
        params={"patient_id": patient["id"]},
        headers=key_header(api_keys, OTHER_ORGANIZATION, "admin"),
    )

    assert own.status_code == theirs.status_code == 200
    assert {item["action"] for item in own.json()["items"]} == {"create"}
    assert [item["id"] for item in theirs.json()["items"]] == [str(row["id"])]
    assert theirs.json()["items"][0]["outcome"] == "denied"


def test_context_sleep_and_timeline_routes_write_one_row_per_request(
    audited: Audited, client: TestClient, who: dict[tuple[str, str], Who]
) -> None:
    clinician = who[(DEFAULT_ORGANIZATION, "clinician")]
    integration = who[(DEFAULT_ORGANIZATION, "integration")]
    other = who[(OTHER_ORGANIZATION, "clinician")]
    patient = make_patient(client, mrn=MRN, birth_date=BIRTH_DATE)
    patient_id = patient["id"]
    context_url = f"/api/v1/patients/{patient_id}/context"
    context = {"resource_type": "patient_context"}

    # context: first write (create, 201), missing If-Match (428), the next version (update)
    first, [row] = audited.call("PUT", context_url, role="clinician", json={"diet": "vegan"})
    assert first.status_code == 201, first.text
    _assert_row(
        row,
        action="create",
        resource_type="patient_context",
        outcome="success",
        status=201,
        who=clinician,
        resource_id=first.json()["id"],
        patient_id=patient_id,
        method="PUT",
        path=context_url,
    )
    audited.one(
        "PUT",
        context_url,
        role="clinician",
        json={"diet": "vegan"},
        status=428,
        action="update",
        outcome="error",
        who=clinician,
        patient_id=patient_id,
        **context,
    )
    second, [row] = audited.call(
        "PUT", context_url, role="clinician", json={}, headers={"If-Match": first.headers["ETag"]}
    )
    assert second.status_code == 200, second.text
    _assert_row(
        row,
        action="update",
        resource_type="patient_context",
        outcome="success",
        status=200,
        who=clinician,
        resource_id=second.json()["id"],
        patient_id=patient_id,
        method="PUT",
        path=context_url,
    )
    audited.one(
        "PUT",
        context_url,
        role="integration",
        json={},
        status=403,
        action="update",
        outcome="denied",
        who=integration,
        **context,
    )
    for url, action, resource in [
        (context_url, "read", second.json()["id"]),
        (f"{context_url}/versions", "search", None),
        (f"{context_url}/versions/1", "read", first.json()["id"]),
    ]:
        audited.one(
            "GET",
            url,
            role="clinician",
            status=200,
            action=action,
            outcome="success",
            who=clinician,
            resource_id=resource,
            patient_id=patient_id,
            **context,
        )
        audited.one(
            "GET",
            url,
            org=OTHER_ORGANIZATION,
            role="clinician",
            status=404,
            action=action,
            outcome="denied",
            who=other,
            patient_id=patient_id,
            **context,
        )

    # sleep assessments: create, replay (a read), list, read, timeline
    sleep_url = f"/api/v1/patients/{patient_id}/sleep-assessments"
    isi = {"instrument": "ISI", "assessed_on": "2026-11-20", "items": [1, 2, 3, 4, 0, 1, 2]}
    keyed = {"Idempotency-Key": "audit-isi-1"}
    posted, [row] = audited.call("POST", sleep_url, role="clinician", json=isi, headers=keyed)
    assert posted.status_code == 201, posted.text
    assessment_id = posted.json()["id"]
    sleep = {"resource_type": "sleep_assessment"}
    _assert_row(
        row,
        action="create",
        outcome="success",
        status=201,
        who=clinician,
        resource_id=assessment_id,
        patient_id=patient_id,
        method="POST",
        path=sleep_url,
        **sleep,
    )
    audited.one(
        "POST",
        sleep_url,
        role="clinician",
        json=isi,
        headers=keyed,
        status=201,
        action="read",
        outcome="success",
        who=clinician,
        resource_id=assessment_id,
        patient_id=patient_id,
        **sleep,
    )
    audited.one(
        "POST",
        sleep_url,
        role="clinician",
        json={**isi, "items": [9, 0, 0, 0, 0, 0, 0]},
        status=422,
        action="create",
        outcome="error",
        who=clinician,
        **sleep,  # refused while the body was read, before the route named the patient
    )
    for url, action, resource_type, resource in [
        (sleep_url, "search", "sleep_assessment", None),
        (f"{sleep_url}/{assessment_id}", "read", "sleep_assessment", assessment_id),
        (f"/api/v1/patients/{patient_id}/timeline", "read", "timeline", None),
    ]:
        audited.one(
            "GET",
            url,
            role="clinician",
            status=200,
            action=action,
            resource_type=resource_type,
            outcome="success",
            who=clinician,
            resource_id=resource,
            patient_id=patient_id,
        )
        audited.one(
            "GET",
            url,
            org=OTHER_ORGANIZATION,
            role="clinician",
            status=404,
            action=action,
            resource_type=resource_type,
            outcome="denied",
            who=other,
            resource_id=resource,
            patient_id=patient_id,
        )


def test_plan_routes_write_one_row_per_request(
    audited: Audited, client: TestClient, who: dict[tuple[str, str], Who]
) -> None:
    clinician = who[(DEFAULT_ORGANIZATION, "clinician")]
    integration = who[(DEFAULT_ORGANIZATION, "integration")]
    other = who[(OTHER_ORGANIZATION, "clinician")]
    patient = make_patient(client, mrn=MRN, birth_date=BIRTH_DATE)
    patient_id = patient["id"]
    panel = post_panel(client, patient, _results())
    plan_type = {"resource_type": "plan"}
    plans_url = f"/api/v1/patients/{patient_id}/plans"
    body = {"panel_ids": [panel["id"]]}

    created, [row] = audited.call("POST", plans_url, role="clinician", json=body)
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    _assert_row(
        row,
        action="create",
        outcome="success",
        status=201,
        who=clinician,
        resource_id=plan_id,
        patient_id=patient_id,
        method="POST",
        path=plans_url,
        **plan_type,
    )
    audited.one(
        "POST",
        plans_url,
        role="integration",
        json=body,
        status=403,
        action="create",
        outcome="denied",
        who=integration,
        **plan_type,
    )
    audited.one(
        "POST",
        plans_url,
        org=OTHER_ORGANIZATION,
        role="clinician",
        json=body,
        status=404,
        action="create",
        outcome="denied",
        who=other,
        patient_id=patient_id,
        **plan_type,
    )
    plan_url = f"/api/v1/plans/{plan_id}"
    for url, action in [
        (plan_url, "read"),
        (f"{plan_url}/versions", "read"),
        (f"{plan_url}/versions/1", "read"),
        (f"{plan_url}/diff?from=1", "read"),
        (f"/fhir/R4/CarePlan/{plan_id}", "read"),
    ]:
        audited.one(
            "GET",
            url,
            role="clinician",
            status=200,
            action=action,
            outcome="success",
            who=clinician,
            resource_id=plan_id,
            patient_id=patient_id,
            **plan_type,
        )
        audited.one(
            "GET",
            url,
            org=OTHER_ORGANIZATION,
            role="clinician",
            status=404,
            action=action,
            outcome="denied",
            who=other,
            resource_id=plan_id,
            **plan_type,
        )
    audited.one(
        "GET",
        plan_url,
        role="clinician",
        headers={"Accept": "text/html"},
        status=200,
        action="read",
        outcome="success",
        who=clinician,
        resource_id=plan_id,
        patient_id=patient_id,
        **plan_type,
    )
    for url in (plans_url, "/fhir/R4/CarePlan?patient=" + patient_id):
        audited.one(
            "GET",
            url,
            role="clinician",
            status=200,
            action="search",
            outcome="success",
            who=clinician,
            patient_id=patient_id,
            **plan_type,
        )
    # The worklist names each row's patient (MRN), so it records every patient it lists.
    audited.one(
        "GET",
        "/api/v1/plans/worklist",
        role="clinician",
        status=200,
        action="search",
        outcome="success",
        who=clinician,
        patient_id=patient_id,
        **plan_type,
    )
    # Changes: a stale If-Match (412) and an illegal transition (409) are audited as errors.
    status_url = f"{plan_url}/status"
    audited.one(
        "POST",
        status_url,
        role="clinician",
        json={"status": "active"},
        headers={"If-Match": '"9"'},
        status=412,
        action="update",
        outcome="error",
        who=clinician,
        resource_id=plan_id,
        patient_id=patient_id,
        **plan_type,
    )
    audited.one(
        "POST",
        status_url,
        role="clinician",
        json={"status": "completed"},
        headers={"If-Match": created.headers["ETag"]},
        status=409,
        action="update",
        outcome="error",
        who=clinician,
        resource_id=plan_id,
        patient_id=patient_id,
        **plan_type,
    )
    audited.one(
        "POST",
        status_url,
        role="clinician",
        json={"status": "active"},
        headers={"If-Match": created.headers["ETag"]},
        status=200,
        action="update",
        outcome="success",
        who=clinician,
        resource_id=plan_id,
        patient_id=patient_id,
        **plan_type,
    )
    regenerated, [row] = audited.call("POST", f"{plan_url}/regenerate", role="clinician", json={})
    assert regenerated.status_code == 201, regenerated.text
    _assert_row(
        row,
        action="create",
        outcome="success",
        status=201,
        who=clinician,
        resource_id=regenerated.json()["id"],
        patient_id=patient_id,
        method="POST",
        path=f"{plan_url}/regenerate",
        **plan_type,
    )
