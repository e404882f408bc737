"""app.kit.routing.solve_repeated_dependencies_once: a dependency used under several others is
walked once per request, and everything still gets its value, once, with the same OpenAPI."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response, Security
from fastapi.security import APIKeyHeader
from fastapi.testclient import TestClient

from app.kit.routing import solve_repeated_dependencies_once

_key = APIKeyHeader(name="X-Key", auto_error=False)


async def caller(request: Request, key: Annotated[str | None, Security(_key)]) -> str:
    request.state.calls.append("caller")
    return key or "nobody"


async def session(who: Annotated[str, Depends(caller)]) -> str:
    return f"session of {who}"


async def allowed(who: Annotated[str, Depends(caller)]) -> str:
    return f"{who} allowed"


async def tagged(
    request: Request, tag: Annotated[str, Header()], who: Annotated[str, Depends(caller)]
) -> str:
    request.state.calls.append("tagged")
    return f"{tag} by {who}"


async def twice_tagged(tag: Annotated[str, Depends(tagged)]) -> str:
    return tag


router = APIRouter()


@router.get("/things")
async def things(
    request: Request,
    opened: Annotated[str, Depends(session)],
    checked: Annotated[str, Depends(allowed)],
    who: Annotated[str, Depends(caller)],
) -> dict[str, object]:
    return {"opened": opened, "checked": checked, "who": who, "calls": request.state.calls}


@router.get("/tagged")
async def tagged_thing(
    request: Request,
    first: Annotated[str, Depends(tagged)],
    second: Annotated[str, Depends(twice_tagged)],
) -> dict[str, object]:
    return {"first": first, "second": second, "calls": request.state.calls}


def _app() -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def count_calls(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.calls = []
        return await call_next(request)

    app.include_router(router)
    return app


def test_a_repeated_dependency_loses_its_sub_tree_and_still_gets_its_value_once() -> None:
    app = _app()

    # /things: `caller` under `allowed` and under the route (`session` keeps the first one);
    # /tagged: `caller` under the second `tagged`.
    assert solve_repeated_dependencies_once(app.routes) == 3
    response = TestClient(app).get("/things", headers={"X-Key": "k1"})

    assert response.json() == {
        "opened": "session of k1",
        "checked": "k1 allowed",
        "who": "k1",
        "calls": ["caller"],
    }


def test_a_sub_tree_that_reads_the_request_is_kept_and_still_validated() -> None:
    app = _app()
    solve_repeated_dependencies_once(app.routes)  # the second `tagged` reads a header: kept
    client = TestClient(app)

    missing = client.get("/tagged")
    found = client.get("/tagged", headers={"tag": "t", "X-Key": "k"})

    assert missing.status_code == 422
    assert found.json() == {"first": "t by k", "second": "t by k", "calls": ["caller", "tagged"]}


def test_the_openapi_document_is_unchanged() -> None:
    before = json.dumps(_app().openapi(), sort_keys=True)
    app = _app()
    solve_repeated_dependencies_once(app.routes)

    assert json.dumps(app.openapi(), sort_keys=True) == before
    assert "X-Key" in before
