"""Posting panels: unit conversion, range selection by sex and age, critical values and
comparators, all through the HTTP API against the default reference ranges."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import make_patient, post_panel, result, result_for


def _single(client: TestClient, patient: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    panel = post_panel(client, patient, [item])
    return result_for(panel, panel["results"][0]["analyte"])


# --- units ------------------------------------------------------------------------------------


def test_magnesium_in_mmol_mg_and_meq_gives_the_same_canonical_value_and_interpretation(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    # The last column: the canonical value as shown (the reported value's significant figures,
    # at least 3, at most the 6 stored; as reported when sent in the canonical unit).
    sent: list[tuple[str | float, str, str, str]] = [
        ("0.75", "mmol/L", "mmol/L", "0.75"),
        (0.75, "mmol/L", "mmol/L", "0.75"),  # a JSON number
        ("1.822875", "mg/dL", "mg/dL", "0.750000"),  # 0.75 x 24.305 / 10
        ("1.5", "meq/L", "meq/L", "0.750"),  # Mg2+: 2 meq per mmol
        ("1.5", "mEq/L", "meq/L", "0.750"),  # a lab spelling, stored as the UCUM code
    ]
    for value, unit, ucum, shown in sent:
        magnesium = _single(client, patient, result("magnesium", value, unit))
        assert magnesium["reported"] == {
            "text": str(value),
            "value": float(value),
            "comparator": None,
            "unit": ucum,
        }
        assert magnesium["canonical"] == {
            "value": 0.75,
            "comparator": None,
            "unit": "mmol/L",
            "display_value": shown,
        }
        assert magnesium["interpretation"]["code"] == "N"


@pytest.mark.parametrize(
    ("analyte", "mass_unit", "canonical", "shown"),
    [
        # 100 ug/dL x 10 / molar mass, at 6 significant digits (shown at the 3 of "100")
        ("zinc", "ug/dL", 15.2952, "15.3"),  # 65.38 g/mol
        ("iron", "mcg/dL", 17.9067, "17.9"),  # 55.845 g/mol; mcg is a lab spelling of ug
        ("copper", "\u00b5g/dL", 15.7366, "15.7"),  # 63.546 g/mol; micro sign
    ],
)
def test_trace_element_in_ug_per_dl_and_umol_per_l_gives_the_same_canonical_value(
    client: TestClient, analyte: str, mass_unit: str, canonical: float, shown: str
) -> None:
    patient = make_patient(client, sex="female")
    by_mass = _single(client, patient, result(analyte, "100", mass_unit))
    by_moles = _single(client, patient, result(analyte, str(canonical), "umol/L"))

    assert by_mass["reported"]["unit"] == "ug/dL"
    assert by_mass["canonical"] == {
        "value": canonical,
        "comparator": None,
        "unit": "umol/L",
        "display_value": shown,
    }
    # The same value; shown with the digits each was reported with.
    assert by_moles["canonical"] == {**by_mass["canonical"], "display_value": str(canonical)}
    assert by_mass["interpretation"]["code"] == by_moles["interpretation"]["code"] == "N"
    same_range = by_moles["interpretation"]["reference_range"]
    assert by_mass["interpretation"]["reference_range"] == same_range


# --- range selection by sex and age -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sex", "code", "low"),
    [
        ("female", "N", 5.01388),  # 28 ug/dL in umol/L
        ("male", "L", 8.05802),  # 45 ug/dL in umol/L
    ],
)
def test_iron_30_is_normal_for_a_woman_and_low_for_a_man(
    client: TestClient, sex: str, code: str, low: float
) -> None:
    patient = make_patient(client, sex=sex, birth_date="1981-04-12")  # 45 on 2026-11-20
    iron = _single(client, patient, result("iron", "30", "ug/dL"))

    assert iron["canonical"]["value"] == 5.37201
    assert iron["interpretation"]["code"] == code
    applied = iron["interpretation"]["reference_range"]
    assert applied["sex"] == sex
    assert applied["low"] == low
    assert applied["unit"] == "umol/L"
    assert iron["interpretation"]["note"] is None


@pytest.mark.parametrize("sex", ["unknown", "other"])
def test_iron_for_a_patient_of_unknown_or_other_sex_is_flagged_when_low_for_either_sex(
    client: TestClient, sex: str
) -> None:
    # 30 ug/dL is normal for a woman (28-170) but low for a man (45-182): with the sex not
    # known, the cautious reading flags it (issue 10: the union range hid iron deficiency).
    patient = make_patient(client, sex=sex)
    iron = _single(client, patient, result("iron", "30", "ug/dL"))

    interpretation = iron["interpretation"]
    assert interpretation["code"] == "L"
    assert interpretation["reference_range"]["sex"] is None
    assert interpretation["reference_range"]["low"] == 8.05802  # 45 ug/dL, the male limit
    assert interpretation["reference_range"]["high"] == 30.4414  # 170 ug/dL, the female limit
    assert interpretation["note"].startswith(f"sex '{sex}': checked against every sex's range")


@pytest.mark.parametrize(
    ("collected_at", "code", "band", "low"),
    [
        # The day before the 60th birthday: the [18, 60) band, lower limit 8.6 mg/dL.
        ("2026-06-09T08:00:00Z", "N", (18.0, 60.0), 2.14582),
        # On the 60th birthday: the [60, ...) band, lower limit 8.8 mg/dL.
        ("2026-06-10T08:00:00Z", "L", (60.0, None), 2.19572),
    ],
)
def test_calcium_age_band_starts_on_the_60th_birthday(
    client: TestClient,
    collected_at: str,
    code: str,
    band: tuple[float, float | None],
    low: float,
) -> None:
    patient = make_patient(client, birth_date="1966-06-10")
    panel = post_panel(
        client, patient, [result("calcium", "8.7", "mg/dL")], collected_at=collected_at
    )
    calcium = result_for(panel, "calcium")

    assert calcium["canonical"]["value"] == 2.17077
    assert calcium["interpretation"]["code"] == code
    applied = calcium["interpretation"]["reference_range"]
    assert (applied["age_min_years"], applied["age_max_years"]) == band
    assert applied["low"] == low


# --- critical values --------------------------------------------------------------------------


def test_calcium_13_5_mg_per_dl_is_critically_high_and_marks_the_panel_critical(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    panel = post_panel(
        client,
        patient,
        [result("calcium", "13.5", "mg/dL"), result("zinc", "80", "ug/dL")],
    )

    calcium = result_for(panel, "calcium")
    assert calcium["canonical"]["value"] == 3.36843
    assert calcium["interpretation"]["code"] == "HH"
    assert calcium["interpretation"]["display"] == "Critically high"
    assert calcium["interpretation"]["critical"] is True
    assert calcium["interpretation"]["reference_range"]["critical_high"] == 3.24367  # 13 mg/dL
    assert result_for(panel, "zinc")["interpretation"]["critical"] is False
    assert panel["has_critical"] is True
    assert client.get(f"/api/v1/panels/{panel['id']}").json()["has_critical"] is True


def test_magnesium_0_4_mmol_per_l_is_critically_low(client: TestClient) -> None:
    patient = make_patient(client)
    panel = post_panel(client, patient, [result("magnesium", "0.4", "mmol/L")])
    magnesium = result_for(panel, "magnesium")

    assert magnesium["interpretation"]["code"] == "LL"
    assert magnesium["interpretation"]["critical"] is True
    assert magnesium["interpretation"]["reference_range"]["critical_low"] == 0.411438  # 1 mg/dL
    assert panel["has_critical"] is True


def test_a_panel_without_critical_results_is_not_marked_critical(client: TestClient) -> None:
    patient = make_patient(client)
    panel = post_panel(client, patient, [result("magnesium", "0.62", "mmol/L")])

    assert result_for(panel, "magnesium")["interpretation"]["code"] == "L"
    assert panel["has_critical"] is False


# --- comparators ------------------------------------------------------------------------------


def test_magnesium_below_0_5_is_low_and_keeps_the_value_as_sent(client: TestClient) -> None:
    patient = make_patient(client)
    magnesium = _single(client, patient, result("magnesium", "< 0.5", "mmol/L"))

    # Every possible value (0 to 0.5) lies below the lower limit 0.70 mmol/L; some lie below
    # the critical limit too, which the note says rather than hiding.
    assert magnesium["interpretation"]["code"] == "L"
    assert magnesium["interpretation"]["critical"] is False
    assert "may be critically low" in magnesium["interpretation"]["note"]
    assert magnesium["reported"] == {
        "text": "< 0.5",
        "value": 0.5,
        "comparator": "<",
        "unit": "mmol/L",
    }
    assert magnesium["canonical"] == {
        "value": 0.5,
        "comparator": "<",
        "unit": "mmol/L",
        "display_value": "0.5",
    }


def test_zinc_below_10_umol_is_indeterminate_because_the_lower_limit_lies_inside(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    zinc = _single(client, patient, result("zinc", "<10", "umol/L"))

    interpretation = zinc["interpretation"]
    assert interpretation["reference_range"]["low"] == 9.17712  # 60 ug/dL
    assert interpretation["code"] == "IND"
    assert interpretation["display"] == "Indeterminate"
    assert interpretation["critical"] is False
    assert interpretation["note"] == (
        "cannot be decided: the value is below 10 and the lower limit is 9.17712"
    )
    assert zinc["reported"]["text"] == "<10"
    assert zinc["reported"]["comparator"] == "<"


def test_zinc_above_a_value_beyond_the_upper_limit_is_high(client: TestClient) -> None:
    patient = make_patient(client)
    zinc = _single(client, patient, result("zinc", ">120", "ug/dL"))

    assert zinc["interpretation"]["code"] == "H"
    assert zinc["reported"]["text"] == ">120"
    assert zinc["canonical"] == {
        "value": 18.3542,
        "comparator": ">",
        "unit": "umol/L",
        "display_value": "18.4",
    }


# --- the lab's own range and flag -------------------------------------------------------------


def test_lab_flag_normal_for_a_value_we_flag_low_is_a_visible_disagreement(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    magnesium = _single(
        client,
        patient,
        result("magnesium", "0.62", "mmol/L", reference_range={"text": "0.70-1.00"}, flag="N"),
    )

    assert magnesium["interpretation"]["code"] == "L"
    lab = magnesium["lab"]
    assert lab["range_text"] == "0.70-1.00"
    assert (lab["low"], lab["high"], lab["flag"]) == (0.7, 1.0, "N")
    assert lab["disagreement"] == (
        "the lab flagged this result normal (N) but it is low (L) against the applied "
        "reference range"
    )


def test_lab_flag_that_agrees_with_ours_is_not_a_disagreement(client: TestClient) -> None:
    patient = make_patient(client)
    magnesium = _single(
        client,
        patient,
        result("magnesium", "0.62", "mmol/L", reference_range={"text": "0.70-1.00"}, flag="L"),
    )

    assert magnesium["lab"]["flag"] == "L"
    assert magnesium["lab"]["disagreement"] is None


def test_lab_range_without_a_flag_still_shows_a_disagreement_by_the_labs_own_range(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    magnesium = _single(
        client,
        patient,
        result("magnesium", "0.62", "mmol/L", reference_range={"text": "0.60 - 1.00"}),
    )

    assert magnesium["interpretation"]["code"] == "L"
    assert magnesium["lab"]["disagreement"] == (
        "by the lab's own range (0.60 - 1.00): the lab flagged this result normal (N) but it "
        "is low (L) against the applied reference range"
    )


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("0.70 - 1.00", 0.7, 1.0),
        ("0.7 mmol/L - 1.0 mmol/L", 0.7, 1.0),
        ("0.70 to 1.00", 0.7, 1.0),
        ("<1.1", None, 1.1),
        ("> 0.65", 0.65, None),
        ("see interpretive report", None, None),
    ],
)
def test_free_text_lab_range_is_kept_verbatim_and_parsed_when_possible(
    client: TestClient, text: str, low: float | None, high: float | None
) -> None:
    patient = make_patient(client)
    magnesium = _single(
        client, patient, result("magnesium", "0.80", "mmol/L", reference_range={"text": text})
    )

    assert magnesium["lab"]["range_text"] == text
    assert (magnesium["lab"]["low"], magnesium["lab"]["high"]) == (low, high)
    assert magnesium["lab"]["flag"] is None


def test_result_without_lab_range_or_flag_has_no_lab_block(client: TestClient) -> None:
    patient = make_patient(client)
    magnesium = _single(client, patient, result("magnesium", "0.80", "mmol/L"))

    assert magnesium["lab"] is None


# --- ratios -----------------------------------------------------------------------------------


def _ratios(panel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ratio["code"]: ratio for ratio in panel["ratios"]}


def test_ca_mg_and_zn_cu_molar_ratios_are_computed_when_both_values_are_present(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    panel = post_panel(
        client,
        patient,
        [
            result("calcium", "2.4", "mmol/L"),
            result("magnesium", "0.8", "mmol/L"),
            result("zinc", "98.07", "ug/dL"),  # 15 umol/L
            result("copper", "76.2552", "ug/dL"),  # 12 umol/L (a mass ratio would be 1.286)
        ],
    )
    ratios = _ratios(panel)

    assert set(ratios) == {"ca_mg_molar", "zn_cu_molar"}
    assert ratios["ca_mg_molar"]["value"] == 3.0
    assert ratios["ca_mg_molar"]["interpretation"] == "N"
    assert (ratios["ca_mg_molar"]["low"], ratios["ca_mg_molar"]["high"]) == (2.36, 3.66)
    assert ratios["zn_cu_molar"]["value"] == 1.25
    assert ratios["zn_cu_molar"]["interpretation"] == "N"
    assert ratios["zn_cu_molar"]["note"] is None


def test_a_ratio_is_absent_when_one_of_its_values_is_missing(client: TestClient) -> None:
    patient = make_patient(client)
    panel = post_panel(
        client,
        patient,
        [result("calcium", "2.4", "mmol/L"), result("zinc", "15", "umol/L")],
    )

    assert panel["ratios"] == []


def test_a_ratio_with_a_censored_value_is_not_computed_and_says_why(client: TestClient) -> None:
    patient = make_patient(client)
    panel = post_panel(
        client,
        patient,
        [result("calcium", "2.4", "mmol/L"), result("magnesium", "<0.5", "mmol/L")],
    )
    ca_mg = _ratios(panel)["ca_mg_molar"]

    assert ca_mg["value"] is None
    assert ca_mg["interpretation"] is None
    assert ca_mg["note"] == (
        "not computed: magnesium was reported as <0.5, so the ratio has no single value"
    )
