"""Code maps managed through /api/v1/code-maps, and the HL7 v2 ingestion reading them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.builders import expect_problem, result_for
from tests.conftest import DEFAULT_ORGANIZATION, OTHER_ORGANIZATION, Database
from tests.interop.hl7.messages import next_id, obx, oru, segment
from tests.interop.hl7.test_oru_route import ack_code, panels_of, patient_by_mrn, post_er7

URL = "/api/v1/code-maps"
Keys = dict[str, dict[str, str]]


def key(keys: Keys, org: str, role: str) -> dict[str, str]:
    return {"X-API-Key": keys[org][role]}


def entries(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get(URL, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_create_read_replace_delete(client: TestClient) -> None:
    created = client.put(f"{URL}/acme-lab/mags", json={"analyte": "magnesium", "note": "ACME"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["sending_facility"], body["local_code"], body["analyte"], body["note"]) == (
        "ACME-LAB",
        "MAGS",
        "magnesium",
        "ACME",
    )

    replaced = client.put(f"{URL}/ACME-LAB/Mags", json={"analyte": "zinc"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == body["id"]
    assert (replaced.json()["analyte"], replaced.json()["note"]) == ("zinc", None)

    assert client.put(f"{URL}/*/ZINC", json={"analyte": "zinc"}).status_code == 201
    assert [e["local_code"] for e in entries(client, sending_facility="acme-lab")] == ["MAGS"]
    assert [e["local_code"] for e in entries(client, sending_facility="*")] == ["ZINC"]
    assert len(entries(client)) == 2

    assert client.delete(f"{URL}/acme-lab/MAGS").status_code == 204
    expect_problem(client.delete(f"{URL}/acme-lab/MAGS"), 404)
    assert [e["local_code"] for e in entries(client)] == ["ZINC"]


def test_pages_follow_the_cursor(client: TestClient) -> None:
    for n in range(5):
        assert client.put(f"{URL}/LAB/C{n}", json={"analyte": "iron"}).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(URL, params=params).json()
        seen += [item["local_code"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"C{n}" for n in range(5)]


def test_an_unknown_analyte_is_refused_naming_the_known_ones(
    client: TestClient, db: Database
) -> None:
    response = client.put(f"{URL}/ACME-LAB/MAGS", json={"analyte": "unobtainium"})
    problem = expect_problem(response, 422, "unknown-analyte")
    assert "unobtainium" in problem["detail"]
    assert "magnesium" in problem["detail"]
    assert "zinc" in problem["detail"]
    assert problem["errors"][0]["field"] == "body.analyte"
    assert db.count("hl7_code_map_entry") == 0
    expect_problem(client.put(f"{URL}/ACME-LAB/MAGS", json={"note": "no analyte"}), 422)
    assert db.count("hl7_code_map_entry") == 0


def test_only_admins_change_code_maps_and_everyone_reads_them(
    client: TestClient, api_keys: Keys
) -> None:
    for role in ("integration", "clinician"):
        headers = key(api_keys, DEFAULT_ORGANIZATION, role)
        refused = client.put(f"{URL}/LAB/MG2", json={"analyte": "magnesium"}, headers=headers)
        expect_problem(refused, 403)
        expect_problem(client.delete(f"{URL}/LAB/MG2", headers=headers), 403)
    assert client.put(f"{URL}/LAB/MG2", json={"analyte": "magnesium"}).status_code == 201
    for role in ("integration", "clinician", "admin"):
        listed = client.get(URL, headers=key(api_keys, DEFAULT_ORGANIZATION, role))
        assert [e["local_code"] for e in listed.json()["items"]] == ["MG2"]
    expect_problem(client.get(URL, auth=None), 401)


def test_another_organizations_entries_are_invisible(client: TestClient, api_keys: Keys) -> None:
    assert client.put(f"{URL}/LAB/MG2", json={"analyte": "magnesium"}).status_code == 201
    other = key(api_keys, OTHER_ORGANIZATION, "admin")

    assert client.get(URL, headers=other).json()["items"] == []
    expect_problem(client.delete(f"{URL}/LAB/MG2", headers=other), 404)
    # Its own entry with the same key is its own, and leaves the default one alone.
    mine = client.put(f"{URL}/LAB/MG2", json={"analyte": "zinc"}, headers=other)
    assert mine.status_code == 201, mine.text
    assert [e["analyte"] for e in entries(client)] == ["magnesium"]


def test_a_code_mapped_through_the_api_is_accepted_and_deleting_it_refuses_it_again(
    client: TestClient, db: Database
) -> None:
    def message() -> str:
        observation = obx("MAGX", "0.81", "mmol/L", system="L", text="Magnesium")
        return oru([observation], mrn=mrn, facility="ACME-LAB")

    mrn = next_id("MRN")
    before = db.counts()
    refused = post_er7(client, message())
    assert ack_code(refused) == "AE"
    assert "'MAGX'" in segment(refused.text, "ERR")[8]
    assert db.counts() == before

    assert client.put(f"{URL}/acme-lab/magx", json={"analyte": "magnesium"}).status_code == 201
    assert ack_code(post_er7(client, message())) == "AA"
    [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
    stored = client.get(f"/api/v1/panels/{panel['id']}").json()
    assert result_for(stored, "magnesium")["reported"]["value"] == 0.81

    assert client.delete(f"{URL}/ACME-LAB/MAGX").status_code == 204
    refused = post_er7(client, message())
    assert ack_code(refused) == "AE"
    assert "'MAGX'" in segment(refused.text, "ERR")[8]


def test_precedence_facility_over_any_over_the_built_in_defaults(client: TestClient) -> None:
    def analyte_of(code: str, facility: str) -> str:
        mrn = next_id("MRN")
        # 10 mg/L is a possible concentration of each analyte MG is mapped to below (1.0 mg/L
        # calcium, 0.1 mg/dL, is now refused as physically impossible).
        message = oru([obx(code, "10", "mg/L", system="L")], mrn=mrn, facility=facility)
        assert ack_code(post_er7(client, message)) == "AA"
        [panel] = panels_of(client, patient_by_mrn(client, mrn)["id"])
        stored = client.get(f"/api/v1/panels/{panel['id']}").json()
        [result] = stored["results"]
        return str(result["analyte"])

    # Built in: MG is magnesium everywhere.
    assert analyte_of("MG", "ACME-LAB") == "magnesium"
    assert client.put(f"{URL}/*/MG", json={"analyte": "calcium"}).status_code == 201
    assert analyte_of("MG", "ACME-LAB") == "calcium"
    assert client.put(f"{URL}/ACME-LAB/MG", json={"analyte": "zinc"}).status_code == 201
    assert analyte_of("MG", "ACME-LAB") == "zinc"
    assert analyte_of("MG", "OTHER-LAB") == "calcium"
