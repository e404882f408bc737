"""Strict query strings: an unknown query parameter is a 400 naming it and the accepted ones,
on every route of the native API, never silently ignored (a typo in a find-by-MRN search
must not list every patient). FHIR keeps its own search rules.

Query errors come in one status and type per class: `unknown-query-parameter` 400,
`invalid-query` 400 (well-typed values that cannot be used), `validation-error` 422 (a value
breaking its declared type or bound), `invalid-cursor` 400.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.builders import MRN_SYSTEM, expect_problem, make_patient, post_panel, result
from tests.conftest import Database
from tests.plans.builders import LOW_MAGNESIUM, draft_plan, post_recent_panel


def _typo(name: str, accepted: set[str]) -> str:
    """A plausible misspelling that is not itself accepted (`identifier` → `identifer`)."""
    for index in range(len(name) // 2, len(name)):
        candidate = name[:index] + name[index + 1 :]
        if candidate and candidate not in accepted:
            return candidate
    return name + "x"


def _path_values(client: TestClient) -> dict[str, str]:
    """Real records for every kind of path parameter, so the control request is meaningful."""
    patient = make_patient(client)
    panel = post_recent_panel(client, patient, LOW_MAGNESIUM)
    plan = draft_plan(client, patient)
    range_set = client.get("/api/v1/range-sets/active").json()
    rule_set = client.get("/api/v1/plan-rule-sets/active").json()
    return {
        "patient_id": patient["id"],
        "panel_id": panel["id"],
        "plan_id": plan["id"],
        "range_set_id": range_set["id"],
        "rule_set_id": rule_set["id"],
        "analyte": "magnesium",
        "version": "1",
    }


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), path)


def _get_operations_with_queries(document: dict[str, Any]) -> list[tuple[str, set[str]]]:
    found = []
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if names:
            found.append((path, names))
    return found


def test_a_typo_in_any_list_query_is_a_400_naming_it_and_the_accepted_ones(
    client: TestClient,
) -> None:
    values = _path_values(client)
    operations = _get_operations_with_queries(client.get("/openapi.json").json())
    assert len(operations) >= 10, operations
    ignored: list[str] = []
    for path, accepted in operations:
        url = _fill(path, values)
        for name in sorted(accepted):
            typo = _typo(name, accepted)
            response = client.get(url, params={typo: "1"})
            if response.status_code != 400:
                ignored.append(f"GET {path}?{typo}= answered {response.status_code}")
                continue
            problem = expect_problem(response, 400, "unknown-query-parameter")
            assert problem["unknown"] == [typo]
            assert set(problem["accepted"]) == accepted, path
            assert typo in problem["detail"]
            assert [e["field"] for e in problem["errors"]] == [f"query.{typo}"]
        control = client.get(url)
        if control.status_code >= 400:
            assert not control.json()["type"].endswith("/unknown-query-parameter"), path
    assert not ignored, "unknown query parameters were ignored:\n" + "\n".join(ignored)


def test_every_documented_get_refuses_a_parameter_it_does_not_declare(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    values = {"patient_id": str(uuid.uuid4())}
    for path, item in document["paths"].items():
        if "get" not in item:
            continue
        response = client.get(_fill(path, values), params={"sort": "name"})

        problem = expect_problem(response, 400, "unknown-query-parameter")
        assert problem["unknown"] == ["sort"], path


def test_a_misspelt_identifier_never_lists_every_patient(client: TestClient) -> None:
    make_patient(client, mrn="MRN-STRICT-1")
    make_patient(client, mrn="MRN-STRICT-2")

    typo = client.get("/api/v1/patients", params={"identifer": f"{MRN_SYSTEM}|MRN-STRICT-1"})
    by_name = client.get("/api/v1/patients", params={"name": "Smith"})
    found = client.get("/api/v1/patients", params={"identifier": f"{MRN_SYSTEM}|MRN-STRICT-1"})

    problem = expect_problem(typo, 400, "unknown-query-parameter")
    assert "identifier" in problem["accepted"]
    assert "items" not in problem
    # `name` is a real filter now (a name prefix): these unnamed patients do not match it.
    assert by_name.status_code == 200
    assert by_name.json()["items"] == []
    assert found.status_code == 200
    assert len(found.json()["items"]) == 1


def test_several_unknown_parameters_are_all_named_and_known_ones_still_work(
    client: TestClient,
) -> None:
    patient = make_patient(client)
    post_panel(client, patient, [result("magnesium", "0.62", "mmol/L")])
    url = f"/api/v1/patients/{patient['id']}/panels"

    refused = client.get(url, params={"limit": 5, "sort": "date", "order": "desc"})
    accepted = client.get(url, params={"limit": 5, "analyte": "magnesium"})

    assert expect_problem(refused, 400, "unknown-query-parameter")["unknown"] == ["order", "sort"]
    assert accepted.status_code == 200, accepted.text
    assert len(accepted.json()["items"]) == 1


def test_a_refused_query_on_patient_data_is_audited_once(client: TestClient, db: Database) -> None:
    patient = make_patient(client)
    before = db.count("audit_event")

    response = client.get(f"/api/v1/patients/{patient['id']}", params={"fields": "all"})

    expect_problem(response, 400, "unknown-query-parameter")
    assert db.count("audit_event") == before + 1


def test_post_routes_refuse_unknown_query_parameters_too(client: TestClient, db: Database) -> None:
    before = db.count("patient")

    response = client.post(
        "/api/v1/patients",
        params={"dry_run": "true"},
        json={"identifiers": [{"system": MRN_SYSTEM, "value": "MRN-DRY"}], "sex": "female"},
    )

    expect_problem(response, 400, "unknown-query-parameter")
    assert db.count("patient") == before


def test_fhir_search_keeps_its_own_rules_for_unknown_parameters(client: TestClient) -> None:
    response = client.get("/fhir/R4/Patient", params={"bogus-param": "1"})

    assert not response.headers["content-type"].startswith("application/problem+json")


def test_each_class_of_query_error_has_one_status_and_type(client: TestClient) -> None:
    patient = make_patient(client)
    panels = f"/api/v1/patients/{patient['id']}/panels"
    timeline = f"/api/v1/patients/{patient['id']}/timeline"

    unknown = client.get("/api/v1/patients", params={"identifer": "x"})
    unusable = [
        client.get("/api/v1/patients", params={"identifier": "MRN-0042"}),  # no system|
        client.get(panels, params={"analyte": "unobtainium"}),
        client.get(timeline, params={"from": "2026-02-02", "to": "2026-02-01"}),
    ]
    malformed = [
        client.get("/api/v1/patients", params={"limit": 0}),
        client.get("/api/v1/patients", params={"birth_date": "yesterday"}),
    ]
    bad_cursor = client.get(panels, params={"cursor": "zz"})

    expect_problem(unknown, 400, "unknown-query-parameter")
    for response in unusable:
        expect_problem(response, 400, "invalid-query")
    for response in malformed:
        expect_problem(response, 422, "validation-error")
    expect_problem(bad_cursor, 400, "invalid-cursor")
