"""Every unacceptable panel is refused with a problem+json naming the fault, and stores nothing.

The panel names its patient by external identifier in every case, so each check also proves
that no problem body echoes that identifier value.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.builders import (
    by_identifier,
    error_fields,
    expect_problem,
    make_patient,
    panel_body,
    result,
)
from tests.conftest import Database

# Replaced in the serialized body by a bare JSON token (NaN, Infinity) json.dumps cannot write.
RAW_TOKEN = "__raw_token__"


@dataclass(frozen=True)
class BadPanel:
    change: Callable[[dict[str, Any]], None]
    status: int = 422
    type_slug: str | None = None
    fields: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    raw: str | None = None  # replaces the RAW_TOKEN string in the serialized body
    body_text: str | None = None  # sent instead of the body altogether
    results: list[dict[str, Any]] = field(
        default_factory=lambda: [result("magnesium", "0.80", "mmol/L")]
    )


def _first_result(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["results"][0].update(changes)


def _set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.update(changes)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.pop(key)


def _unchanged(body: dict[str, Any]) -> None:
    return None


INVALID_RESULTS = "invalid-results"
VALIDATION = "validation-error"

BAD_PANELS: dict[str, BadPanel] = {
    "unknown unit": BadPanel(
        _first_result(unit="mmol/dL"),
        type_slug=INVALID_RESULTS,
        fields=("body.results[0].unit",),
        # the unit sent and exactly the units magnesium accepts
        mentions=("'mmol/dL'", "accepted units: mg/dL, mmol/L, meq/L, mg/L"),
    ),
    "meq/L for zinc": BadPanel(
        _unchanged,
        results=[result("zinc", "15", "meq/L")],
        type_slug=INVALID_RESULTS,
        fields=("body.results[0].unit",),
        mentions=("'meq/L'", "'zinc'", "ug/dL", "umol/L"),
    ),
    "mg/dL for ferritin": BadPanel(
        _unchanged,
        results=[result("ferritin", "40", "mg/dL")],
        type_slug=INVALID_RESULTS,
        fields=("body.results[0].unit",),
        mentions=("'mg/dL'", "'ferritin'", "ug/L", "ng/mL"),
    ),
    "unknown analyte": BadPanel(
        _first_result(analyte="unobtainium"),
        type_slug=INVALID_RESULTS,
        fields=("body.results[0].analyte",),
        mentions=("'unobtainium'", "magnesium"),
    ),
    "negative value": BadPanel(
        _first_result(value="-0.5"),
        type_slug=INVALID_RESULTS,
        fields=("body.results[0].value",),
        mentions=("negative",),
    ),
    "NaN as a string": BadPanel(
        _first_result(value="NaN"),
        type_slug=INVALID_RESULTS,
        fields=("body.results[0].value",),
        mentions=("finite",),
    ),
    "Infinity as a string": BadPanel(
        _first_result(value="Infinity"),
        type_slug=INVALID_RESULTS,
        fields=("body.results[0].value",),
        mentions=("finite",),
    ),
    "bare NaN token": BadPanel(
        _first_result(value=RAW_TOKEN), raw="NaN", fields=("body.results[0].value",)
    ),
    "bare Infinity token": BadPanel(
        _first_result(value=RAW_TOKEN), raw="Infinity", fields=("body.results[0].value",)
    ),
    "bare -Infinity token": BadPanel(
        _first_result(value=RAW_TOKEN), raw="-Infinity", fields=("body.results[0].value",)
    ),
    "boolean value": BadPanel(
        _first_result(value=True), type_slug=VALIDATION, fields=("body.results[0].value",)
    ),
    "collection date in the future": BadPanel(
        _set(collected_at="2099-01-01T00:00:00Z"),
        type_slug=VALIDATION,
        fields=("body.collected_at",),
        mentions=("future",),
    ),
    "collection date before 1900": BadPanel(
        _set(collected_at="1899-12-31T08:00:00Z"),
        type_slug=VALIDATION,
        fields=("body.collected_at",),
        mentions=("1900",),
    ),
    "naive collection time": BadPanel(
        _set(collected_at="2026-11-20T08:00:00"),
        type_slug=VALIDATION,
        fields=("body.collected_at",),
        mentions=("timezone",),
    ),
    "malformed JSON": BadPanel(
        _unchanged, status=400, type_slug="malformed-json", body_text='{"source": "lab", '
    ),
    "extra top-level field": BadPanel(
        _set(priority="stat"), type_slug=VALIDATION, fields=("body.priority",)
    ),
    "extra field in a result": BadPanel(
        _first_result(comment="hemolysed"),
        type_slug=VALIDATION,
        fields=("body.results[0].comment",),
    ),
    "missing results": BadPanel(_drop("results"), type_slug=VALIDATION, fields=("body.results",)),
    "empty results": BadPanel(_set(results=[]), type_slug=VALIDATION, fields=("body.results",)),
    "same analyte twice": BadPanel(
        _unchanged,
        # "Mg" is a synonym: the same analyte under another name
        results=[result("magnesium", "0.80", "mmol/L"), result("Mg", "1.9", "mg/dL")],
        type_slug=INVALID_RESULTS,
        fields=("body.results[1].analyte",),
        mentions=("body.results[0]",),
    ),
    "unknown patient id": BadPanel(
        _set(patient={"id": str(uuid.uuid4())}),
        type_slug="unknown-patient",
        fields=("body.patient",),
    ),
    "unknown patient identifier": BadPanel(
        _set(patient={"identifier": {"system": "urn:test:mrn", "value": "MRN-NOBODY-HERE"}}),
        type_slug="unknown-patient",
        fields=("body.patient",),
    ),
    "magnesium 50 mg/dL beyond absolute bounds": BadPanel(
        _first_result(value="50", unit="mg/dL"),
        type_slug="implausible-value",
        fields=("body.results[0].value",),
        mentions=("absolute upper limit",),
    ),
}


def _send(client: TestClient, body: dict[str, Any], case: BadPanel) -> Any:
    if case.body_text is not None:
        content = case.body_text
    else:
        content = json.dumps(body)
        if case.raw is not None:
            content = content.replace(json.dumps(RAW_TOKEN), case.raw)
    return client.post(
        "/api/v1/panels", content=content, headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize("case", BAD_PANELS.values(), ids=BAD_PANELS.keys())
def test_bad_panel_is_refused_with_a_problem_and_stores_nothing(
    client: TestClient, db: Database, case: BadPanel
) -> None:
    mrn = f"MRN-SECRET-{uuid.uuid4().hex[:8]}"
    patient = make_patient(client, mrn=mrn)
    body = panel_body(patient, case.results, patient_ref=by_identifier(patient))
    case.change(body)
    sent_identifier = body.get("patient", {}).get("identifier")
    before = db.counts()

    response = _send(client, body, case)

    problem = expect_problem(response, case.status, case.type_slug)
    for path in case.fields:
        assert path in error_fields(problem) or any(
            f.startswith(path + ".") for f in error_fields(problem)
        ), problem
    text = json.dumps(problem)
    for mention in case.mentions:
        assert mention in text, problem
    assert mrn not in response.text
    if sent_identifier is not None:
        assert sent_identifier["value"] not in response.text
    assert db.counts() == before


def test_every_bad_result_in_a_panel_is_reported_at_once(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    body = panel_body(
        patient,
        [
            result("magnesium", "0.80", "mmol/L"),
            result("zinc", "15", "meq/L"),
            result("unobtainium", "1", "mg/dL"),
            result("iron", "-3", "ug/dL"),
        ],
    )
    before = db.counts()

    problem = expect_problem(client.post("/api/v1/panels", json=body), 422, INVALID_RESULTS)

    assert error_fields(problem) == [
        "body.results[1].unit",
        "body.results[2].analyte",
        "body.results[3].value",
    ]
    assert db.counts() == before


def test_a_panel_can_name_its_patient_by_identifier(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    body = panel_body(
        patient, [result("magnesium", "0.80", "mmol/L")], patient_ref=by_identifier(patient)
    )

    response = client.post("/api/v1/panels", json=body)

    assert response.status_code == 201, response.text
    assert response.json()["patient_id"] == patient["id"]
    assert db.count("result") == 1


def test_a_panel_naming_its_patient_both_ways_is_refused(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    both = {"id": patient["id"], **by_identifier(patient)}
    body = panel_body(patient, [result("magnesium", "0.80", "mmol/L")], patient_ref=both)

    problem = expect_problem(client.post("/api/v1/panels", json=body), 422, VALIDATION)

    assert error_fields(problem) == ["body.patient"]
    assert db.count("panel") == 0
