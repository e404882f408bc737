"""The API's documentation: Swagger UI and ReDoc served from packaged assets (hospital networks
often block CDNs), and the OpenAPI document shaped for client generators (operationIds,
If-Match, response headers, problem+json on every error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from app.kit.problems import PROBLEM_SCHEMA_REF

# fastapi-offline ships the Swagger UI bundle and the ReDoc standalone build as package data.
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            # Swagger UI's default validator badge is an image from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )


# ---------------------------------------------------------------------------------------------
# The OpenAPI document, shaped for client generators.

# operationIds are the route function's name in camelCase (`list_patient_panels` →
# `listPatientPanels`); where that name does not read as "verb + resource" on its own, it is
# named here. Keys are route (function) names; an operationId, once published, never changes.
OPERATION_IDS: dict[str, str] = {
    "live": "getLiveness",
    "ready": "getReadiness",
    "put_context": "putPatientContext",
    "get_context": "getPatientContext",
    "list_context_versions": "listPatientContextVersions",
    "get_context_version": "getPatientContextVersion",
    "get_timeline": "getPatientTimeline",
    "analyte_history": "getAnalyteHistory",
    "ratio_history": "getRatioHistory",
    "panel_interpretations": "listPanelInterpretations",
    "active_range_set": "getActiveRangeSet",
    "import_rule_set": "importPlanRuleSet",
    "list_rule_sets": "listPlanRuleSets",
    "active_rule_set": "getActivePlanRuleSet",
    "get_rule_set": "getPlanRuleSet",
    "activate_rule_set": "activatePlanRuleSet",
    "worklist": "getPlanWorklist",
    "edit_items": "editPlanItems",
    "change_status": "changePlanStatus",
    "list_versions": "listPlanVersions",
    "get_version": "getPlanVersion",
    "diff": "diffPlanVersions",
    "post_oru": "postHl7Oru",
    "reprocess_refused_input": "postRefusedInputReprocess",
    "discard_refused_input": "postRefusedInputDiscard",
}


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def operation_id(route: APIRoute) -> str:
    """FastAPI's `generate_unique_id_function`: the operationId (and the prefix of generated
    body-model names) of a route."""
    return OPERATION_IDS.get(route.name, camel_case(route.name))


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


ETAG = _header("The record's strong, resource-scoped entity tag: send it back as `If-Match`.")
LOCATION = _header("The URL of the record.")
_CREATED = {"201": {"ETag": ETAG, "Location": LOCATION}}
_READ = {"200": {"ETag": ETAG}}

# Which responses carry ETag / Location, by operationId (tests/test_openapi_contract.py checks
# every header a response actually sends is declared here).
RESPONSE_HEADERS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "createPatient": {
        **_CREATED,
        "409": {"Location": _header("The existing patient with this identifier.")},
    },
    "getPatient": _READ,
    "updatePatient": _READ,
    "putPatientContext": {"200": {"ETag": ETAG}, "201": {"ETag": ETAG, "Location": LOCATION}},
    "getPatientContext": _READ,
    "createSleepAssessment": {"201": {"Location": LOCATION}},
    "postPanel": {"200": {"Location": LOCATION}, "201": {"Location": LOCATION}},
    "importRangeSet": _CREATED,
    "getActiveRangeSet": _READ,
    "getRangeSet": _READ,
    "activateRangeSet": _READ,
    "importPlanRuleSet": _CREATED,
    "getActivePlanRuleSet": _READ,
    "getPlanRuleSet": _READ,
    "activatePlanRuleSet": _READ,
    "createPlan": _CREATED,
    "getPlan": _READ,
    "editPlanItems": _READ,
    "changePlanStatus": _READ,
    "regeneratePlan": _CREATED,
}

LINK = _header(
    'RFC 8288 `<url>; rel="next"`: the next page (the same query with `cursor` set), beside '
    "the body's `next_cursor`; absent on the last page."
)
# Every keyset-paginated list (app.kit.pagination.link_next sets the header).
PAGINATED_OPERATIONS = (
    "searchPatients",
    "listPatientContextVersions",
    "listSleepAssessments",
    "getPatientTimeline",
    "getPatientSeries",
    "listPatientPanels",
    "getAnalyteHistory",
    "getRatioHistory",
    "listFlaggedResults",
    "listRangeSets",
    "listPlanRuleSets",
    "listPatientPlans",
    "listCodeMaps",
    "listApiKeys",
    "listAuditEvents",
    "listRefusedInputs",
)
for _operation in PAGINATED_OPERATIONS:
    RESPONSE_HEADERS.setdefault(_operation, {}).setdefault("200", {})["Link"] = LINK

IF_MATCH_DESCRIPTION = (
    "The `ETag` from your last read of this record (`*`: any version). **428** without it, "
    "**412** when the record changed since."
)
PROBLEM_JSON = "application/problem+json"
UNKNOWN_QUERY_SENTENCE = (
    "An unknown query parameter is refused as `unknown-query-parameter`, naming it and the "
    "accepted ones."
)
_GENERIC_ERRORS = {
    "400": "Malformed request (bad JSON, bad cursor).",
    "415": "A JSON body sent without `Content-Type: application/json`; `accepted` lists the "
    "media types.",
}


def shape_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Post-process FastAPI's document so every operation states the same contract: the
    If-Match header where 412/428 can answer, ETag/Location/Idempotent-Replayed response
    headers, 400 for unknown query parameters, 415 for JSON bodies, and problem+json on every
    error response."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                _shape_operation(operation)
    return schema


def _shape_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
    headers_in = {p["name"].lower() for p in parameters if p.get("in") == "header"}
    if ("412" in responses or "428" in responses) and "if-match" not in headers_in:
        parameters.append(
            {
                "name": "If-Match",
                "in": "header",
                # A create-or-replace PUT needs no If-Match for its first (201) write.
                "required": "201" not in responses,
                "schema": {"type": "string"},
                "description": IF_MATCH_DESCRIPTION,
            }
        )
    if not parameters:
        del operation["parameters"]

    for status, headers in RESPONSE_HEADERS.get(operation.get("operationId", ""), {}).items():
        if status in responses:
            responses[status].setdefault("headers", {}).update(headers)
    if "idempotency-key" in headers_in:
        for status, response in responses.items():
            if status.startswith("2"):
                response.setdefault("headers", {})["Idempotent-Replayed"] = _header(
                    "`true` when this is the stored response of an earlier request with the "
                    "same Idempotency-Key."
                )
            if status == "409":
                response.setdefault("headers", {})["Retry-After"] = _header(
                    "Seconds to wait before retrying (a request with the same key is running)."
                )

    bad_request = responses.setdefault("400", {"description": _GENERIC_ERRORS["400"]})
    if "unknown query parameter" not in bad_request.get("description", "").lower():
        bad_request["description"] = (
            bad_request.get("description", "").rstrip() + " " + UNKNOWN_QUERY_SENTENCE
        ).strip()
    body = operation.get("requestBody", {}).get("content", {})
    if "application/json" in body and "415" not in responses:
        responses["415"] = {"description": _GENERIC_ERRORS["415"]}
    for status, response in responses.items():
        if status[0] in "45":
            # Errors are only ever problem+json (FastAPI would add application/json for 422).
            content = response.get("content", {})
            response["content"] = {PROBLEM_JSON: content.get(PROBLEM_JSON, _problem_media())}


def _problem_media() -> dict[str, Any]:
    return {"schema": {"$ref": PROBLEM_SCHEMA_REF}}
