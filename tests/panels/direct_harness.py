"""The harness of the direct entry points' tests (tests/panels/test_direct_post.py,
test_direct_get.py): an app with the API-key cache on, keys, a known patient, and a count of
the requests the routes' own FastAPI handling answered."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI

from app.auth import deps, service
from app.auth.principal import Role
from app.core.config import Settings
from app.core.db import transaction
from app.main import create_app
from tests.builders import panel_body, result

RESULTS = [
    result("magnesium", "0.62", "mmol/L", flag="L"),
    result("calcium", "9.1", "mg/dL"),
    result("iron", "40", "ug/dL"),
]
PANELS = ("POST", "/api/v1/panels")
PANEL = ("GET", "/api/v1/panels/{panel_id}")

Scenario = Callable[["Harness"], Awaitable[None]]


class Harness:
    """An app with the API-key cache on (the tests' default turns it off, which keeps every
    request on the routed path), an integration and a clinician key, a known patient, its
    first panel (posted through the route), and a count of the requests each route's FastAPI
    handling answered."""

    def __init__(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        organization_id: uuid.UUID,
        key: str,
        clinician_key: str,
    ) -> None:
        self.app = app
        self.organization_id = organization_id
        self.client = client
        self.key = key
        self.clinician_key = clinician_key
        self.routed: Counter[tuple[str, str]] = Counter()
        self.patient: dict[str, Any] = {}
        self.panel: dict[str, Any] = {}

    async def post(
        self,
        body: dict[str, Any] | None = None,
        *,
        content: bytes | AsyncIterator[bytes] | None = None,
        headers: Mapping[str, str | None] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bool]:
        """The response, and whether the route's handling answered it (a header given as None
        is not sent)."""
        before = self.routed[PANELS]
        every = {"Content-Type": "application/json", "X-API-Key": self.key, **(headers or {})}
        response = await self.client.post(
            "/api/v1/panels",
            json=body if content is None else None,
            content=content,
            headers=_sent(every),
            params=params,
        )
        return response, self.routed[PANELS] > before

    async def get(
        self,
        panel_id: str,
        *,
        headers: Mapping[str, str | None] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bool]:
        """GET /api/v1/panels/{panel_id}: the response, and whether the route answered it."""
        before = self.routed[PANEL]
        every = {"X-API-Key": self.key, **(headers or {})}
        response = await self.client.get(
            f"/api/v1/panels/{panel_id}", headers=_sent(every), params=params
        )
        return response, self.routed[PANEL] > before


def _sent(headers: Mapping[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if value is not None}


def run(settings: Settings, monkeypatch: pytest.MonkeyPatch, scenario: Scenario) -> None:
    handle = fastapi.routing.APIRoute.handle

    async def main() -> None:
        app = create_app(settings.model_copy(update={"api_key_cache_seconds": 60}))
        async with app.router.lifespan_context(app):
            async with transaction(app.state.sessionmaker) as session:
                organization = await service.get_or_create_organization(
                    session, name=f"direct-{uuid.uuid4().hex[:10]}"
                )
                keys = [
                    await service.create_api_key(
                        session, organization_id=organization.id, role=role, name="direct"
                    )
                    for role in (Role.INTEGRATION, Role.CLINICIAN)
                ]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                harness = Harness(app, client, organization.id, keys[0][1], keys[1][1])

                async def counted(
                    route: fastapi.routing.APIRoute, scope: Any, receive: Any, send: Any
                ) -> None:
                    for method, path in (PANELS, PANEL):
                        if route.path == path and scope["method"] == method:
                            harness.routed[method, path] += 1
                    await handle(route, scope, receive, send)

                monkeypatch.setattr(fastapi.routing.APIRoute, "handle", counted)
                created = await client.post(
                    "/api/v1/patients",
                    json={
                        "identifiers": [{"system": "urn:direct", "value": uuid.uuid4().hex}],
                        "sex": "female",
                        "birth_date": "1981-04-12",
                    },
                    headers={"X-API-Key": harness.key},
                )
                assert created.status_code == 201, created.text
                harness.patient = created.json()
                # The routed path reads the key (caching it) and remembers the patient.
                warm, routed = await harness.post(panel_body(harness.patient, RESULTS))
                assert warm.status_code == 201, warm.text
                assert routed
                harness.panel = warm.json()
                try:
                    await scenario(harness)
                finally:
                    for api_key, _token in keys:
                        deps.forget_api_key(api_key.id)

    asyncio.run(main())


def route_dependencies(settings: Settings, method: str, path: str) -> list[str]:
    """What FastAPI solves for the route before its endpoint runs: every dependency (a
    security scheme by its class), indented by depth, and the endpoint's own parameters. The
    direct entry points stand in for exactly these; a test pins them, so adding one makes its
    author mirror it in the direct entry point (or have it hand such requests to the route)."""
    from fastapi.routing import iter_route_contexts

    app = create_app(settings)
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        if context.path == path and method in (context.methods or ()) and dependant:
            lines: list[str] = []
            _walk(dependant, 0, lines)
            lines.append(f"endpoint {_params(dependant)}")
            return lines
    raise AssertionError(f"no route {method} {path}")


def _walk(node: Any, depth: int, lines: list[str]) -> None:
    for sub in node.dependencies:
        name = getattr(sub.call, "__name__", None) or type(sub.call).__name__
        params = _params(sub)
        lines.append("  " * depth + name + (f" {params}" if params else ""))
        _walk(sub, depth + 1, lines)


def _params(node: Any) -> list[str]:
    return [
        p.name
        for p in (*node.path_params, *node.query_params, *node.header_params, *node.body_params)
    ]
