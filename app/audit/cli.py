"""`python -m app verify-audit [--checkpoint FILE]` and `audit-checkpoint export FILE`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from app.audit.chain import Checkpoint, CheckpointError, checkpoint_key
from app.audit.service import VerifyReport, make_checkpoint, verify
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction


async def _verify(settings: Settings, checkpoint: Checkpoint | None) -> VerifyReport:
    engine = reader = make_engine(settings)
    if engine.dialect.name == "postgresql":
        # One snapshot for the whole walk: the trail is read in batches, and under READ
        # COMMITTED a row of one chain committed between two batches (behind a later seq of
        # another chain) would look like a broken link. SQLite transactions are one snapshot.
        reader = engine.execution_options(isolation_level="REPEATABLE READ")
    try:
        async with transaction(make_sessionmaker(reader, read_only=True)) as session:
            return await verify(session, checkpoint=checkpoint)
    finally:
        await engine.dispose()


def _present(checkpoint: Checkpoint) -> str:
    chains = f", {len(checkpoint.chains)} chain heads" if checkpoint.version >= 2 else ", one head"
    return f"; checkpoint seq {checkpoint.last_seq} ({checkpoint.count} rows{chains}) present"


def verify_audit_command(settings: Settings, *, checkpoint: Path | None = None) -> tuple[int, str]:
    """Exit code and message: 0 when the chain is intact (and, given a checkpoint, every chain
    still holds every row it recorded), 1 naming the first bad seq and its chain, or the chain
    missing rows."""
    head: Checkpoint | None = None
    if checkpoint is not None:
        try:
            document = json.loads(checkpoint.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            return 1, f"audit checkpoint {checkpoint} cannot be read: {exc}"
        try:
            head = Checkpoint.load(document, checkpoint_key(settings.audit_key.get_secret_value()))
        except CheckpointError as exc:
            return 1, f"audit checkpoint {checkpoint} is not trustworthy: {exc}"
    report = asyncio.run(_verify(settings, head))
    if report.ok:
        against = _present(head) if head is not None else ""
        return 0, f"audit trail intact: {report.checked} events verified{against}"
    if report.first_bad_seq is None:
        return 1, f"audit trail BROKEN: {report.reason}"
    return 1, (
        f"audit trail BROKEN at seq {report.first_bad_seq} (chain {report.chain}): "
        f"{report.reason} ({report.checked} events verified before it)"
    )


async def _checkpoint(settings: Settings) -> Checkpoint:
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine, read_only=True)) as session:
            return await make_checkpoint(session, secret=settings.audit_key.get_secret_value())
    finally:
        await engine.dispose()


def export_checkpoint_command(settings: Settings, *, path: Path) -> str:
    """Write the signed heads of every chain to `path` (keep it outside the database: a WORM
    bucket, the SIEM, another host) and return a line describing it."""
    checkpoint = asyncio.run(_checkpoint(settings))
    path.write_text(json.dumps(checkpoint.as_dict(), indent=2) + "\n", "utf-8")
    return (
        f"audit checkpoint written to {path}: seq {checkpoint.last_seq}, "
        f"{checkpoint.count} rows in {len(checkpoint.chains)} chains, "
        f"hash {checkpoint.last_hash[:16]}..."
    )
