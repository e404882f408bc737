"""The per-process API-key cache under concurrency: when a busy key is not (or no longer)
cached, the requests in flight share ONE verification (one read of the key, one pooled
connection) instead of each opening its own; a refused key is refused for every one of them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import event

from app.auth import deps, service
from app.auth.deps import CanReadPanels
from app.auth.principal import Role
from app.core.config import Settings
from app.core.db import transaction
from app.main import create_app

CONCURRENT = 16


async def _burst(settings: Settings, *, revoke: bool) -> tuple[list[int], int]:
    app = create_app(settings.model_copy(update={"api_key_cache_seconds": 30}))

    @app.get("/test/cached-key")
    async def read(principal: CanReadPanels) -> dict[str, Any]:
        return {"principal": principal.id}

    async with app.router.lifespan_context(app):
        async with transaction(app.state.sessionmaker) as session:
            organization = await service.get_or_create_organization(
                session, name=f"cache-{uuid.uuid4().hex[:10]}"
            )
            api_key, token = await service.create_api_key(
                session, organization_id=organization.id, role=Role.INTEGRATION, name="cache"
            )
        if revoke:
            async with transaction(app.state.sessionmaker) as session:
                await service.revoke_api_key(
                    session, organization_id=organization.id, key_id=api_key.id
                )
        reads: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "FROM api_key" in statement:
                reads.append(statement)

        engine = app.state.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", headers={"X-API-Key": token}
            ) as client:
                responses = await asyncio.gather(
                    *(client.get("/test/cached-key") for _ in range(CONCURRENT))
                )
        finally:
            event.remove(engine, "before_cursor_execute", seen)
            deps.forget_api_key(api_key.id)
    return [response.status_code for response in responses], len(reads)


def test_concurrent_requests_with_an_uncached_key_read_it_once(settings: Settings) -> None:
    statuses, reads = asyncio.run(_burst(settings, revoke=False))

    assert statuses == [200] * CONCURRENT
    assert reads == 1


def test_concurrent_requests_with_a_revoked_key_are_all_refused(settings: Settings) -> None:
    statuses, reads = asyncio.run(_burst(settings, revoke=True))

    assert statuses == [401] * CONCURRENT
    # Nothing refused is shared: each request checked the key itself.
    assert reads == CONCURRENT
