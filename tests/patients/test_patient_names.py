"""Patients' names (FHIR HumanName shape): stored on create, corrected by PATCH, shown in every
patient output and searchable by a case-insensitive prefix; the search is audited."""

from __future__ import annotations

import uuid
from itertools import count
from typing import Any

from fastapi.testclient import TestClient

from tests.audit.builders import rows_for
from tests.builders import MRN_SYSTEM, expect_problem
from tests.conftest import Database

_numbers = count(1)


def named_patient(
    client: TestClient, family: str | None, *given: str, birth_date: str = "1981-04-12"
) -> dict[str, Any]:
    name: dict[str, Any] = {"given": list(given)}
    if family is not None:
        name["family"] = family
    response = client.post(
        "/api/v1/patients",
        json={
            "identifiers": [{"system": MRN_SYSTEM, "value": f"NAME-{uuid.uuid4().hex[:12]}"}],
            "sex": "female",
            "birth_date": birth_date,
            "name": name,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _ids(client: TestClient, **params: str) -> set[str]:
    response = client.get("/api/v1/patients", params=params)
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


def test_a_patient_is_created_with_a_name_and_reads_it_back(client: TestClient) -> None:
    created = named_patient(client, "Smith", "Anna", "Maria")
    assert created["name"] == {
        "family": "Smith",
        "given": ["Anna", "Maria"],
        "text": "Anna Maria Smith",
    }
    read = client.get(f"/api/v1/patients/{created['id']}").json()
    assert read["name"] == created["name"]


def test_a_patient_without_a_name_has_null_name(client: TestClient) -> None:
    response = client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": MRN_SYSTEM, "value": "NONAME-1"}], "sex": "male"},
    )
    assert response.status_code == 201
    assert response.json()["name"] is None


def test_an_empty_name_is_refused(client: TestClient) -> None:
    response = client.post(
        "/api/v1/patients",
        json={
            "identifiers": [{"system": MRN_SYSTEM, "value": "EMPTY-1"}],
            "sex": "male",
            "name": {"given": []},
        },
    )
    assert response.status_code == 422


def test_patch_corrects_the_name(client: TestClient) -> None:
    created = named_patient(client, "Smyth", "Anna")
    path = f"/api/v1/patients/{created['id']}"
    etag = client.get(path).headers["ETag"]
    response = client.patch(
        path,
        json={"name": {"family": "Smith", "given": ["Anna"], "text": "Ms Anna Smith"}},
        headers={"If-Match": etag},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == {
        "family": "Smith",
        "given": ["Anna"],
        "text": "Ms Anna Smith",
    }
    assert response.json()["sex"] == "female", "other fields are untouched"


def test_name_search_is_a_case_insensitive_prefix_of_family_or_given(client: TestClient) -> None:
    smith = named_patient(client, "Smith", "Anna")
    smithers = named_patient(client, "Smithers", "Bob")
    jones = named_patient(client, "Jones", "Carol", "Smilla")
    named_patient(client, "Brown", "Dave")

    assert _ids(client, name="smith") == {smith["id"], smithers["id"]}
    assert _ids(client, name="SMI") == {smith["id"], smithers["id"], jones["id"]}
    assert _ids(client, name="car") == {jones["id"]}
    assert _ids(client, family="smi") == {smith["id"], smithers["id"]}
    assert _ids(client, given="smil") == {jones["id"]}
    assert _ids(client, name="mith") == set(), "a prefix, not a substring"


def test_name_search_treats_like_wildcards_literally(client: TestClient) -> None:
    named_patient(client, "Percival", "Ed")
    assert _ids(client, name="%") == set()
    assert _ids(client, name="_ercival") == set()


def test_name_and_birth_date_combine(client: TestClient) -> None:
    older = named_patient(client, "Keller", "Ines", birth_date="1950-01-02")
    named_patient(client, "Keller", "Jana", birth_date="1990-05-06")
    assert _ids(client, name="kel", birth_date="1950-01-02") == {older["id"]}


def test_an_empty_name_query_is_refused(client: TestClient) -> None:
    response = client.get("/api/v1/patients", params={"name": ""})
    assert response.status_code in (400, 422)


def test_name_search_is_audited_with_every_patient_returned(
    client: TestClient, db: Database
) -> None:
    first = named_patient(client, "Auditson", "Eve")
    second = named_patient(client, "Auditsen", "Fay")
    request_id = f"names-{uuid.uuid4().hex}"
    response = client.get(
        "/api/v1/patients", params={"name": "audits"}, headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 200
    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))
    assert {(r["action"], r["resource_type"]) for r in rows} == {("search", "patient")}
    assert {str(r["patient_id"]) for r in rows} == {first["id"], second["id"]}


def test_unknown_query_parameters_are_still_refused(client: TestClient) -> None:
    expect_problem(client.get("/api/v1/patients", params={"nmae": "x"}), 400)
