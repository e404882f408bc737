"""The HTTP wiring of Idempotency-Key, on a minimal app built the way a route should use it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated

import orjson
import pytest
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction
from app.core.deps import SettingsDep
from app.core.errors import install_error_handlers
from app.idempotency.deps import (
    IDEMPOTENCY_RESPONSES,
    REPLAYED_HEADER,
    IdempotencyKey,
    request_target,
    stored_response,
)
from app.idempotency.service import StoredResponse, run_idempotent
from tests.idempotency.builders import organization_of


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # The app's AuditedSession also authenticates the caller; this bare app has no callers.
    async with transaction(request.app.state.sessionmaker) as session:
        yield session


AuditedSession = Annotated[AsyncSession, Depends(_session, scope="function")]


def _app(settings: Settings) -> FastAPI:
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.state.settings = settings
    app.state.sessionmaker = make_sessionmaker(engine)
    install_error_handlers(app)

    @app.post("/things", status_code=201, responses=IDEMPOTENCY_RESPONSES)
    async def create_thing(
        request: Request,
        session: AuditedSession,
        settings: SettingsDep,
        principal_id: Annotated[str, Header(alias="X-Test-Principal")],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        async def produce() -> StoredResponse:
            thing_id = uuid.uuid4()
            return StoredResponse(
                status=201,
                headers={"content-type": "application/json", "location": f"/things/{thing_id}"},
                body=orjson.dumps({"id": str(thing_id)}),
            )

        stored, replayed = await run_idempotent(
            session,
            key=idempotency_key,
            principal_id=principal_id,
            organization_id=organization_of(principal_id),
            method=request.method,
            path=request_target(request),
            body=await request.body(),
            retention=timedelta(hours=settings.idempotency_retention_hours),
            wait_seconds=settings.idempotency_wait_seconds,
            produce=produce,
        )
        # The audit append would go here: last, in the same transaction.
        return stored_response(stored, replayed=replayed)

    return app


@pytest.fixture(scope="module")
def http(settings: Settings) -> Iterator[TestClient]:
    with TestClient(_app(settings), raise_server_exceptions=False) as client:
        yield client


def _headers(key: str | None) -> dict[str, str]:
    headers = {"X-Test-Principal": f"key:{uuid.uuid4()}", "content-type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def test_a_replay_is_byte_identical_and_marked(http: TestClient) -> None:
    headers = _headers(str(uuid.uuid4()))

    first = http.post("/things", content=b'{"a": 1}', headers=headers)
    again = http.post("/things", content=b'{"a": 1}', headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers[REPLAYED_HEADER] == "true"
    assert REPLAYED_HEADER not in first.headers


def test_the_query_string_is_part_of_the_request(http: TestClient) -> None:
    headers = _headers(str(uuid.uuid4()))
    http.post("/things", content=b"{}", headers=headers)

    other = http.post("/things?activate=true", content=b"{}", headers=headers)

    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")


def test_refusals_are_problem_documents(http: TestClient) -> None:
    headers = _headers(str(uuid.uuid4()))
    http.post("/things", content=b'{"a": 1}', headers=headers)

    reused = http.post("/things", content=b'{"a": 2}', headers=headers)
    malformed = http.post("/things", content=b"{}", headers=_headers("x" * 256))

    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert malformed.status_code == 400
    assert malformed.json()["type"].endswith("/invalid-idempotency-key")


def test_without_a_key_each_post_creates(http: TestClient) -> None:
    headers = _headers(None)

    first = http.post("/things", content=b"{}", headers=headers)
    second = http.post("/things", content=b"{}", headers=headers)

    assert first.status_code == second.status_code == 201
    assert first.content != second.content


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/panels", b""),
        ("/api/v1/panels", b"a=1&b=%C3%A9"),
        ("/a b/é", b""),
        ("/x?y", b""),  # a decoded %3F
        ("/x#y", b"q=1"),
        ("//double", b""),
    ],
)
def test_the_request_target_read_from_the_scope_is_what_the_url_says(
    path: str, query: bytes
) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"clinic.example")],
        "scheme": "https",
        "server": ("clinic.example", 443),
    }
    request = Request(scope)
    url_query = request.url.query
    expected = f"{request.url.path}?{url_query}" if url_query else request.url.path

    assert request_target(request) == expected
