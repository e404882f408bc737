"""`python -m app verify-audit`: check the audit hash chain end to end."""

from __future__ import annotations

import asyncio

from app.audit.service import VerifyReport, verify
from app.config import Settings
from app.db import make_engine, make_sessionmaker, transaction


async def _verify(settings: Settings) -> VerifyReport:
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine, read_only=True)) as session:
            return await verify(session)
    finally:
        await engine.dispose()


def verify_audit_command(settings: Settings) -> tuple[int, str]:
    """Exit code and message: 0 when the chain is intact, 1 naming the first bad seq."""
    report = asyncio.run(_verify(settings))
    if report.ok:
        return 0, f"audit trail intact: {report.checked} events verified"
    return 1, (
        f"audit trail BROKEN at seq {report.first_bad_seq}: {report.reason} "
        f"({report.checked} events verified before it)"
    )
