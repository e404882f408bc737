"""A batch line answers what the single POST answers: the critical flags of what was stored,
and for a refused line the very problem object (JSON limits, field errors, extensions)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.builders import make_patient, panel_body, result
from tests.conftest import Database

NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}


def _post(client: TestClient, *lines: Any) -> list[dict[str, Any]]:
    body = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    response = client.post("/api/v1/panel-batches", content=body, headers=NDJSON)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _flags(outcome: dict[str, Any]) -> tuple[str, bool, bool]:
    return outcome["outcome"], outcome["has_critical"], outcome["has_possible_critical"]


def test_possibly_critical_values_are_flagged_on_every_line_and_counted_in_the_batch(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    below = panel_body(patient, [result("magnesium", "<0.5", "mmol/L")], accession="PC-1")
    critical = panel_body(patient, [result("calcium", "13.5", "mg/dL")], accession="PC-2")
    normal = panel_body(patient, [result("magnesium", "0.85", "mmol/L")], accession="PC-3")
    above = panel_body(patient, [result("calcium", ">12.5", "mg/dL")], accession="PC-4")
    # PC-1 twice: both lines go line by line (the second answers unchanged); the others take
    # the chunk's fast path.
    out = _post(client, below, critical, normal, below, above)

    assert [_flags(o) for o in out[:-1]] == [
        ("stored", False, True),
        ("stored", True, False),
        ("stored", False, False),
        ("unchanged", False, True),
        ("stored", False, True),
    ]
    batch = out[-1]["batch"]
    assert (batch["critical"], batch["possibly_critical"]) == (1, 3)
    assert client.get(f"/api/v1/panels/{out[0]['panel_id']}").json()["has_possible_critical"]

    # Re-sent: every line is unchanged and still carries the stored panel's flags.
    again = _post(client, below, critical, normal, below, above)
    assert [_flags(o) for o in again[:-1]] == [
        ("unchanged", False, True),
        ("unchanged", True, False),
        ("unchanged", False, False),
        ("unchanged", False, True),
        ("unchanged", False, True),
    ]
    progress = client.get(f"/api/v1/panel-batches/{again[-1]['batch']['id']}").json()
    assert (progress["critical"], progress["possibly_critical"]) == (1, 3)


def _bad_bodies(client: TestClient) -> list[bytes]:
    patient = make_patient(client)
    stored = panel_body(patient, [result("zinc", "80", "ug/dL")], accession="BAD-0")
    assert client.post("/api/v1/panels", json=stored).status_code == 201
    good = panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession="BAD-1")
    too_deep = {**good, "lab_comment": None, "extra": [[[[[[[[[[[[]]]]]]]]]]]]}
    return [
        b"not json",
        b'{"source": "x"',
        b"[1, 2]",
        b"null",
        b'"a string"',
        json.dumps({"source": "x"}).encode(),
        # NaN is JSON to the single POST's decoder: a validation error, not a syntax error.
        json.dumps(panel_body(patient, [result("magnesium", float("nan"), "mmol/L")])).encode(),
        # The JSON guard: too many digits (a float would silently round them), an exponent
        # out of range, nesting too deep.
        json.dumps(good).replace('"0.62"', "0.62000000000000000001").encode(),
        json.dumps(good).replace('"0.62"', "1e400").encode(),
        json.dumps(too_deep).replace("[]", "[" * 70 + "]" * 70).encode(),
        # Refused by the service: an unknown unit, an unknown patient, a conflict (409 with
        # the stored panel's id), a collection time in the future.
        json.dumps(panel_body(patient, [result("magnesium", "1", "furlong")])).encode(),
        json.dumps(
            panel_body(
                patient,
                [result("zinc", "80", "ug/dL")],
                patient_ref={"identifier": {"system": "urn:test:mrn", "value": "NOBODY"}},
            )
        ).encode(),
        json.dumps({**stored, "results": [result("zinc", "81", "ug/dL")]}).encode(),
        json.dumps(
            panel_body(patient, [result("zinc", "80", "ug/dL")], collected_at="2999-01-01T00:00Z")
        ).encode(),
    ]


def _without_instance(problem: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in problem.items() if key != "instance"}


def test_a_refused_line_carries_the_problem_the_single_post_answers(
    client: TestClient, db: Database
) -> None:
    bodies = _bad_bodies(client)
    singles = []
    for body in bodies:
        response = client.post("/api/v1/panels", content=body, headers=JSON)
        assert 400 <= response.status_code < 500, (body[:80], response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        singles.append(_without_instance(response.json()))
    panels = db.count("panel")

    out = _post(client, *bodies)[:-1]

    assert [o["outcome"] for o in out] == ["refused"] * len(bodies)
    for body, single, line in zip(bodies, singles, out, strict=True):
        assert line["status"] == single["status"], body[:80]
        assert _without_instance(line["problem"]) == single, body[:80]
    assert db.count("panel") == panels
    slugs = {single["type"].rsplit("/", 1)[1] for single in singles}
    assert {
        "malformed-json",
        "validation-error",
        "json-number-out-of-range",
        "json-too-deep",
        "accession-conflict",
    } <= slugs
    conflict = next(s for s in singles if s["type"].endswith("/accession-conflict"))
    assert "panel_id" in conflict  # an extension the line used to drop


def test_a_line_breaking_the_json_limits_is_refused_and_nothing_is_stored(
    client: TestClient, db: Database
) -> None:
    patient = make_patient(client)
    good = panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession="JG-1")
    rounded = panel_body(patient, [result("magnesium", "0.62", "mmol/L")], accession="JG-2")
    digits = json.dumps(rounded).replace('"0.62"', "0.6200000000000000000001").encode()

    out = _post(client, digits, good)

    assert (out[0]["outcome"], out[0]["status"]) == ("refused", 422)
    assert out[0]["problem"]["type"].endswith("/json-number-out-of-range")
    assert out[1]["outcome"] == "stored"
    assert db.count("panel") == 1
