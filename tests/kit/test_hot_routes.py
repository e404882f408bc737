"""app.kit.routing.dispatch_hot_routes_first: a request for a hot route goes straight to the
router that holds it, and every request is still answered by the route FastAPI would pick
(path parameters, 405 with its Allow header, 404, trailing-slash redirects)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Match

from app.core.config import Settings
from app.kit.routing import HotRouteDispatch, dispatch_hot_routes_first
from app.main import HOT_ROUTES, create_app

first = APIRouter(prefix="/things")
hot = APIRouter()


@first.get("/{thing_id}")
async def read_thing(thing_id: str) -> dict[str, str]:
    return {"route": "thing", "id": thing_id}


@first.post("/{thing_id}/notes")
async def note_thing(thing_id: str) -> dict[str, str]:
    return {"route": "note", "id": thing_id}


@hot.post("/things")
async def create_thing() -> dict[str, str]:
    return {"route": "create"}


@hot.delete("/things/{thing_id}")
async def delete_thing(thing_id: int) -> dict[str, object]:
    return {"route": "delete", "id": thing_id}


@hot.get("/things/{thing_id}/notes")
async def thing_notes(thing_id: str) -> dict[str, str]:
    return {"route": "notes", "id": thing_id}


def _app(*, shortcuts: bool) -> FastAPI:
    app = FastAPI()
    app.include_router(first)
    app.include_router(hot)
    if shortcuts:
        installed = dispatch_hot_routes_first(
            app,
            ("POST", "/things"),  # nothing before it matches /things
            ("DELETE", "/things/{thing_id}"),  # GET /things/{thing_id} is only a partial match
            ("GET", "/things/{thing_id}/notes"),
        )
        assert installed == 3
    return app


def test_hot_routes_answer_as_fastapi_does_without_the_shortcut() -> None:
    requests = [
        ("POST", "/things"),
        ("DELETE", "/things/7"),
        ("DELETE", "/things/seven"),  # the int path parameter still refuses it: 422
        ("GET", "/things/7"),
        ("GET", "/things/7/notes"),
        ("POST", "/things/7/notes"),
        ("PUT", "/things/7/notes"),  # 405 with the first partial match's Allow header
        ("PUT", "/things"),
        ("POST", "/things/"),  # trailing slash: redirected
        ("GET", "/nothing"),
    ]
    plain = TestClient(_app(shortcuts=False))
    fast = TestClient(_app(shortcuts=True))

    for method, path in requests:
        expected = plain.request(method, path, follow_redirects=False)
        answered = fast.request(method, path, follow_redirects=False)
        assert (answered.status_code, answered.text) == (expected.status_code, expected.text)
        assert answered.headers.get("allow") == expected.headers.get("allow")
        assert answered.headers.get("location") == expected.headers.get("location")


def test_a_hot_route_an_earlier_route_could_shadow_gets_no_shortcut() -> None:
    app = FastAPI()
    app.include_router(first)
    shadowed = APIRouter()

    # FastAPI answers GET /things/special with the earlier GET /things/{thing_id}.
    @shadowed.get("/things/special")
    async def special() -> dict[str, str]:
        return {"route": "special"}

    app.include_router(shadowed)

    assert dispatch_hot_routes_first(app, ("GET", "/things/special")) == 0
    assert not isinstance(app.router.middleware_stack, HotRouteDispatch)
    assert TestClient(app).get("/things/special").json() == {"route": "thing", "id": "special"}
    with pytest.raises(ValueError, match="no route"):
        dispatch_hot_routes_first(app, ("PATCH", "/things"))


def test_routes_added_after_the_shortcut_send_requests_through_fastapis_loop() -> None:
    app = _app(shortcuts=True)
    late = APIRouter()

    @late.post("/late")
    async def late_route() -> dict[str, str]:
        return {"route": "late"}

    app.include_router(late)
    client = TestClient(app)

    assert client.post("/things").json() == {"route": "create"}
    assert client.post("/late").json() == {"route": "late"}


def _fastapi_choice(app: FastAPI, method: str, path: str) -> Any:
    """The app-level route FastAPI's own loop hands the request to (first full match)."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    for route in app.router.routes:
        match, _ = route.matches(dict(scope))
        if match == Match.FULL:
            return route
    return None


def _samples(template: str) -> list[str]:
    values = ("3f0c2a52-9f5e-4a8e-8c1e-6f1d2b3a4c5d", "abc", "history", "panels", "1")
    names = re.findall(r"{[^}]+}", template)
    paths: list[str] = []
    for combination in itertools.product(values, repeat=len(names)):
        path = template
        for name, value in zip(names, combination, strict=True):
            path = path.replace(name, value, 1)
        paths.extend((path, path + "/"))
    return paths


def test_the_apps_hot_routes_have_shortcuts_that_pick_fastapis_route(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'routes.db'}"))
    dispatch = app.router.middleware_stack
    assert isinstance(dispatch, HotRouteDispatch)
    assert {(s.method, s.path_regex.pattern) for s in dispatch.shortcuts} == {
        ("POST", "^/api/v1/panels$"),
        ("GET", "^/api/v1/panels/(?P<panel_id>[^/]+)$"),
    }
    assert len(HOT_ROUTES) == len(dispatch.shortcuts)

    templates = {getattr(route, "path", None) for route in app.routes} | {
        context_path for route in app.router.routes for context_path in _paths_within(route)
    }
    checked = 0
    for template in sorted(t for t in templates if isinstance(t, str)):
        for path in _samples(template):
            for shortcut in dispatch.shortcuts:
                if shortcut.path_regex.match(path):
                    assert _fastapi_choice(app, shortcut.method, path) is shortcut.route, path
                    checked += 1
    assert checked >= 6  # the hot paths themselves, with every sample id


def _paths_within(route: Any) -> list[str]:
    from fastapi.routing import iter_route_contexts

    return [c.path for c in iter_route_contexts([route]) if isinstance(c.path, str)]
