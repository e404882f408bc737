"""Health probes, the offline documentation pages, and the completeness of the OpenAPI document."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.errors import PROBLEM_BASE, PROBLEM_JSON
from app.main import create_app

# --- health ---------------------------------------------------------------------------------


def test_liveness_answers_ok(client: TestClient) -> None:
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_answers_ok_when_the_database_answers(client: TestClient) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize(
    "database_url",
    [
        pytest.param("postgresql://root@127.0.0.1:1/none", id="postgresql-refused"),
        pytest.param("sqlite:////nonexistent-dir/mineral/labs.db", id="sqlite-missing-dir"),
    ],
)
def test_readiness_is_a_503_problem_when_the_database_is_unreachable(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, environment="test"))
    with TestClient(app, raise_server_exceptions=False) as unreachable:
        ready = unreachable.get("/health/ready")
        live = unreachable.get("/health/live")

    assert ready.status_code == 503
    assert ready.headers["content-type"] == PROBLEM_JSON
    problem = ready.json()
    assert problem["type"] == PROBLEM_BASE + "service-unavailable"
    assert problem["status"] == 503
    assert problem["title"]
    # the driver's message (host, port, file path) stays in the log
    for leak in ("127.0.0.1", "nonexistent-dir", "Error", "Traceback"):
        assert leak not in ready.text
    assert live.status_code == 200  # liveness never depends on the database


# --- documentation pages --------------------------------------------------------------------


class _References(HTMLParser):
    """Collects every URL a page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def page_references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_page_loads_nothing_from_outside(client: TestClient, page: str) -> None:
    response = client.get(page)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html
    assert "https://" not in html
    assert "cdn.jsdelivr" not in html
    assert "fonts.googleapis" not in html
    references = page_references(html)
    assert any(url.endswith(".js") for url in references)
    assert all(url.startswith("/docs-assets/") for url in references), references
    assert "/openapi.json" in html


def test_swagger_ui_does_not_call_the_online_validator(client: TestClient) -> None:
    html = client.get("/docs").text

    assert '"validatorUrl": null' in html


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_a_documentation_page_references_is_served(
    client: TestClient, page: str
) -> None:
    references = page_references(client.get(page).text)

    assert references
    for url in references:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    scripts = [url for url in references if url.endswith(".js")]
    assert all(len(client.get(url).content) > 100_000 for url in scripts)


# --- the OpenAPI document -------------------------------------------------------------------

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def has_example(document: dict[str, Any], media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = resolve(document, media.get("schema", {}))
    return bool(schema.get("examples") or schema.get("example") is not None)


def documentation_gaps(document: dict[str, Any]) -> list[str]:
    """Every way an operation falls short of being documented for an integrator."""
    gaps: list[str] = []
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, item in document["paths"].items():
        for method in HTTP_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            name = f"{method.upper()} {path}"
            if not operation.get("summary", "").strip():
                gaps.append(f"{name}: no summary")
            if len(operation.get("description", "").strip()) < 20:
                gaps.append(f"{name}: no description (the route's docstring)")
            responses: dict[str, Any] = operation.get("responses", {})
            problems = [
                code
                for code, response in responses.items()
                if PROBLEM_JSON in resolve(document, response).get("content", {})
            ]
            if not problems:
                gaps.append(f"{name}: no problem+json response documented")
            for code, response in responses.items():
                content = resolve(document, response).get("content", {})
                if code.startswith(("4", "5")):
                    if set(content) != {PROBLEM_JSON}:
                        gaps.append(f"{name}: {code} documented as {sorted(content)}")
                    elif content[PROBLEM_JSON].get("schema") != problem_ref:
                        gaps.append(f"{name}: {code} does not use the Problem schema")
                if not resolve(document, response).get("description", "").strip():
                    gaps.append(f"{name}: response {code} has no description")
            if "requestBody" in operation:
                body = resolve(document, operation["requestBody"])
                for media_type, media in body.get("content", {}).items():
                    if not has_example(document, media):
                        gaps.append(f"{name}: request body {media_type} has no example")
    return gaps


def test_every_operation_is_documented_for_integrators(client: TestClient) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["paths"], "no operations documented"
    gaps = documentation_gaps(document)
    assert not gaps, "undocumented:\n" + "\n".join(gaps)


def test_problem_schema_is_published(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]

    problem = schemas["Problem"]
    assert {"type", "title", "status"} <= set(problem["required"])
    assert "errors" in problem["properties"]
    assert "FieldError" in schemas


def test_documentation_audit_flags_a_route_added_without_docs(settings: Settings) -> None:
    app: FastAPI = create_app(settings)
    existing = set(documentation_gaps(create_app(settings).openapi()))

    @app.post("/api/v1/undocumented")
    async def undocumented(payload: dict[str, int]) -> dict[str, int]:
        return payload

    document = app.openapi()
    gaps = set(documentation_gaps(document)) - existing

    # Error responses are made problem+json centrally (app.core.docs.shape_openapi), so a new route
    # can only miss what its author must write: the docstring and the examples.
    assert gaps == {
        "POST /api/v1/undocumented: no description (the route's docstring)",
        "POST /api/v1/undocumented: request body application/json has no example",
    }
    responses = document["paths"]["/api/v1/undocumented"]["post"]["responses"]
    assert {"400", "415", "422"} <= set(responses)
    for code in ("400", "415", "422"):
        assert set(responses[code]["content"]) == {PROBLEM_JSON}
