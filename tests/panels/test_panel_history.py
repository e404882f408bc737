"""A patient's panels (newest first, filtered, paginated) and one analyte's history for trends
(oldest first, in the canonical or a requested unit)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import error_fields, expect_problem, make_patient, post_panel, result


def _pages(client: TestClient, url: str, params: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Every page of a keyset-paginated list, following ``next_cursor`` to the end."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        response = client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"


def _panel_ids(client: TestClient, patient: dict[str, Any], **params: Any) -> list[str]:
    response = client.get(f"/api/v1/patients/{patient['id']}/panels", params=params)
    assert response.status_code == 200, response.text
    return [panel["id"] for panel in response.json()["items"]]


def _post_on(
    client: TestClient, patient: dict[str, Any], day: str, *results: dict[str, Any]
) -> str:
    panel = post_panel(client, patient, list(results), collected_at=f"2026-{day}T08:00:00Z")
    panel_id: str = panel["id"]
    return panel_id


# --- GET /patients/{id}/panels ----------------------------------------------------------------


def test_a_patients_panels_are_listed_newest_collected_first(client: TestClient) -> None:
    patient = make_patient(client)
    march = _post_on(client, patient, "03-01", result("zinc", "15", "umol/L"))
    january = _post_on(client, patient, "01-01", result("zinc", "14", "umol/L"))
    may = _post_on(client, patient, "05-01", result("zinc", "13", "umol/L"))
    other_patient = make_patient(client)
    _post_on(client, other_patient, "04-01", result("zinc", "12", "umol/L"))

    assert _panel_ids(client, patient) == [may, march, january]


@pytest.mark.parametrize("same_day", [False, True])
def test_panel_pages_return_every_panel_exactly_once(client: TestClient, same_day: bool) -> None:
    patient = make_patient(client)
    days = ["01-05"] * 5 if same_day else ["01-05", "02-05", "03-05", "04-05", "05-05"]
    posted = [_post_on(client, patient, day, result("zinc", "15", "umol/L")) for day in days]

    pages = _pages(client, f"/api/v1/patients/{patient['id']}/panels", {"limit": 2})

    listed = [panel["id"] for page in pages for panel in page]
    assert sorted(listed) == sorted(posted)
    assert len(listed) == len(set(listed)) == 5
    assert [len(page) for page in pages] == [2, 2, 1]
    if not same_day:
        assert listed == list(reversed(posted))


def test_panels_filtered_by_collection_window_include_the_start_and_exclude_the_end(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    january = _post_on(client, patient, "01-01", result("zinc", "15", "umol/L"))
    march = _post_on(client, patient, "03-01", result("zinc", "15", "umol/L"))
    may = _post_on(client, patient, "05-01", result("zinc", "15", "umol/L"))

    assert _panel_ids(client, patient, collected_from="2026-03-01T08:00:00Z") == [may, march]
    assert _panel_ids(client, patient, collected_to="2026-03-01T08:00:00Z") == [january]
    assert _panel_ids(
        client,
        patient,
        collected_from="2026-01-01T08:00:00+00:00",
        collected_to="2026-05-01T10:00:00+02:00",  # = 08:00 UTC: excluded
    ) == [march, january]


def test_a_collection_window_without_a_utc_offset_is_refused(client: TestClient) -> None:
    patient = make_patient(client)

    response = client.get(
        f"/api/v1/patients/{patient['id']}/panels", params={"collected_from": "2026-03-01T08:00"}
    )

    assert error_fields(expect_problem(response, 422)) == ["query.collected_from"]


@pytest.mark.parametrize("analyte", ["magnesium", "Mg", "MAGNESIUM, SERUM", "19123-9"])
def test_panels_filtered_by_analyte_accept_its_synonyms(client: TestClient, analyte: str) -> None:
    patient = make_patient(client)
    with_magnesium = _post_on(client, patient, "02-01", result("magnesium", "0.8", "mmol/L"))
    _post_on(client, patient, "03-01", result("zinc", "15", "umol/L"))

    assert _panel_ids(client, patient, analyte=analyte) == [with_magnesium]


def test_panels_filtered_by_an_unknown_analyte_are_refused(client: TestClient) -> None:
    patient = make_patient(client)

    response = client.get(
        f"/api/v1/patients/{patient['id']}/panels", params={"analyte": "unobtainium"}
    )

    problem = expect_problem(response, 400, "invalid-query")
    assert error_fields(problem) == ["query.analyte"]


def test_panels_filtered_by_flag(client: TestClient) -> None:
    patient = make_patient(client)
    low = _post_on(client, patient, "01-01", result("magnesium", "0.62", "mmol/L"))
    normal = _post_on(client, patient, "02-01", result("magnesium", "0.8", "mmol/L"))
    critically_high = _post_on(
        client,
        patient,
        "03-01",
        result("calcium", "13.5", "mg/dL"),
        result("magnesium", "0.8", "mmol/L"),
    )
    critically_low = _post_on(client, patient, "04-01", result("magnesium", "0.4", "mmol/L"))

    assert _panel_ids(client, patient, flag="L") == [low]
    assert _panel_ids(client, patient, flag="N") == [critically_high, normal]
    assert _panel_ids(client, patient, flag="HH") == [critically_high]
    assert _panel_ids(client, patient, flag="LL") == [critically_low]
    assert _panel_ids(client, patient, flag="critical") == [critically_low, critically_high]
    assert _panel_ids(client, patient, flag="H") == []


def test_panels_filtered_by_flag_and_analyte_need_both_on_the_same_result(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    _post_on(
        client,
        patient,
        "01-01",
        result("magnesium", "0.62", "mmol/L"),  # L
        result("zinc", "15", "umol/L"),  # N
    )

    assert _panel_ids(client, patient, analyte="zinc", flag="L") == []
    assert len(_panel_ids(client, patient, analyte="magnesium", flag="L")) == 1


def test_panels_filtered_by_an_unknown_flag_are_refused(client: TestClient) -> None:
    patient = make_patient(client)

    response = client.get(f"/api/v1/patients/{patient['id']}/panels", params={"flag": "LOW"})

    assert error_fields(expect_problem(response, 422)) == ["query.flag"]


def test_panels_of_an_unknown_patient_are_not_found(client: TestClient) -> None:
    expect_problem(client.get(f"/api/v1/patients/{uuid.uuid4()}/panels"), 404, "not-found")


# --- GET /patients/{id}/analytes/{analyte}/history ----------------------------------------------


def _history(
    client: TestClient, patient: dict[str, Any], analyte: str, **params: Any
) -> dict[str, Any]:
    response = client.get(
        f"/api/v1/patients/{patient['id']}/analytes/{analyte}/history", params=params
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _magnesium_series(client: TestClient) -> tuple[dict[str, Any], list[str]]:
    """Three magnesium results sent in three units, posted out of collection order."""
    patient = make_patient(client)
    march = _post_on(client, patient, "03-01", result("magnesium", "1.5", "meq/L"))  # 0.75
    january = _post_on(client, patient, "01-01", result("magnesium", "0.62", "mmol/L"))
    may = _post_on(client, patient, "05-01", result("magnesium", "1.9444", "mg/dL"))  # 0.8
    _post_on(client, patient, "04-01", result("zinc", "15", "umol/L"))
    return patient, [january, march, may]


def test_history_is_oldest_first_in_the_canonical_unit(client: TestClient) -> None:
    patient, panels_in_order = _magnesium_series(client)

    history = _history(client, patient, "magnesium")

    assert (history["analyte"], history["unit"]) == ("magnesium", "mmol/L")
    points = history["items"]
    assert [p["panel_id"] for p in points] == panels_in_order
    assert [p["value"] for p in points] == [0.62, 0.75, 0.8]
    assert [p["unit"] for p in points] == ["mmol/L"] * 3
    assert [p["interpretation"] for p in points] == ["L", "N", "N"]
    assert [p["collected_at"][:10] for p in points] == ["2026-01-01", "2026-03-01", "2026-05-01"]


def test_history_converts_to_a_requested_unit(client: TestClient) -> None:
    patient, _ = _magnesium_series(client)

    for analyte in ("magnesium", "Mg"):
        history = _history(client, patient, analyte, unit="mg/dL")

        assert history["unit"] == "mg/dL"
        # x 24.305 / 10, at 6 significant digits
        assert [p["value"] for p in history["items"]] == [1.50691, 1.82288, 1.9444]
    meq = _history(client, patient, "magnesium", unit="mEq/L")
    assert meq["unit"] == "meq/L"
    assert [p["value"] for p in meq["items"]] == [1.24, 1.5, 1.6]


def test_history_keeps_the_comparator_of_a_censored_value(client: TestClient) -> None:
    patient = make_patient(client)
    _post_on(client, patient, "02-01", result("zinc", "<10", "umol/L"))

    point = _history(client, patient, "zinc", unit="ug/dL")["items"][0]

    assert (point["value"], point["comparator"], point["unit"]) == (65.38, "<", "ug/dL")
    assert point["interpretation"] == "IND"


@pytest.mark.parametrize(
    ("analyte", "unit", "mentions"),
    [
        ("zinc", "meq/L", "does not apply to analyte 'zinc'"),
        ("ferritin", "mg/dL", "does not apply to analyte 'ferritin'"),
        ("magnesium", "furlongs", "Unknown unit 'furlongs'; accepted units: mg/dL, mmol/L"),
    ],
)
def test_history_in_an_inapplicable_unit_is_refused(
    client: TestClient, analyte: str, unit: str, mentions: str
) -> None:
    patient = make_patient(client)

    response = client.get(
        f"/api/v1/patients/{patient['id']}/analytes/{analyte}/history", params={"unit": unit}
    )

    problem = expect_problem(response, 400, "invalid-query")
    assert error_fields(problem) == ["query.unit"]
    assert mentions in problem["detail"]


def test_history_of_an_unknown_analyte_is_refused(client: TestClient) -> None:
    patient = make_patient(client)

    response = client.get(f"/api/v1/patients/{patient['id']}/analytes/unobtainium/history")

    assert error_fields(expect_problem(response, 400, "invalid-query")) == ["path.analyte"]


def test_history_of_an_unknown_patient_is_not_found(client: TestClient) -> None:
    response = client.get(f"/api/v1/patients/{uuid.uuid4()}/analytes/zinc/history")

    expect_problem(response, 404, "not-found")


def test_history_pages_return_every_result_exactly_once_oldest_first(client: TestClient) -> None:
    patient = make_patient(client)
    values = ["11", "12", "13", "14", "15"]
    for month, value in zip(["05", "01", "03", "02", "04"], values, strict=True):
        _post_on(client, patient, f"{month}-10", result("zinc", value, "umol/L"))

    pages = _pages(client, f"/api/v1/patients/{patient['id']}/analytes/zinc/history", {"limit": 2})

    points = [point for page in pages for point in page]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert len({p["result_id"] for p in points}) == 5
    assert [p["value"] for p in points] == [12.0, 14.0, 13.0, 15.0, 11.0]


def test_history_pages_with_results_collected_at_the_same_time_lose_none(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    for value in ["11", "12", "13", "14", "15"]:
        _post_on(client, patient, "02-10", result("zinc", value, "umol/L"))

    pages = _pages(client, f"/api/v1/patients/{patient['id']}/analytes/zinc/history", {"limit": 2})

    values = sorted(point["value"] for page in pages for point in page)
    assert values == [11.0, 12.0, 13.0, 14.0, 15.0]


def test_history_filtered_by_collection_window(client: TestClient) -> None:
    patient, panels_in_order = _magnesium_series(client)

    history = _history(
        client,
        patient,
        "magnesium",
        collected_from="2026-02-01T00:00:00Z",
        collected_to="2026-05-01T08:00:00Z",
    )

    assert [p["panel_id"] for p in history["items"]] == [panels_in_order[1]]
