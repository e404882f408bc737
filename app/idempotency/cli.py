"""`python -m app purge-idempotency`: delete idempotency records past their retention."""

from __future__ import annotations

import asyncio

from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction, utcnow
from app.idempotency.service import purge_expired


async def _purge(settings: Settings) -> int:
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await purge_expired(session, now=utcnow())
    finally:
        await engine.dispose()


def purge_idempotency_command(settings: Settings) -> str:
    purged = asyncio.run(_purge(settings))
    return f"purged {purged} expired idempotency record{'' if purged == 1 else 's'}"
