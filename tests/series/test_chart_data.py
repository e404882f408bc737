"""Chart-ready data: trend points with the limits that applied, ratio history, an aligned
series of minerals and ISI scores, the organization's flagged results (audited per patient),
and RFC 8288 `Link` headers beside the body cursor."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.docs import PAGINATED_OPERATIONS
from tests.audit.builders import rows_for
from tests.builders import expect_problem, make_patient, post_panel, result, result_for
from tests.conftest import Database

MG_PER_MMOL = Decimal("2.4305")  # magnesium: 24.305 g/mol → 1 mmol/L = 2.4305 mg/dL


def _post(client: TestClient, patient: dict[str, Any], day: str, *results: dict[str, Any]) -> str:
    panel = post_panel(client, patient, list(results), collected_at=f"2026-{day}T08:00:00Z")
    panel_id: str = panel["id"]
    return panel_id


def _approx(value: Decimal | float | None) -> Any:
    assert value is not None
    return pytest.approx(float(value), rel=1e-4)


# --- trend points --------------------------------------------------------------------------


def test_trend_points_carry_the_reference_and_critical_limits_that_applied_in_the_chosen_unit(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    panel = post_panel(
        client,
        patient,
        [result("magnesium", "0.62", "mmol/L")],
        collected_at="2026-03-01T08:00:00Z",
    )
    applied = result_for(panel, "magnesium")["interpretation"]["reference_range"]
    url = f"/api/v1/patients/{patient['id']}/analytes/magnesium/history"

    canonical = client.get(url).json()
    in_mg_dl = client.get(url, params={"unit": "mg/dL"}).json()

    point = canonical["items"][0]
    assert canonical["total"] == 1
    assert point["interpretation"] == "L"
    assert point["possibly_critical"] is False
    for key, snapshot_key in [
        ("reference_low", "low"),
        ("reference_high", "high"),
        ("critical_low", "critical_low"),
        ("critical_high", "critical_high"),
    ]:
        assert applied[snapshot_key] is not None
        assert point[key] == _approx(applied[snapshot_key])
        assert in_mg_dl["items"][0][key] == _approx(
            Decimal(str(applied[snapshot_key])) * MG_PER_MMOL
        )
    assert in_mg_dl["unit"] == in_mg_dl["items"][0]["unit"] == "mg/dL"
    assert in_mg_dl["items"][0]["value"] == _approx(Decimal("0.62") * MG_PER_MMOL)


def test_a_ratio_code_on_the_analyte_path_says_where_ratio_history_is(client: TestClient) -> None:
    patient = make_patient(client)
    response = client.get(f"/api/v1/patients/{patient['id']}/analytes/ca_mg_molar/history")
    problem = expect_problem(response, 400, "invalid-query")
    assert "/ratios/ca_mg_molar/history" in problem["detail"]


# --- ratio history -------------------------------------------------------------------------


def test_ratio_history_lists_each_panels_ratio_newest_first_with_its_range_and_pages(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    january = _post(
        client,
        patient,
        "01-10",
        result("calcium", "2.40", "mmol/L"),
        result("magnesium", "0.80", "mmol/L"),
    )
    _post(client, patient, "02-10", result("zinc", "14", "umol/L"))  # no Ca:Mg ratio
    march = _post(
        client,
        patient,
        "03-10",
        result("calcium", "2.40", "mmol/L"),
        result("magnesium", "0.60", "mmol/L"),
    )
    url = f"/api/v1/patients/{patient['id']}/ratios/ca_mg_molar/history"

    first = client.get(url, params={"limit": 1})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["code"] == "ca_mg_molar"
    assert body["display"]
    assert body["total"] == 2
    assert [p["panel_id"] for p in body["items"]] == [march]
    assert body["items"][0]["value"] == _approx(Decimal("4"))
    assert body["items"][0]["low"] is not None
    assert body["items"][0]["high"] is not None
    assert body["next_cursor"] is not None
    assert f"cursor={body['next_cursor']}" in first.headers["Link"]

    second = client.get(url, params={"limit": 1, "cursor": body["next_cursor"]}).json()
    assert [p["panel_id"] for p in second["items"]] == [january]
    assert second["items"][0]["value"] == _approx(Decimal("3"))
    assert second["next_cursor"] is None


def test_ratio_history_of_a_code_nothing_defines_is_404(client: TestClient) -> None:
    patient = make_patient(client)
    expect_problem(client.get(f"/api/v1/patients/{patient['id']}/ratios/fe_cu_molar/history"), 404)
    defined = client.get(f"/api/v1/patients/{patient['id']}/ratios/zn_cu_molar/history")
    assert defined.status_code == 200, defined.text
    assert defined.json()["items"] == []
    assert defined.json()["total"] == 0


# --- aligned series ------------------------------------------------------------------------


def test_the_aligned_series_puts_minerals_and_isi_on_one_time_axis_in_the_chosen_units(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    _post(
        client,
        patient,
        "01-10",
        result("magnesium", "0.80", "mmol/L"),
        result("zinc", "14", "umol/L"),
    )
    _post(client, patient, "02-10", result("magnesium", "0.70", "mmol/L"))
    assessed = client.post(
        f"/api/v1/patients/{patient['id']}/sleep-assessments",
        json={"instrument": "ISI", "assessed_on": "2026-02-20", "items": [3, 2, 2, 3, 2, 2, 3]},
    )
    assert assessed.status_code == 201, assessed.text
    # A withdrawn result is not a time point.
    _post(
        client, patient, "03-10", result("magnesium", "0.75", "mmol/L", status="entered-in-error")
    )

    response = client.get(
        f"/api/v1/patients/{patient['id']}/series",
        params=[("analyte", "magnesium:mg/dL"), ("analyte", "zinc"), ("include", "isi")],
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert [(s["key"], s["kind"], s["unit"]) for s in body["series"]] == [
        ("magnesium:mg/dL", "analyte", "mg/dL"),
        ("zinc", "analyte", "umol/L"),
        ("isi", "isi", None),
    ]
    rows = body["items"]
    assert [r["at"][:10] for r in rows] == ["2026-01-10", "2026-02-10", "2026-02-20"]
    assert rows[0]["values"] == [_approx(Decimal("0.80") * MG_PER_MMOL), 14, None]
    assert rows[1]["values"] == [_approx(Decimal("0.70") * MG_PER_MMOL), None, None]
    assert rows[2]["values"] == [None, None, 17]
    assert rows[2]["flags"] == [None, None, "moderate"]


def test_aligned_series_pages_by_time_with_a_link_header(client: TestClient) -> None:
    patient = make_patient(client)
    for day in ("01-10", "02-10", "03-10"):
        _post(client, patient, day, result("zinc", "14", "umol/L"))
    url = f"/api/v1/patients/{patient['id']}/series"

    first = client.get(url, params={"analyte": "zinc", "limit": 2})
    assert [r["at"][:10] for r in first.json()["items"]] == ["2026-01-10", "2026-02-10"]
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"')
    assert "analyte=zinc" in link
    assert "limit=2" in link
    rest = client.get(
        url, params={"analyte": "zinc", "limit": 2, "cursor": first.json()["next_cursor"]}
    )
    assert [r["at"][:10] for r in rest.json()["items"]] == ["2026-03-10"]
    assert "Link" not in rest.headers


def test_aligned_series_refuses_an_unknown_unit_or_no_series(client: TestClient) -> None:
    patient = make_patient(client)
    url = f"/api/v1/patients/{patient['id']}/series"
    problem = expect_problem(client.get(url, params={"analyte": "magnesium:furlong"}), 400)
    assert "magnesium:furlong" in problem["detail"]
    expect_problem(client.get(url), 400, "invalid-query")
    expect_problem(client.get(f"/api/v1/patients/{uuid.uuid4()}/series?include=isi"), 404)


# --- the organization's flagged results ---------------------------------------------------


def _flagged(client: TestClient, **params: Any) -> list[tuple[str, str]]:
    response = client.get("/api/v1/results", params=params)
    assert response.status_code == 200, response.text
    return [(item["patient_id"], item["result"]["analyte"]) for item in response.json()["items"]]


def test_flagged_results_list_abnormal_and_critical_results_of_every_patient_newest_first(
    client: TestClient,
) -> None:
    first = make_patient(client, mrn="MRN-CHART-1")
    second = make_patient(client)
    _post(client, first, "01-10", result("magnesium", "0.60", "mmol/L"))  # low
    _post(client, second, "02-10", result("magnesium", "0.30", "mmol/L"))  # critical
    _post(client, first, "03-10", result("magnesium", "<0.5", "mmol/L"))  # possibly critical
    _post(client, second, "04-10", result("magnesium", "0.85", "mmol/L"))  # normal
    _post(client, first, "05-10", result("magnesium", "0.25", "mmol/L", status="entered-in-error"))
    _post(client, second, "06-10", result("zinc", "5", "umol/L"))  # low zinc

    mg = [(first["id"], "magnesium"), (second["id"], "magnesium")]
    assert _flagged(client) == [(second["id"], "zinc"), mg[0], mg[1], mg[0]]
    assert _flagged(client, flag="abnormal", analyte="magnesium") == [mg[0], mg[1], mg[0]]
    assert _flagged(client, flag="critical") == [mg[0], mg[1]]
    assert _flagged(client, flag="possibly-critical") == [mg[0]]
    assert _flagged(client, **{"from": "2026-02-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}) == [
        mg[1]
    ]

    row = client.get("/api/v1/results", params={"flag": "possibly-critical"}).json()["items"][0]
    assert row["patient_identifier"] == {"system": "urn:test:mrn", "value": "MRN-CHART-1"}
    assert row["result"]["interpretation"]["possibly_critical"] is True
    assert row["collected_at"].startswith("2026-03-10")


def test_flagged_results_page_with_cursor_and_link_header(client: TestClient) -> None:
    patient = make_patient(client)
    for day in ("01-10", "02-10", "03-10"):
        _post(client, patient, day, result("magnesium", "0.60", "mmol/L"))

    first = client.get("/api/v1/results", params={"limit": 2, "flag": "abnormal"})
    body = first.json()
    assert [i["collected_at"][:10] for i in body["items"]] == ["2026-03-10", "2026-02-10"]
    assert 'rel="next"' in first.headers["Link"]
    assert "flag=abnormal" in first.headers["Link"]
    rest = client.get(
        "/api/v1/results", params={"limit": 2, "flag": "abnormal", "cursor": body["next_cursor"]}
    )
    assert [i["collected_at"][:10] for i in rest.json()["items"]] == ["2026-01-10"]
    assert rest.json()["next_cursor"] is None
    assert "Link" not in rest.headers


def test_flagged_results_audit_every_patient_they_return(client: TestClient, db: Database) -> None:
    first = make_patient(client)
    second = make_patient(client)
    _post(client, first, "01-10", result("magnesium", "0.60", "mmol/L"))
    _post(client, second, "02-10", result("magnesium", "0.30", "mmol/L"))
    _post(client, first, "03-10", result("magnesium", "0.55", "mmol/L"))

    request_id = f"flagged-{uuid.uuid4().hex}"
    response = client.get("/api/v1/results", headers={"X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    rows = db.in_session(lambda session: rows_for(session, request_id=request_id))

    assert {str(r["patient_id"]) for r in rows} == {first["id"], second["id"]}
    assert len(rows) == 2
    assert {(r["action"], r["resource_type"], r["outcome"]) for r in rows} == {
        ("search", "result", "success")
    }


def test_flagged_results_refuse_an_unknown_flag_or_analyte(client: TestClient) -> None:
    expect_problem(client.get("/api/v1/results", params={"analyte": "unobtainium"}), 400)
    assert client.get("/api/v1/results", params={"flag": "weird"}).status_code in (400, 422)


# --- Link headers --------------------------------------------------------------------------


def test_a_keyset_page_has_a_link_to_the_next_page_keeping_the_query(client: TestClient) -> None:
    for _ in range(3):
        make_patient(client, sex="male")

    first = client.get("/api/v1/patients", params={"limit": 2, "sex": "male"})
    link = first.headers["Link"]
    assert link.startswith("<http")
    assert link.endswith('>; rel="next"')
    next_url = link[1 : link.index(">")]
    assert "sex=male" in next_url
    assert "limit=2" in next_url
    assert f"cursor={first.json()['next_cursor']}" in next_url
    followed = client.get(next_url)
    assert followed.status_code == 200
    assert len(followed.json()["items"]) >= 1


def test_every_keyset_list_declares_the_link_header(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paginated: set[str] = set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            ok = operation.get("responses", {}).get("200", {})
            ref = ok.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if ref is None:
                continue
            schema = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
            if "next_cursor" in schema.get("properties", {}):
                paginated.add(operation["operationId"])
                assert "Link" in ok.get("headers", {}), operation["operationId"]
    assert paginated == set(PAGINATED_OPERATIONS)
