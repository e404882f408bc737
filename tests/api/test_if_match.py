"""Optimistic concurrency on patients: ETag on reads, If-Match required on updates.

Missing If-Match → 428; a stale one → 412 and the record unchanged; the current one → 200 with
a new ETag and the version one higher. Two updates racing with the same ETag: one wins, the
other is 412 (no lost update).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.api.access import Keys, key_header
from tests.builders import expect_problem, make_patient
from tests.conftest import DEFAULT_ORGANIZATION, Database


def _read(client: TestClient, patient_id: str) -> tuple[dict[str, Any], str]:
    response = client.get(f"/api/v1/patients/{patient_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, response.headers["ETag"]


def test_reads_and_creates_carry_an_etag(client: TestClient) -> None:
    created = client.post(
        "/api/v1/patients",
        json={"identifiers": [{"system": "urn:test:mrn", "value": "ETAG-1"}], "sex": "female"},
    )
    assert created.status_code == 201, created.text

    patient_id = created.json()["id"]
    _, etag = _read(client, patient_id)

    assert created.headers["ETag"] == etag
    # Strong (no W/) and scoped to this record: no other resource shares it.
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert patient_id in etag


def test_an_update_without_if_match_is_428_and_changes_nothing(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client, sex="female")
    before, etag = _read(client, patient["id"])

    response = client.patch(f"/api/v1/patients/{patient['id']}", json={"sex": "male"})

    expect_problem(response, 428, "precondition-required")
    assert _read(client, patient["id"]) == (before, etag)


def test_a_stale_if_match_is_412_and_the_record_is_unchanged(client: TestClient) -> None:
    patient = make_patient(client, sex="female", birth_date="1981-04-12")
    _, stale = _read(client, patient["id"])
    first = client.patch(
        f"/api/v1/patients/{patient['id']}", json={"sex": "male"}, headers={"If-Match": stale}
    )
    assert first.status_code == 200, first.text
    current, etag = _read(client, patient["id"])

    # A second client still holding the first ETag tries to change the birth date.
    response = client.patch(
        f"/api/v1/patients/{patient['id']}",
        json={"birth_date": "1990-01-01"},
        headers={"If-Match": stale},
    )

    problem = expect_problem(response, 412, "precondition-failed")
    assert problem["current_etag"] == etag
    assert _read(client, patient["id"]) == (current, etag)
    assert current["birth_date"] == "1981-04-12"
    assert current["version"] == 2


def test_the_current_if_match_updates_with_a_new_etag_and_version(client: TestClient) -> None:
    patient = make_patient(client, sex="female")
    before, etag = _read(client, patient["id"])

    response = client.patch(
        f"/api/v1/patients/{patient['id']}",
        json={"sex": "male", "birth_date": "1979-12-31"},
        headers={"If-Match": etag},
    )

    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["sex"], updated["birth_date"]) == ("male", "1979-12-31")
    assert updated["version"] == before["version"] + 1
    assert response.headers["ETag"] != etag
    assert _read(client, patient["id"]) == (updated, response.headers["ETag"])
    assert updated["identifiers"] == before["identifiers"]
    assert updated["created_at"] == before["created_at"]


def test_if_match_accepts_a_list_a_weak_tag_and_a_star(client: TestClient) -> None:
    patient = make_patient(client, sex="female")
    url = f"/api/v1/patients/{patient['id']}"

    etag = _read(client, patient["id"])[1]
    listed = client.patch(url, json={"sex": "male"}, headers={"If-Match": f'"999", {etag}'})
    assert listed.status_code == 200, listed.text
    weak = client.patch(
        url, json={"sex": "female"}, headers={"If-Match": "W/" + listed.headers["ETag"]}
    )
    assert weak.status_code == 200, weak.text
    star = client.patch(url, json={"sex": "male"}, headers={"If-Match": "*"})
    assert star.status_code == 200, star.text

    assert _read(client, patient["id"])[0]["version"] == 4


def test_server_owned_fields_cannot_be_sent(client: TestClient) -> None:
    patient = make_patient(client, sex="female")
    before, etag = _read(client, patient["id"])

    for field, value in (("version", 99), ("id", patient["id"]), ("identifiers", [])):
        response = client.patch(
            f"/api/v1/patients/{patient['id']}",
            json={"sex": "male", field: value},
            headers={"If-Match": etag},
        )
        expect_problem(response, 422)

    assert _read(client, patient["id"]) == (before, etag)


def test_racing_updates_with_one_etag_have_one_winner(
    client: TestClient, db: Database, api_keys: Keys
) -> None:
    patient = make_patient(client, sex="female")
    _, etag = _read(client, patient["id"])
    headers = {**key_header(api_keys, DEFAULT_ORGANIZATION, "integration"), "If-Match": etag}

    async def race() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=db.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *(
                    http.patch(
                        f"/api/v1/patients/{patient['id']}",
                        json={"birth_date": f"19{50 + index}-01-01"},
                        headers=headers,
                    )
                    for index in range(8)
                )
            )

    responses = db.run(race)

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 7, [r.text for r in responses]
    [winner] = [r for r in responses if r.status_code == 200]
    current, current_etag = _read(client, patient["id"])
    assert current == winner.json()
    assert current["version"] == 2
    assert current_etag == winner.headers["ETag"]
