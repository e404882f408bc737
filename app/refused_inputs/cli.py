"""`python -m app purge-refused`: delete refused inputs past MINERAL_REFUSED_INPUT_RETENTION_DAYS
(they are PHI: raw payloads). HTTP refusals also purge their organization's old rows as they are
written; this command covers every organization, MLLP ones included (run it daily from cron)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction, utcnow
from app.refused_inputs import repository


async def _purge(settings: Settings) -> int:
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            before = utcnow() - timedelta(days=settings.refused_input_retention_days)
            return await repository.purge(session, before=before)
    finally:
        await engine.dispose()


def purge_refused_command(settings: Settings) -> str:
    purged = asyncio.run(_purge(settings))
    days = settings.refused_input_retention_days
    return f"purged {purged} refused input{'' if purged == 1 else 's'} older than {days} days"
