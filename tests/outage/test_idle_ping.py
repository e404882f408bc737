"""The pool pings only connections that sat idle: a pooled connection the database dropped
while the service was quiet is replaced before a request uses it, and one in use moments ago
is not pinged (no extra round trip per request under load)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import Settings
from app.core.db import make_engine

pytestmark = pytest.mark.postgres


def _settings(settings: Settings, idle: float) -> Settings:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the idle ping is for PostgreSQL's pool")
    return settings.model_copy(update={"database_ping_idle_seconds": idle})


async def _pid_after_backend_killed(settings: Settings) -> tuple[int, int]:
    engine = make_engine(settings)
    killer = create_async_engine(settings.async_database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            first = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        async with killer.connect() as conn:
            await conn.execute(text(f"SELECT pg_terminate_backend({first})"))
        await asyncio.sleep(0.3)  # idle longer than the setting below
        async with engine.connect() as conn:
            second = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
    finally:
        await engine.dispose()
        await killer.dispose()
    return first, second


def test_a_connection_dropped_while_idle_is_replaced_before_use(settings: Settings) -> None:
    first, second = asyncio.run(_pid_after_backend_killed(_settings(settings, 0.1)))
    assert second != first


async def _pings_under_load(settings: Settings) -> int:
    engine = make_engine(settings)
    pings = 0
    dialect: Any = engine.sync_engine.dialect
    original = dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        nonlocal pings
        pings += 1
        return bool(original(dbapi_connection))

    dialect.do_ping = counting
    try:
        for _ in range(20):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    return pings


def test_a_connection_in_use_moments_ago_is_not_pinged(settings: Settings) -> None:
    assert asyncio.run(_pings_under_load(_settings(settings, 60))) == 0
