"""The PHI audit trail, seen from HTTP: every request to a patient-data route writes exactly one
audit row, with the right who / what / outcome; other routes write none; the rows hold ids,
never patient values; the database refuses to change them; `verify-audit` notices if it is
made to.

Rows are found by the request id each request sends (`X-Request-ID`), so the counts are exact
whatever else the session's database holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from app.core.config import Settings, get_settings
from app.core.db import utcnow
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


# --- The four route families as one table ---------------------------------------------------
#
# Each scenario is a script of requests; each step answers `status` and writes exactly one audit
# row, with the caller, action, outcome, resource and patient given. Steps run in order and
# can keep values of their response (`keep`) for later steps' URLs, bodies and expectations:
# `{patient}` in a URL, a resource or a patient is the value kept (or set up) under that name.

Names = dict[str, Any]
Send = Callable[[Names], dict[str, Any]]

# Who calls, as (organization, role): each step sends that role's key (the one the client's
# RoleAuth would pick for the route, unless the step is about a role without the scope).
CALLERS: dict[str, tuple[str | None, str | None]] = {
    "integration": (DEFAULT_ORGANIZATION, "integration"),
    "clinician": (DEFAULT_ORGANIZATION, "clinician"),
    "admin": (DEFAULT_ORGANIZATION, "admin"),
    "other integration": (OTHER_ORGANIZATION, "integration"),
    "other clinician": (OTHER_ORGANIZATION, "clinician"),
    "nobody": (None, None),
}


@dataclass(frozen=True)
class Step:
    method: str
    url: str
    status: int
    action: str
    outcome: str
    caller: str
    resource: str | None = None
    patient: str | None = None
    resource_type: str | None = None  # default: the scenario's
    send: Send | None = None
    keep: dict[str, Callable[[Response], str]] = field(default_factory=dict)
    check: Callable[[Response], None] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    resource_type: str
    setup: Callable[[TestClient], Names]
    steps: tuple[Step, ...]


def _send(**kwargs: Any) -> Send:
    return lambda names: kwargs


def _json(body: Any, **kwargs: Any) -> Send:
    return _send(json=body, **kwargs)


def _if_match(name: str, body: Any) -> Send:
    return lambda names: {"json": body, "headers": {"If-Match": names[name]}}


def _id(name: str) -> dict[str, Callable[[Response], str]]:
    return {name: lambda response: str(response.json()["id"])}


def _etag(name: str) -> dict[str, Callable[[Response], str]]:
    return {name: lambda response: response.headers["ETag"]}


def _replayed(response: Response) -> None:
    assert response.headers["Idempotent-Replayed"] == "true"


def _version_2(response: Response) -> None:
    assert response.json()["version"] == 2


def _own_and_other(
    url: str,
    action: str,
    *,
    resource: str | None,
    other_resource: str | None,
    other_patient: str | None,
    resource_type: str | None = None,
) -> tuple[Step, Step]:
    """A read by the clinician (200), then by the other organization's (404, denied, under its
    own principal)."""
    return (
        Step("GET", url, 200, action, "success", "clinician", resource, "{patient}", resource_type),
        Step(
            "GET",
            url,
            404,
            action,
            "denied",
            "other clinician",
            other_resource,
            other_patient,
            resource_type,
        ),
    )


def _patient(client: TestClient) -> Names:
    patient = make_patient(client, mrn=MRN, birth_date=BIRTH_DATE)
    return {"patient": patient["id"], "record": patient, "unknown": str(uuid.uuid4())}


def _patient_with_panel(client: TestClient) -> Names:
    names = _patient(client)
    names["panel"] = post_panel(client, names["record"], _results())["id"]
    return names


def _panel(accession: str | None = None) -> Send:
    return lambda names: {"json": panel_body(names["record"], _results(), accession=accession)}


PATIENT = "/api/v1/patients/{patient}"
PATIENT_STEPS = (
    # create: success (the new patient is both the resource and the patient)
    Step(
        "POST",
        "/api/v1/patients",
        201,
        "create",
        "success",
        "integration",
        "{patient}",
        "{patient}",
        send=_json(_patient_body()),
        keep=_id("patient"),
    ),
    # ... conflict and invalid (error), no credentials and wrong role (denied)
    Step(
        "POST",
        "/api/v1/patients",
        409,
        "create",
        "error",
        "integration",
        send=_json(_patient_body()),
    ),
    Step(
        "POST",
        "/api/v1/patients",
        422,
        "create",
        "error",
        "integration",
        send=_json({**_patient_body(f"{MRN}-3"), "version": 7}),
    ),
    Step(
        "POST",
        "/api/v1/patients",
        401,
        "create",
        "denied",
        "nobody",
        send=_json(_patient_body(f"{MRN}-4")),
    ),
    Step(
        "POST",
        "/api/v1/patients",
        403,
        "create",
        "denied",
        "clinician",
        send=_json(_patient_body(f"{MRN}-5")),
    ),
    # read
    Step(
        "GET",
        PATIENT,
        200,
        "read",
        "success",
        "integration",
        "{patient}",
        "{patient}",
        keep=_etag("etag"),
    ),
    Step("GET", PATIENT, 200, "read", "success", "clinician", "{patient}", "{patient}"),
    Step("GET", PATIENT, 403, "read", "denied", "admin"),
    Step("GET", PATIENT, 401, "read", "denied", "nobody"),
    Step("GET", PATIENT, 404, "read", "denied", "other integration", "{patient}", "{patient}"),
    Step(
        "GET",
        "/api/v1/patients/{unknown}",
        404,
        "read",
        "denied",
        "integration",
        "{unknown}",
        "{unknown}",
    ),
    Step("GET", "/api/v1/patients/not-a-uuid", 422, "read", "error", "integration"),
    # update: success, missing If-Match (428), stale If-Match (412)
    Step(
        "PATCH",
        PATIENT,
        200,
        "update",
        "success",
        "integration",
        "{patient}",
        "{patient}",
        send=_if_match("etag", {"sex": "male"}),
        check=_version_2,
    ),
    Step(
        "PATCH",
        PATIENT,
        428,
        "update",
        "error",
        "integration",
        "{patient}",
        "{patient}",
        send=_json({"sex": "female"}),
    ),
    Step(
        "PATCH",
        PATIENT,
        412,
        "update",
        "error",
        "integration",
        "{patient}",
        "{patient}",
        send=_if_match("etag", {"sex": "female"}),
    ),
    # search: the patient it found is recorded; the identifier searched for is not stored
    # (only the path)
    Step(
        "GET",
        f"/api/v1/patients?identifier={MRN_SYSTEM}|{MRN}",
        200,
        "search",
        "success",
        "integration",
        patient="{patient}",
    ),
    Step(
        "GET",
        f"/api/v1/patients?identifier={MRN_SYSTEM}|{MRN}-none",
        200,
        "search",
        "success",
        "integration",
    ),
    Step("GET", "/api/v1/patients?identifier=no-separator", 400, "search", "error", "integration"),
    Step("GET", "/api/v1/patients", 403, "search", "denied", "admin"),
)

PANEL = "/api/v1/panels/{panel}"
PANEL_STEPS = (
    # post: created (201), the same panel again (a read of the stored one, 200)
    Step(
        "POST",
        "/api/v1/panels",
        201,
        "create",
        "success",
        "integration",
        "{panel}",
        "{patient}",
        send=_panel("ACC-AUDIT-1"),
        keep=_id("panel"),
    ),
    Step(
        "POST",
        "/api/v1/panels",
        200,
        "read",
        "success",
        "integration",
        "{panel}",
        "{patient}",
        send=_panel("ACC-AUDIT-1"),
    ),
    # with an Idempotency-Key: the first is the create, a replay a read of the same panel
    Step(
        "POST",
        "/api/v1/panels",
        201,
        "create",
        "success",
        "integration",
        "{keyed}",
        "{patient}",
        send=lambda names: {
            **_panel("ACC-AUDIT-2")(names),
            "headers": {"Idempotency-Key": "audit-1"},
        },
        keep=_id("keyed"),
    ),
    Step(
        "POST",
        "/api/v1/panels",
        201,
        "read",
        "success",
        "integration",
        "{keyed}",
        "{patient}",
        send=lambda names: {
            **_panel("ACC-AUDIT-2")(names),
            "headers": {"Idempotency-Key": "audit-1"},
        },
        check=_replayed,
    ),
    # refused posts
    Step(
        "POST",
        "/api/v1/panels",
        422,
        "create",
        "error",
        "integration",
        send=lambda names: {"json": panel_body({"id": str(uuid.uuid4())}, _results())},
    ),
    Step("POST", "/api/v1/panels", 403, "create", "denied", "clinician", send=_panel()),
    # read, list, history, interpretations (the panel not found by the other organization:
    # no patient known)
    *_own_and_other(
        PANEL, "read", resource="{panel}", other_resource="{panel}", other_patient=None
    ),
    *_own_and_other(
        "/api/v1/patients/{patient}/panels",
        "search",
        resource=None,
        other_resource=None,
        other_patient="{patient}",
    ),
    *_own_and_other(
        "/api/v1/patients/{patient}/analytes/magnesium/history",
        "read",
        resource=None,
        other_resource=None,
        other_patient="{patient}",
        resource_type="result",
    ),
    *_own_and_other(
        PANEL + "/interpretations",
        "read",
        resource="{panel}",
        other_resource="{panel}",
        other_patient=None,
    ),
    # reinterpret
    Step(
        "POST",
        PANEL + "/reinterpret",
        200,
        "reinterpret",
        "success",
        "clinician",
        "{panel}",
        "{patient}",
        send=_json({"reason": "audit test"}),
    ),
    Step(
        "POST",
        PANEL + "/reinterpret",
        403,
        "reinterpret",
        "denied",
        "integration",
        send=_json({"reason": "audit test"}),
    ),
    Step(
        "POST",
        "/api/v1/panels/{unknown}/reinterpret",
        404,
        "reinterpret",
        "denied",
        "clinician",
        "{unknown}",
        send=_json({}),
    ),
    Step(
        "GET",
        "/api/v1/patients/{patient}/panels?flag=nonsense",
        422,
        "search",
        "error",
        "integration",
    ),
)

CONTEXT = "/api/v1/patients/{patient}/context"
SLEEP = "/api/v1/patients/{patient}/sleep-assessments"
ISI = {"instrument": "ISI", "assessed_on": "2026-11-20", "items": [1, 2, 3, 4, 0, 1, 2]}
ISI_KEY = {"Idempotency-Key": "audit-isi-1"}
CONTEXT_SLEEP_AND_TIMELINE_STEPS = (
    # context: first write (create, 201), missing If-Match (428), the next version (update)
    Step(
        "PUT",
        CONTEXT,
        201,
        "create",
        "success",
        "clinician",
        "{first}",
        "{patient}",
        send=_json({"diet": "vegan"}),
        keep={**_id("first"), **_etag("first_etag")},
    ),
    Step(
        "PUT",
        CONTEXT,
        428,
        "update",
        "error",
        "clinician",
        None,
        "{patient}",
        send=_json({"diet": "vegan"}),
    ),
    Step(
        "PUT",
        CONTEXT,
        200,
        "update",
        "success",
        "clinician",
        "{second}",
        "{patient}",
        send=_if_match("first_etag", {}),
        keep=_id("second"),
    ),
    Step("PUT", CONTEXT, 403, "update", "denied", "integration", send=_json({})),
    *_own_and_other(
        CONTEXT, "read", resource="{second}", other_resource=None, other_patient="{patient}"
    ),
    *_own_and_other(
        CONTEXT + "/versions",
        "search",
        resource=None,
        other_resource=None,
        other_patient="{patient}",
    ),
    *_own_and_other(
        CONTEXT + "/versions/1",
        "read",
        resource="{first}",
        other_resource=None,
        other_patient="{patient}",
    ),
    # sleep assessments: create, replay (a read), list, read, timeline
    Step(
        "POST",
        SLEEP,
        201,
        "create",
        "success",
        "clinician",
        "{assessment}",
        "{patient}",
        "sleep_assessment",
        send=_json(ISI, headers=ISI_KEY),
        keep=_id("assessment"),
    ),
    Step(
        "POST",
        SLEEP,
        201,
        "read",
        "success",
        "clinician",
        "{assessment}",
        "{patient}",
        "sleep_assessment",
        send=_json(ISI, headers=ISI_KEY),
    ),
    # refused while the body was read, before the route named the patient
    Step(
        "POST",
        SLEEP,
        422,
        "create",
        "error",
        "clinician",
        resource_type="sleep_assessment",
        send=_json({**ISI, "items": [9, 0, 0, 0, 0, 0, 0]}),
    ),
    *_own_and_other(
        SLEEP,
        "search",
        resource=None,
        other_resource=None,
        other_patient="{patient}",
        resource_type="sleep_assessment",
    ),
    *_own_and_other(
        SLEEP + "/{assessment}",
        "read",
        resource="{assessment}",
        other_resource="{assessment}",
        other_patient="{patient}",
        resource_type="sleep_assessment",
    ),
    *_own_and_other(
        "/api/v1/patients/{patient}/timeline",
        "read",
        resource=None,
        other_resource=None,
        other_patient="{patient}",
        resource_type="timeline",
    ),
)

PLANS = "/api/v1/patients/{patient}/plans"
PLAN = "/api/v1/plans/{plan}"


def _plan_body(names: Names) -> dict[str, Any]:
    return {"json": {"panel_ids": [names["panel"]]}}


PLAN_STEPS = (
    Step(
        "POST",
        PLANS,
        201,
        "create",
        "success",
        "clinician",
        "{plan}",
        "{patient}",
        send=_plan_body,
        keep={**_id("plan"), **_etag("etag")},
    ),
    Step("POST", PLANS, 403, "create", "denied", "integration", send=_plan_body),
    Step(
        "POST",
        PLANS,
        404,
        "create",
        "denied",
        "other clinician",
        None,
        "{patient}",
        send=_plan_body,
    ),
    *(
        step
        for url in (
            PLAN,
            PLAN + "/versions",
            PLAN + "/versions/1",
            PLAN + "/diff?from=1",
            "/fhir/R4/CarePlan/{plan}",
        )
        for step in _own_and_other(
            url, "read", resource="{plan}", other_resource="{plan}", other_patient=None
        )
    ),
    Step(
        "GET",
        PLAN,
        200,
        "read",
        "success",
        "clinician",
        "{plan}",
        "{patient}",
        send=_send(headers={"Accept": "text/html"}),
    ),
    Step("GET", PLANS, 200, "search", "success", "clinician", patient="{patient}"),
    Step(
        "GET",
        "/fhir/R4/CarePlan?patient={patient}",
        200,
        "search",
        "success",
        "clinician",
        patient="{patient}",
    ),
    # The worklist names each row's patient (MRN), so it records every patient it lists.
    Step(
        "GET", "/api/v1/plans/worklist", 200, "search", "success", "clinician", patient="{patient}"
    ),
    # Changes: a stale If-Match (412) and an illegal transition (409) are audited as errors.
    Step(
        "POST",
        PLAN + "/status",
        412,
        "update",
        "error",
        "clinician",
        "{plan}",
        "{patient}",
        send=_send(json={"status": "active"}, headers={"If-Match": '"9"'}),
    ),
    Step(
        "POST",
        PLAN + "/status",
        409,
        "update",
        "error",
        "clinician",
        "{plan}",
        "{patient}",
        send=_if_match("etag", {"status": "completed"}),
    ),
    Step(
        "POST",
        PLAN + "/status",
        200,
        "update",
        "success",
        "clinician",
        "{plan}",
        "{patient}",
        send=_if_match("etag", {"status": "active"}),
    ),
    Step(
        "POST",
        PLAN + "/regenerate",
        201,
        "create",
        "success",
        "clinician",
        "{regenerated}",
        "{patient}",
        send=_json({}),
        keep=_id("regenerated"),
    ),
)

SCENARIOS = (
    Scenario("patients", "patient", lambda client: {"unknown": str(uuid.uuid4())}, PATIENT_STEPS),
    Scenario("panels", "panel", _patient, PANEL_STEPS),
    Scenario(
        "context, sleep and timeline",
        "patient_context",
        _patient,
        CONTEXT_SLEEP_AND_TIMELINE_STEPS,
    ),
    Scenario("plans", "plan", _patient_with_panel, PLAN_STEPS),
)


def _format(template: str | None, names: Names) -> str | None:
    return template.format(**names) if template is not None else None


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_patient_data_routes_write_one_row_per_request(
    scenario: Scenario, audited: Audited, client: TestClient, who: dict[tuple[str, str], Who]
) -> None:
    names = scenario.setup(client)
    for number, step in enumerate(scenario.steps):
        url = step.url.format(**names)
        org, role = CALLERS[step.caller]
        sent = step.send(names) if step.send is not None else {}
        response, rows = audited.call(step.method, url, org=org, role=role, **sent)
        assert response.status_code == step.status, (number, step, response.text)
        assert len(rows) == 1, (number, step, rows)
        names.update({name: read(response) for name, read in step.keep.items()})
        _assert_row(
            rows[0],
            action=step.action,
            resource_type=step.resource_type or scenario.resource_type,
            outcome=step.outcome,
            status=step.status,
            who=who[(org, role)] if org is not None and role is not None else NOBODY,
            resource_id=_format(step.resource, names),
            patient_id=_format(step.patient, names),
            method=step.method,
            path=url.split("?")[0],
        )
        if step.check is not None:
            step.check(response)
