"""The OpenAPI document as a contract client generators can rely on: one schema per name,
operationIds that read as verbs and never change, If-Match declared wherever 412/428 can
answer, every ETag and Location a response sends declared on it, problem+json on every error,
and strong ETags scoped to one record of one type."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.builders import MRN_SYSTEM, expect_problem, make_patient, panel_body, result
from tests.plans.builders import (
    LOW_MAGNESIUM,
    MODERATE_ISI,
    draft_plan,
    editable,
    items,
    post_recent_panel,
    record_isi,
    today,
)

HTTP_METHODS = ("get", "put", "post", "patch", "delete")
VERBS = (
    "get list search create update put post delete import activate revoke reinterpret "
    "regenerate edit change diff"
).split()
HUMAN_OPERATION_ID = re.compile(rf"^({'|'.join(VERBS)})([A-Z][a-z0-9]*)+$")


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, item[method])
        for path, item in document["paths"].items()
        for method in HTTP_METHODS
        if method in item
    ]


def test_every_operation_has_a_unique_human_operation_id(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    ids = [op.get("operationId", "") for _, _, op in _operations(document)]
    poor = [
        f"{method.upper()} {path}: {op.get('operationId')!r}"
        for method, path, op in _operations(document)
        if not HUMAN_OPERATION_ID.match(op.get("operationId", ""))
    ]

    assert not poor, (
        "name these in app/core/docs.py OPERATION_IDS (verb + resource):\n" + "\n".join(poor)
    )
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_operation_ids_are_stable(settings: Settings, client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    by_route = {
        f"{method.upper()} {path}": op["operationId"] for method, path, op in _operations(document)
    }
    rebuilt = create_app(settings).openapi()

    assert {
        f"{method.upper()} {path}": op["operationId"] for method, path, op in _operations(rebuilt)
    } == by_route
    assert {
        "GET /api/v1/panels/{panel_id}": "getPanel",
        "GET /api/v1/patients/{patient_id}/panels": "listPatientPanels",
        "GET /api/v1/patients": "searchPatients",
        "GET /api/v1/patients/{patient_id}/analytes/{analyte}/history": "getAnalyteHistory",
        "PUT /api/v1/plans/{plan_id}/items": "editPlanItems",
        "POST /api/v1/plans/{plan_id}/status": "changePlanStatus",
        "POST /api/v1/range-sets/{range_set_id}/activate": "activateRangeSet",
        "GET /api/v1/plans/worklist": "getPlanWorklist",
    }.items() <= by_route.items()


def test_every_operation_answering_428_or_412_declares_if_match(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    conditional = [
        (method, path, op)
        for method, path, op in _operations(document)
        if {"412", "428"} & set(op["responses"])
    ]

    assert len(conditional) >= 6  # patient, context, two activations, plan items and status
    for method, path, op in conditional:
        [if_match] = [
            p for p in op.get("parameters", []) if p["in"] == "header" and p["name"] == "If-Match"
        ]
        # Required, except on a create-or-replace PUT whose first (201) write needs none.
        assert if_match["required"] is ("201" not in op["responses"]), (method, path)
        assert if_match["schema"] == {"type": "string"}


def test_schema_names_are_unique_and_have_no_input_output_pairs(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]

    assert not [name for name in schemas if name.endswith(("-Input", "-Output"))]
    assert {"Supplement", "PlanItem", "PlanOut", "ItemGroup", "Problem"} <= set(schemas)
    assert "HTTPValidationError" not in schemas


def test_every_error_response_is_problem_json(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    for method, path, op in _operations(document):
        assert "400" in op["responses"], (method, path)  # unknown query parameters
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            assert "415" in op["responses"], (method, path)
        for status, response in op["responses"].items():
            if status[0] in "45":
                assert set(response["content"]) == {"application/problem+json"}, (path, status)
                media = response["content"]["application/problem+json"]
                assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (path, status)


class _Operations:
    """Maps a request to its documented operation (method + path template)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.patterns = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in document["paths"]
        ]

    def find(self, method: str, url_path: str) -> dict[str, Any]:
        # Literal segments win over parameters (/plans/worklist before /plans/{plan_id}).
        matches = [path for pattern, path in self.patterns if pattern.match(url_path)]
        matches.sort(key=lambda path: path.count("{"))
        operation: dict[str, Any] = self.document["paths"][matches[0]][method.lower()]
        return operation


def test_every_etag_and_location_sent_is_declared_on_its_response(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operations = _Operations(document)
    undeclared: list[str] = []
    seen: set[tuple[str, str, str]] = set()

    def check(response: Any) -> Any:
        request = response.request
        operation = operations.find(request.method, request.url.path)
        declared = operation["responses"].get(str(response.status_code), {}).get("headers", {})
        for header in ("ETag", "Location"):
            if header in response.headers:
                seen.add((operation["operationId"], str(response.status_code), header))
                if header not in declared:
                    undeclared.append(
                        f"{operation['operationId']} {response.status_code} sends {header}"
                    )
        return response

    patient = check(
        client.post(
            "/api/v1/patients",
            json={"identifiers": [{"system": MRN_SYSTEM, "value": "MRN-HDR-1"}], "sex": "female"},
        )
    ).json()
    patient_url = f"/api/v1/patients/{patient['id']}"
    check(
        client.post(
            "/api/v1/patients",
            json={"identifiers": [{"system": MRN_SYSTEM, "value": "MRN-HDR-1"}], "sex": "male"},
        )
    )
    read = check(client.get(patient_url))
    check(
        client.patch(
            patient_url,
            json={"birth_date": "1981-04-12"},
            headers={"If-Match": read.headers["ETag"]},
        )
    )
    body = panel_body(patient, [result("magnesium", "0.62", "mmol/L")])
    check(client.post("/api/v1/panels", json=body))
    panel = check(client.post("/api/v1/panels", json=body)).json()
    check(client.get(f"/api/v1/panels/{panel['id']}"))
    context_url = f"{patient_url}/context"
    first = check(client.put(context_url, json={"diet": "vegan"}))
    check(
        client.put(
            context_url, json={"diet": "omnivore"}, headers={"If-Match": first.headers["ETag"]}
        )
    )
    check(client.get(context_url))
    check(
        client.post(
            f"{patient_url}/sleep-assessments",
            json={"instrument": "ISI", "assessed_on": today(1), "items": MODERATE_ISI},
        )
    )
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    record_isi(client, patient, MODERATE_ISI)
    created = check(client.post(f"{patient_url}/plans", json={}))
    plan_url = f"/api/v1/plans/{created.json()['id']}"
    plan = check(client.get(plan_url))
    check(client.get(plan_url, headers={"Accept": "text/html"}))
    edited = check(
        client.put(
            f"{plan_url}/items",
            json={"items": [editable(i) for i in items(plan.json())]},
            headers={"If-Match": plan.headers["ETag"]},
        )
    )
    check(
        client.post(
            f"{plan_url}/status",
            json={"status": "active"},
            headers={"If-Match": edited.headers["ETag"]},
        )
    )
    check(client.post(f"{plan_url}/regenerate", json={}))
    for kind in ("range-sets", "plan-rule-sets"):
        active = check(client.get(f"/api/v1/{kind}/active"))
        check(client.get(f"/api/v1/{kind}/{active.json()['id']}"))

    assert not undeclared, "\n".join(undeclared)
    assert {
        ("createPatient", "201", "Location"),
        ("createPatient", "409", "Location"),
        ("updatePatient", "200", "ETag"),
        ("putPatientContext", "201", "Location"),
        ("postPanel", "200", "Location"),
        ("createPlan", "201", "ETag"),
        ("changePlanStatus", "200", "ETag"),
        ("regeneratePlan", "201", "Location"),
        ("getActivePlanRuleSet", "200", "ETag"),
    } <= seen


def test_etags_are_strong_and_scoped_to_one_record_of_one_type(client: TestClient) -> None:
    first = make_patient(client)
    second = make_patient(client)
    patient_url = f"/api/v1/patients/{first['id']}"
    context = client.put(f"{patient_url}/context", json={"diet": "vegan"})
    post_recent_panel(client, first, LOW_MAGNESIUM)
    plan = draft_plan(client, first)
    tags = {
        "patient": client.get(patient_url).headers["ETag"],
        "other patient": client.get(f"/api/v1/patients/{second['id']}").headers["ETag"],
        "context": context.headers["ETag"],
        "plan": client.get(f"/api/v1/plans/{plan['id']}").headers["ETag"],
    }

    assert len(set(tags.values())) == len(tags), tags  # all at version 1, all different
    assert all(tag.startswith('"') and tag.endswith('"') for tag in tags.values())
    # A tag read from another resource never satisfies If-Match.
    expect_problem(
        client.patch(
            patient_url, json={"sex": "male"}, headers={"If-Match": tags["other patient"]}
        ),
        412,
        "precondition-failed",
    )
    expect_problem(
        client.put(
            f"/api/v1/plans/{plan['id']}/items",
            json={"items": []},
            headers={"If-Match": tags["context"]},
        ),
        412,
        "precondition-failed",
    )
