"""A batch refused before it starts (401, 403, 415) gets its one audit row, as the single
POST's refusals do; a batch that runs writes its own row and one per line, nothing more."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.access import Keys, key_header
from tests.audit.builders import rows_for
from tests.builders import make_patient, panel_body, result
from tests.conftest import DEFAULT_ORGANIZATION, Database

NDJSON = "application/x-ndjson"


def _send(
    client: TestClient,
    db: Database,
    *,
    content_type: str,
    anonymous: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    auth: Any = None if anonymous else client.auth
    request_id = f"batch-audit-{uuid.uuid4().hex}"
    response = client.post(
        "/api/v1/panel-batches",
        content=b'{"source": "x"}\n',
        headers={"content-type": content_type, "X-Request-ID": request_id, **(headers or {})},
        auth=auth,
    )
    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))
    return response.status_code, rows


def _summary(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["action"], r["resource_type"], r["outcome"], r["status_code"], r["role"]) for r in rows
    ]


def test_a_batch_sent_with_the_wrong_content_type_is_audited(
    client: TestClient, db: Database
) -> None:
    status, rows = _send(client, db, content_type="application/json")

    assert status == 415
    assert _summary(rows) == [("create", "panel-batch", "error", 415, "integration")]
    assert rows[0]["principal_id"].startswith("key:")


@pytest.mark.parametrize(
    ("credentials", "status", "role"),
    [("none", 401, None), ("clinician", 403, "clinician")],
)
def test_a_batch_without_the_right_credentials_is_audited_as_denied(
    client: TestClient, db: Database, api_keys: Keys, credentials: str, status: int, role: str
) -> None:
    if credentials == "none":
        answered, rows = _send(client, db, content_type=NDJSON, anonymous=True)
    else:
        header = key_header(api_keys, DEFAULT_ORGANIZATION, credentials)
        answered, rows = _send(client, db, content_type=NDJSON, headers=header)

    assert answered == status
    assert _summary(rows) == [("create", "panel-batch", "denied", status, role)]


def test_a_batch_that_runs_writes_its_own_row_and_one_per_line_only(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    request_id = f"batch-audit-{uuid.uuid4().hex}"
    body = json.dumps(panel_body(patient, [result("zinc", "80", "ug/dL")])).encode() + b"\n"

    response = client.post(
        "/api/v1/panel-batches",
        content=body + b"not json\n",
        headers={"content-type": NDJSON, "X-Request-ID": request_id},
    )

    assert response.status_code == 200
    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))
    assert sorted((r["resource_type"], r["outcome"], r["status_code"]) for r in rows) == [
        ("panel", "error", 400),
        ("panel", "success", 201),
        ("panel-batch", "success", 200),
    ]
