"""Reference-range sets: import (JSON, YAML, CSV), validation, versions and activation."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import error_fields, expect_problem
from tests.conftest import Database

SOURCE = "https://example.org/clinic-ranges-2027"


def magnesium_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "analyte": "magnesium",
        "specimen": "serum",
        "age_min_years": 18,
        "unit": "mmol/L",
        "low": 0.75,
        "high": 1.0,
        "critical_low": 0.5,
        "critical_high": 2.0,
        "source": SOURCE,
    }
    row.update(changes)
    return row


def range_set_doc(name: str = "clinic", **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"name": name, "source": SOURCE, "rows": [magnesium_row()]}
    document.update(changes)
    return document


def import_json(
    client: TestClient, document: dict[str, Any], *, activate: bool = False
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/range-sets", json=document, params={"activate": str(activate).lower()}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def active(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/range-sets/active")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def etag_of(client: TestClient, range_set_id: str) -> str:
    response = client.get(f"/api/v1/range-sets/{range_set_id}")
    assert response.status_code == 200, response.text
    etag: str = response.headers["ETag"]
    return etag


def activate_set(client: TestClient, range_set_id: str) -> Any:
    """Activate a set the way a careful client does: read its ETag, send it as If-Match."""
    return client.post(
        f"/api/v1/range-sets/{range_set_id}/activate",
        headers={"If-Match": etag_of(client, range_set_id)},
    )


def status_of(client: TestClient, range_set_id: str) -> str:
    response = client.get(f"/api/v1/range-sets/{range_set_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


# --- import -----------------------------------------------------------------------------------


def test_a_json_import_is_stored_as_a_draft_version_1(client: TestClient, db: Database) -> None:
    default = active(client)
    before = db.counts()

    imported = import_json(client, range_set_doc())

    assert (imported["name"], imported["version"], imported["status"]) == ("clinic", 1, "draft")
    assert imported["activated_at"] is None
    assert imported["source"] == SOURCE
    [row] = imported["rows"]
    assert (row["analyte"], row["unit"], row["low"], row["high"]) == (
        "magnesium",
        "mmol/L",
        0.75,
        1.0,
    )
    assert row["critical_low"] == 0.5
    assert row["source"] == SOURCE
    assert active(client)["id"] == default["id"]
    assert db.count("range_set") == before["range_set"] + 1
    assert db.count("reference_range") == before["reference_range"] + 1
    assert client.get(f"/api/v1/range-sets/{imported['id']}").json() == imported


def test_importing_the_same_name_again_makes_version_2(client: TestClient) -> None:
    first = import_json(client, range_set_doc())
    second = import_json(client, range_set_doc(rows=[magnesium_row(low=0.8)]))

    assert (first["version"], second["version"]) == (1, 2)
    assert second["id"] != first["id"]
    assert second["rows"][0]["low"] == 0.8
    assert client.get(f"/api/v1/range-sets/{first['id']}").json()["rows"][0]["low"] == 0.75
    listed = client.get("/api/v1/range-sets").json()["items"]
    assert [(s["name"], s["version"]) for s in listed if s["name"] == "clinic"] == [
        ("clinic", 2),
        ("clinic", 1),
    ]


def test_a_yaml_import_keeps_the_rows_in_the_unit_they_were_written_in(
    client: TestClient,
) -> None:
    text = f"""\
name: clinic-yaml
source: {SOURCE}
rows:
  - analyte: magnesium
    specimen: serum
    unit: mg/dL
    low: 1.80
    high: 2.30
    source: {SOURCE}
ratios:
  - code: ca_mg_molar
    display: Calcium:magnesium molar ratio
    numerator: calcium
    denominator: magnesium
    low: 2.5
    high: 3.5
    source: {SOURCE}
"""
    response = client.post(
        "/api/v1/range-sets", content=text, headers={"content-type": "application/yaml"}
    )

    assert response.status_code == 201, response.text
    imported = response.json()
    assert (imported["name"], imported["version"], imported["status"]) == (
        "clinic-yaml",
        1,
        "draft",
    )
    [row] = imported["rows"]
    assert (row["unit"], row["low"], row["high"]) == ("mg/dL", 1.8, 2.3)
    assert [(r["code"], r["low"], r["high"]) for r in imported["ratios"]] == [
        ("ca_mg_molar", 2.5, 3.5)
    ]


def test_a_csv_import_takes_name_and_source_from_the_query(client: TestClient) -> None:
    text = (
        "analyte,specimen,sex,age_min_years,unit,low,high,source\n"
        f"iron,serum,female,18,ug/dL,35,145,{SOURCE}\n"
        f"iron,serum,male,18,ug/dL,50,150,{SOURCE}\n"
    )

    response = client.post(
        "/api/v1/range-sets",
        content=text,
        params={"name": "clinic-csv", "source": SOURCE, "activate": "true"},
        headers={"content-type": "text/csv"},
    )

    assert response.status_code == 201, response.text
    imported = response.json()
    assert (imported["name"], imported["source"], imported["status"]) == (
        "clinic-csv",
        SOURCE,
        "active",
    )
    rows = [(r["sex"], r["low"], r["high"], r["unit"]) for r in imported["rows"]]
    assert rows == [("female", 35.0, 145.0, "ug/dL"), ("male", 50.0, 150.0, "ug/dL")]
    assert active(client)["id"] == imported["id"]


def test_a_csv_import_without_name_and_source_is_refused(client: TestClient, db: Database) -> None:
    before = db.counts()

    response = client.post(
        "/api/v1/range-sets",
        content=f"analyte,unit,low,high,source\nzinc,ug/dL,60,106,{SOURCE}\n",
        headers={"content-type": "text/csv"},
    )

    problem = expect_problem(response, 422, "invalid-range-set")
    assert error_fields(problem) == ["query.name", "query.source"]
    assert db.counts() == before


# --- invalid sets -----------------------------------------------------------------------------

INVALID_JSON_SETS: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown analyte": (
        range_set_doc(rows=[magnesium_row(analyte="unobtainium")]),
        "rows[0].analyte",
        "'unobtainium'",
    ),
    "unknown unit": (
        range_set_doc(rows=[magnesium_row(unit="mmol/dL")]),
        "rows[0].unit",
        "Unknown unit 'mmol/dL'; accepted units: mg/dL, mmol/L, meq/L, mg/L",
    ),
    "unit not for the analyte": (
        range_set_doc(rows=[magnesium_row(analyte="zinc", unit="meq/L")]),
        "rows[0].unit",
        "does not apply to analyte 'zinc'",
    ),
    "overlapping equally specific rows": (
        range_set_doc(rows=[magnesium_row(age_max_years=60), magnesium_row(age_min_years=50)]),
        "rows",
        "rows[0] and rows[1] are equally specific and overlap",
    ),
    "limits out of order": (
        range_set_doc(rows=[magnesium_row(low=1.2, high=1.0)]),
        "rows[0]",
        "low (1.2) must not be above high (1",
    ),
    "critical limit inside the reference interval": (
        range_set_doc(rows=[magnesium_row(critical_low=0.8)]),
        "rows[0]",
        "critical_low (0.8) must not be above low (0.75)",
    ),
    "missing set source": (
        {key: value for key, value in range_set_doc().items() if key != "source"},
        "source",
        "Field required",
    ),
    "missing row source": (
        range_set_doc(rows=[{k: v for k, v in magnesium_row().items() if k != "source"}]),
        "rows[0].source",
        "Field required",
    ),
    "no rows": (range_set_doc(rows=[]), "rows", "at least 1"),
    "ratio of an unknown analyte": (
        range_set_doc(
            ratios=[
                {
                    "code": "x_mg",
                    "display": "X:Mg",
                    "numerator": "unobtainium",
                    "denominator": "magnesium",
                    "source": SOURCE,
                }
            ]
        ),
        "ratios[0].numerator",
        "'unobtainium'",
    ),
}


@pytest.mark.parametrize(
    ("document", "field", "mentions"), INVALID_JSON_SETS.values(), ids=INVALID_JSON_SETS.keys()
)
def test_an_invalid_json_set_is_refused_with_its_errors_and_nothing_is_stored(
    client: TestClient, db: Database, document: dict[str, Any], field: str, mentions: str
) -> None:
    before = db.counts()

    response = client.post("/api/v1/range-sets", json=document, params={"activate": "true"})

    problem = expect_problem(response, 422, "invalid-range-set")
    assert field in error_fields(problem), problem
    assert mentions in json.dumps(problem), problem
    assert db.counts() == before


@pytest.mark.parametrize(
    ("content_type", "text", "field"),
    [
        (
            "application/yaml",
            f"name: c\nsource: {SOURCE}\nrows:\n  - analyte: zinc\n    unit: ug/dL\n"
            "    low: 106\n    high: 60\n    source: x\n",
            "rows[0]",
        ),
        ("application/yaml", "name: c\nrows: [", ""),
        ("text/csv", "analyte,unit,low,high,source\nzinc,furlongs,60,106,x\n", "rows[0].unit"),
        ("text/csv", "analyte,unit,low,colour,source\nzinc,ug/dL,60,red,x\n", "header.colour"),
    ],
    ids=["yaml limits out of order", "yaml syntax", "csv unknown unit", "csv unknown column"],
)
def test_an_invalid_yaml_or_csv_set_is_refused_with_its_errors_and_nothing_is_stored(
    client: TestClient, db: Database, content_type: str, text: str, field: str
) -> None:
    before = db.counts()

    response = client.post(
        "/api/v1/range-sets",
        content=text,
        params={"name": "c", "source": SOURCE},
        headers={"content-type": content_type},
    )

    problem = expect_problem(response, 422, "invalid-range-set")
    assert field in error_fields(problem), problem
    assert all(set(error) <= {"field", "message", "code", "line"} for error in problem["errors"])
    assert db.counts() == before


def test_an_unsupported_content_type_is_refused(client: TestClient, db: Database) -> None:
    before = db.counts()

    response = client.post(
        "/api/v1/range-sets", content="magnesium 0.70-1.00", headers={"content-type": "text/plain"}
    )

    problem = expect_problem(response, 415, "unsupported-media-type")
    assert "text/plain" in problem["detail"]
    assert db.counts() == before


def test_malformed_json_is_a_bad_request(client: TestClient, db: Database) -> None:
    before = db.counts()

    response = client.post(
        "/api/v1/range-sets", content='{"name": "c",', headers={"content-type": "application/json"}
    )

    expect_problem(response, 400, "malformed-json")
    assert db.counts() == before


# --- activation -------------------------------------------------------------------------------


def test_activating_a_set_retires_the_previous_active_set(client: TestClient) -> None:
    default = active(client)
    first = import_json(client, range_set_doc())

    response = activate_set(client, first["id"])

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert response.json()["activated_at"] is not None
    assert active(client)["id"] == first["id"]
    assert active(client)["rows"] == first["rows"]
    assert status_of(client, default["id"]) == "retired"

    second = import_json(client, range_set_doc(rows=[magnesium_row(low=0.8)]), activate=True)

    assert second["status"] == "active"
    assert active(client)["id"] == second["id"]
    assert status_of(client, first["id"]) == "retired"
    statuses = [s["status"] for s in client.get("/api/v1/range-sets").json()["items"]]
    assert sorted(statuses) == ["active", "retired", "retired"]


def test_activating_the_active_set_again_changes_nothing(client: TestClient) -> None:
    default = active(client)

    response = activate_set(client, default["id"])

    assert response.status_code == 200
    assert response.json()["activated_at"] == default["activated_at"]
    assert active(client)["id"] == default["id"]


def test_activation_without_if_match_is_428_and_changes_nothing(
    client: TestClient, db: Database
) -> None:
    default = active(client)
    draft = import_json(client, range_set_doc())
    before = db.counts()

    response = client.post(f"/api/v1/range-sets/{draft['id']}/activate")

    expect_problem(response, 428, "precondition-required")
    assert status_of(client, draft["id"]) == "draft"
    assert active(client)["id"] == default["id"]
    assert db.counts() == before


def test_activation_with_a_stale_etag_is_412_and_changes_nothing(
    client: TestClient, db: Database
) -> None:
    draft = import_json(client, range_set_doc())
    stale = etag_of(client, draft["id"])
    assert activate_set(client, draft["id"]).status_code == 200
    newer = import_json(client, range_set_doc(rows=[magnesium_row(low=0.8)]), activate=True)
    assert status_of(client, draft["id"]) == "retired"
    before = db.counts()
    retired = client.get(f"/api/v1/range-sets/{draft['id']}").json()

    # The draft's ETag was read before it was activated and retired: it is stale now.
    response = client.post(
        f"/api/v1/range-sets/{draft['id']}/activate", headers={"If-Match": stale}
    )

    expect_problem(response, 412, "precondition-failed")
    assert client.get(f"/api/v1/range-sets/{draft['id']}").json() == retired
    assert active(client)["id"] == newer["id"]
    assert db.counts() == before


def test_an_unknown_range_set_is_not_found(client: TestClient) -> None:
    missing = uuid.uuid4()

    expect_problem(client.get(f"/api/v1/range-sets/{missing}"), 404, "not-found")
    expect_problem(client.post(f"/api/v1/range-sets/{missing}/activate"), 404, "not-found")
