"""Patients: registration with unique identifiers, reading, searching and keyset pagination."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import MRN_SYSTEM, error_fields, expect_problem, make_patient
from tests.conftest import Database


def _all_pages(client: TestClient, params: dict[str, Any]) -> list[list[str]]:
    """The ids on each page, following ``next_cursor`` to the end."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/patients", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["limit"] == params["limit"]
        pages.append([patient["id"] for patient in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"


def test_a_registered_patient_can_be_read_back(client: TestClient, db: Database) -> None:
    body = {
        "identifiers": [
            {"system": MRN_SYSTEM, "value": "MRN-READ-1"},
            {"system": "urn:test:insurance", "value": "INS-77"},
        ],
        "sex": "male",
        "birth_date": "1970-02-03",
    }

    created = client.post("/api/v1/patients", json=body)

    assert created.status_code == 201, created.text
    patient = created.json()
    assert patient["identifiers"] == body["identifiers"]
    assert (patient["sex"], patient["birth_date"], patient["version"]) == ("male", "1970-02-03", 1)
    read = client.get(f"/api/v1/patients/{patient['id']}")
    assert read.status_code == 200
    assert read.json() == patient
    assert db.count("patient") == 1
    assert db.count("patient_identifier") == 2


def test_an_identifier_already_in_use_is_a_conflict_and_stores_nothing(
    client: TestClient, db: Database
) -> None:
    make_patient(client, mrn="MRN-TAKEN-1")
    before = db.counts()
    body = {
        "identifiers": [
            {"system": "urn:test:insurance", "value": "INS-NEW"},
            {"system": MRN_SYSTEM, "value": "MRN-TAKEN-1"},
        ],
        "sex": "female",
    }

    response = client.post("/api/v1/patients", json=body)

    problem = expect_problem(response, 409, "identifier-in-use")
    assert problem["system"] == MRN_SYSTEM
    assert "MRN-TAKEN-1" not in response.text
    assert db.counts() == before


def test_a_duplicate_registration_names_the_existing_patient_and_its_location(
    client: TestClient,
) -> None:
    existing = make_patient(client, mrn="MRN-DUP-1")

    response = client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": MRN_SYSTEM, "value": "MRN-DUP-1"}], "sex": "female"},
    )

    problem = expect_problem(response, 409, "identifier-in-use")
    assert problem["patient_id"] == existing["id"]
    assert response.headers["Location"] == f"/api/v1/patients/{existing['id']}"
    assert client.get(response.headers["Location"]).json()["id"] == existing["id"]


def test_the_same_identifier_twice_in_one_registration_is_refused(
    client: TestClient, db: Database
) -> None:
    identifier = {"system": MRN_SYSTEM, "value": "MRN-TWICE"}
    body = {"identifiers": [identifier, identifier], "sex": "female"}

    problem = expect_problem(client.post("/api/v1/patients", json=body), 422, "validation-error")

    assert error_fields(problem) == ["body.identifiers"]
    assert "MRN-TWICE" not in str(problem)
    assert db.count("patient") == 0


def test_a_birth_date_in_the_future_is_refused(client: TestClient, db: Database) -> None:
    body = {
        "identifiers": [{"system": MRN_SYSTEM, "value": "MRN-FUTURE"}],
        "sex": "female",
        "birth_date": "2099-01-01",
    }

    problem = expect_problem(client.post("/api/v1/patients", json=body), 422, "validation-error")

    assert error_fields(problem) == ["body.birth_date"]
    assert db.count("patient") == 0


def test_an_unknown_patient_id_is_not_found(client: TestClient) -> None:
    response = client.get(f"/api/v1/patients/{uuid.uuid4()}")

    expect_problem(response, 404, "not-found")


def test_search_by_identifier_finds_exactly_that_patient(client: TestClient) -> None:
    wanted = make_patient(client, mrn="MRN-FIND-ME")
    make_patient(client, mrn="MRN-FIND-ME-NOT")

    response = client.get("/api/v1/patients", params={"identifier": f"{MRN_SYSTEM}|MRN-FIND-ME"})

    assert response.status_code == 200, response.text
    assert [p["id"] for p in response.json()["items"]] == [wanted["id"]]
    assert response.json()["next_cursor"] is None


def test_search_by_identifier_system_alone_finds_every_patient_in_that_system(
    client: TestClient,
) -> None:
    in_system = {make_patient(client)["id"] for _ in range(2)}
    other = client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": "urn:test:other", "value": "X-1"}], "sex": "male"},
    )
    assert other.status_code == 201

    response = client.get("/api/v1/patients", params={"identifier": f"{MRN_SYSTEM}|"})

    assert {p["id"] for p in response.json()["items"]} == in_system


def test_search_by_identifier_without_a_separator_is_a_bad_request(client: TestClient) -> None:
    response = client.get("/api/v1/patients", params={"identifier": "MRN-0042"})

    expect_problem(response, 400, "invalid-query")


def test_search_by_sex_and_birth_date(client: TestClient) -> None:
    woman_1981 = make_patient(client, sex="female", birth_date="1981-04-12")
    make_patient(client, sex="male", birth_date="1981-04-12")
    woman_1990 = make_patient(client, sex="female", birth_date="1990-01-01")

    def ids(params: dict[str, str]) -> set[str]:
        response = client.get("/api/v1/patients", params=params)
        assert response.status_code == 200, response.text
        return {p["id"] for p in response.json()["items"]}

    assert ids({"sex": "female"}) == {woman_1981["id"], woman_1990["id"]}
    assert ids({"sex": "female", "birth_date": "1981-04-12"}) == {woman_1981["id"]}
    assert ids({"birth_date": "1975-05-05"}) == set()


def test_search_with_an_unknown_sex_value_is_refused(client: TestClient) -> None:
    problem = expect_problem(
        client.get("/api/v1/patients", params={"sex": "robot"}), 422, "validation-error"
    )

    assert error_fields(problem) == ["query.sex"]


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_pagination_returns_every_patient_exactly_once_newest_first(
    client: TestClient, limit: int
) -> None:
    created = [make_patient(client)["id"] for _ in range(5)]

    pages = _all_pages(client, {"limit": limit})

    listed = [patient_id for page in pages for patient_id in page]
    assert listed == list(reversed(created))
    assert all(len(page) <= limit for page in pages)
    assert len(pages) == -(-5 // limit)  # no trailing empty page


def test_pagination_keeps_the_filters_across_pages(client: TestClient) -> None:
    women = [make_patient(client, sex="female")["id"] for _ in range(3)]
    make_patient(client, sex="male")

    pages = _all_pages(client, {"limit": 2, "sex": "female"})

    assert [patient_id for page in pages for patient_id in page] == list(reversed(women))


INVALID_CURSORS = {
    "not base64 JSON": "not-a-cursor",
    "an object": "eyJ4IjogMX0",  # {"x": 1}
    "an empty list": "W10",  # []
    "numbers": "WzEsMl0",  # [1,2]
    "a bad uuid": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwienoiXQ",  # ["2026-...+00:00","zz"]
    # ["2026-01-01T00:00:00", "00000000-...-000000000005"]: a time without a UTC offset
    "a naive time": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAt"
    "MDAwMDAwMDAwMDA1Il0",
}


@pytest.mark.parametrize("cursor", INVALID_CURSORS.values(), ids=INVALID_CURSORS.keys())
def test_an_invalid_cursor_is_a_bad_request(client: TestClient, cursor: str) -> None:
    response = client.get("/api/v1/patients", params={"cursor": cursor})

    expect_problem(response, 400, "invalid-cursor")
