"""Issue 10: a critical value is surfaced whatever is missing about the patient, whatever the
comparator, and whatever our limits say when the lab's own flag is more alarming; impossible
values are refused with nothing stored. Through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import expect_problem, make_patient, panel_body, post_panel, result


def _posted(client: TestClient, patient: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    panel = post_panel(client, patient, [item])
    assert len(panel["results"]) == 1
    return panel


# --- critical limits apply to every patient -------------------------------------------------


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "code"),
    [
        ("calcium", "14.5", "mg/dL", "HH"),
        ("magnesium", "0.3", "mmol/L", "LL"),
        ("magnesium", "8.0", "mg/dL", "HH"),
    ],
)
def test_a_critical_value_is_critical_for_a_patient_without_a_birth_date(
    client: TestClient, analyte: str, value: str, unit: str, code: str
) -> None:
    patient = make_patient(client, birth_date=None)
    panel = _posted(client, patient, result(analyte, value, unit))

    interpretation = panel["results"][0]["interpretation"]
    assert interpretation["code"] == code
    assert interpretation["critical"] is True
    assert panel["has_critical"] is True
    assert interpretation["reference_range"] is not None
    assert interpretation["reference_range"]["critical_low"] is not None


def test_a_result_without_a_reference_range_says_so_and_is_not_called_normal(
    client: TestClient,
) -> None:
    patient = make_patient(client, birth_date=None)
    panel = _posted(client, patient, result("magnesium", "0.80", "mmol/L"))

    interpretation = panel["results"][0]["interpretation"]
    assert interpretation["status"] == "no-reference-range"
    assert interpretation["code"] is None
    assert interpretation["critical"] is False
    assert "no birth date" in interpretation["note"]
    assert "critical limits still applied" in interpretation["note"]
    assert interpretation["reference_range"]["basis"] == "critical-limits-only"
    assert interpretation["reference_range"]["low"] is None


def test_a_childs_critical_magnesium_is_critical(client: TestClient) -> None:
    patient = make_patient(client, birth_date="2009-06-01")  # 17 at collection
    panel = _posted(client, patient, result("magnesium", "0.3", "mmol/L"))

    interpretation = panel["results"][0]["interpretation"]
    assert interpretation["critical"] is True
    assert interpretation["code"] == "LL"
    assert panel["has_critical"] is True


@pytest.mark.parametrize("sex", ["unknown", "other"])
def test_unknown_sex_flags_ferritin_low_for_either_sex(client: TestClient, sex: str) -> None:
    patient = make_patient(client, sex=sex)
    panel = post_panel(
        client,
        patient,
        [result("ferritin", "8", "ng/mL"), result("iron", "30", "ug/dL")],
    )
    codes = {r["analyte"]: r["interpretation"]["code"] for r in panel["results"]}
    assert codes == {"ferritin": "L", "iron": "L"}
    for item in panel["results"]:
        assert "cautious" in item["interpretation"]["note"]


# --- comparators ----------------------------------------------------------------------------


def test_a_comparator_value_at_or_below_the_critical_low_is_critical(client: TestClient) -> None:
    patient = make_patient(client)
    # Critical low 1.0 mg/dL = 0.411 mmol/L: every value below 0.4 is critical.
    panel = _posted(client, patient, result("magnesium", "<0.4", "mmol/L"))

    interpretation = panel["results"][0]["interpretation"]
    assert (interpretation["code"], interpretation["critical"]) == ("LL", True)
    assert panel["has_critical"] is True


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "code"),
    [
        ("magnesium", "<0.5", "mmol/L", "L"),
        ("calcium", ">12.5", "mg/dL", "H"),
    ],
)
def test_a_comparator_value_that_may_be_critical_is_possibly_critical(
    client: TestClient, analyte: str, value: str, unit: str, code: str
) -> None:
    patient = make_patient(client)
    panel = _posted(client, patient, result(analyte, value, unit))

    interpretation = panel["results"][0]["interpretation"]
    assert interpretation["code"] == code
    assert interpretation["critical"] is False
    assert interpretation["possibly_critical"] is True
    assert "may be critically" in interpretation["note"]
    assert panel["has_possible_critical"] is True


def test_possibly_critical_panels_are_found_by_the_critical_filter(client: TestClient) -> None:
    patient = make_patient(client)
    post_panel(client, patient, [result("magnesium", "0.80", "mmol/L")])
    possible = post_panel(client, patient, [result("magnesium", "<0.5", "mmol/L")])

    listed = client.get(f"/api/v1/patients/{patient['id']}/panels", params={"flag": "critical"})
    assert listed.status_code == 200, listed.text
    assert [p["id"] for p in listed.json()["items"]] == [possible["id"]]


# --- the lab's flag counts ------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["LL", "HH", "AA", "PANIC"])
def test_a_critical_flag_from_the_lab_makes_the_result_critical(
    client: TestClient, flag: str
) -> None:
    patient = make_patient(client)
    panel = _posted(client, patient, result("magnesium", "1.8", "mg/dL", flag=flag))

    item = panel["results"][0]
    assert item["interpretation"]["code"] == "N"  # ours, shown as it is
    assert item["interpretation"]["critical"] is True  # the more alarming flag counts
    assert item["lab"]["flag"] == flag
    assert "treated as critical" in item["lab"]["disagreement"]
    assert panel["has_critical"] is True


def test_a_critical_lab_flag_counts_when_no_reference_range_applies(client: TestClient) -> None:
    patient = make_patient(client, birth_date=None)
    panel = _posted(client, patient, result("magnesium", "0.8", "mmol/L", flag="LL"))

    assert panel["results"][0]["interpretation"]["critical"] is True
    assert panel["has_critical"] is True


# --- values mean what they say --------------------------------------------------------------


@pytest.mark.parametrize("value", ["\u0663", "\uff13", "1\u06605"])
def test_non_ascii_digits_are_refused(client: TestClient, value: str) -> None:
    patient = make_patient(client)
    response = client.post(
        "/api/v1/panels", json=panel_body(patient, [result("magnesium", value, "mmol/L")])
    )
    problem = expect_problem(response, 422)
    assert "non-ASCII digits" in problem["errors"][0]["message"]
    assert client.get(f"/api/v1/patients/{patient['id']}/panels").json()["items"] == []


@pytest.mark.parametrize(
    ("analyte", "value"),
    [("magnesium", "0"), ("magnesium", "-0"), ("calcium", "0"), ("magnesium", 0)],
)
def test_zero_serum_magnesium_or_calcium_is_refused_and_nothing_is_stored(
    client: TestClient, analyte: str, value: str | int
) -> None:
    patient = make_patient(client)
    response = client.post(
        "/api/v1/panels",
        json=panel_body(
            patient, [result(analyte, value, "mmol/L"), result("zinc", "12", "umol/L")]
        ),
    )
    problem = expect_problem(response, 422, "implausible-value")
    assert "Nothing was stored" in problem["detail"]
    assert "physically impossible" in problem["errors"][0]["message"]
    assert client.get(f"/api/v1/patients/{patient['id']}/panels").json()["items"] == []


def test_zero_is_refused_even_without_a_birth_date(client: TestClient) -> None:
    patient = make_patient(client, birth_date=None)
    response = client.post(
        "/api/v1/panels", json=panel_body(patient, [result("magnesium", "0", "mmol/L")])
    )
    expect_problem(response, 422, "implausible-value")
