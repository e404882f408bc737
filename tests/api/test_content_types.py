"""A JSON body needs a JSON Content-Type: without one (or with another) the answer is 415 naming
the accepted media types, never a 422 about the body, and nothing is stored."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.builders import MRN_SYSTEM, expect_problem, make_patient
from tests.conftest import Database

PATIENT = {"identifiers": [{"system": MRN_SYSTEM, "value": "MRN-CT-1"}], "sex": "female"}


def test_a_post_without_content_type_is_415_with_the_accepted_types(
    client: TestClient, db: Database
) -> None:
    before = db.count("patient")

    response = client.post("/api/v1/patients", content=json.dumps(PATIENT).encode())

    problem = expect_problem(response, 415, "unsupported-media-type")
    assert problem["accepted"] == ["application/json"]
    assert "no Content-Type" in problem["detail"]
    assert response.headers["Accept-Post"] == "application/json"
    assert db.count("patient") == before


def test_a_json_body_sent_as_text_is_415(client: TestClient, db: Database) -> None:
    before = db.count("patient")

    response = client.post(
        "/api/v1/patients",
        content=json.dumps(PATIENT).encode(),
        headers={"Content-Type": "text/plain"},
    )

    assert "text/plain" in expect_problem(response, 415, "unsupported-media-type")["detail"]
    assert db.count("patient") == before


def test_a_patch_with_a_wrong_content_type_names_accept_patch(client: TestClient) -> None:
    patient = make_patient(client)
    url = f"/api/v1/patients/{patient['id']}"
    etag = client.get(url).headers["ETag"]

    response = client.patch(
        url,
        content=b'{"sex": "male"}',
        headers={"Content-Type": "application/x-www-form-urlencoded", "If-Match": etag},
    )

    expect_problem(response, 415, "unsupported-media-type")
    assert response.headers["Accept-Patch"] == "application/json"
    assert client.get(url).json()["sex"] == "female"


def test_json_with_a_charset_or_a_json_suffix_is_accepted(client: TestClient) -> None:
    first = client.post(
        "/api/v1/patients",
        content=json.dumps(PATIENT).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    other = {**PATIENT, "identifiers": [{"system": MRN_SYSTEM, "value": "MRN-CT-2"}]}
    second = client.post(
        "/api/v1/patients",
        content=json.dumps(other).encode(),
        headers={"Content-Type": "application/vnd.mineral+json"},
    )

    assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)


def test_a_refused_media_type_on_patient_data_is_audited_once(
    client: TestClient, db: Database
) -> None:
    before = db.count("audit_event")

    response = client.post("/api/v1/patients", content=json.dumps(PATIENT).encode())

    expect_problem(response, 415)
    assert db.count("audit_event") == before + 1


def test_uploads_that_negotiate_their_own_media_types_keep_their_415(client: TestClient) -> None:
    response = client.post(
        "/api/v1/range-sets", content=b"name: x", headers={"Content-Type": "text/plain"}
    )

    problem = expect_problem(response, 415, "unsupported-media-type")
    assert "application/yaml" in problem["detail"]
