"""``import FILE [--org NAME]``: an NDJSON file of panels through the panel-batch service."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.core.config import Settings


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    # Read in blocks: the file is never held whole, whatever its size.
    with path.open("rb") as handle:
        while block := handle.read(1 << 16):
            yield block


async def import_file(settings: Settings, path: Path, *, org_name: str | None) -> str:
    from rich.progress import Progress

    from app.audit.service import AuditEntry
    from app.auth.service import get_or_create_organization
    from app.batches import service
    from app.core.db import make_engine, make_sessionmaker, transaction
    from app.models.organization import DEFAULT_ORGANIZATION_ID

    engine = make_engine(settings)
    sessionmaker = make_sessionmaker(engine)
    counts = {"stored": 0, "unchanged": 0, "refused": 0}
    try:
        org = DEFAULT_ORGANIZATION_ID
        if org_name is not None:
            async with transaction(sessionmaker) as session:
                org = (await get_or_create_organization(session, name=org_name)).id
        base = AuditEntry(
            organization_id=org,
            principal_id="cli:import",
            principal_kind="cli",
            action="create",
            resource_type="panel",
            outcome="success",
            status_code=200,
        )
        batch = await service.start(sessionmaker, base)
        outcomes = service.run_ndjson(
            sessionmaker, batch_id=batch.id, base=base, chunks=_file_chunks(path), settings=settings
        )
        with Progress(transient=True) as progress:  # rich writes to stderr here
            task = progress.add_task(f"importing {path.name}", total=path.stat().st_size)
            async for outcome in outcomes:
                counts[outcome.outcome] += 1
                progress.update(task, description=f"line {outcome.line}")
            progress.update(task, completed=path.stat().st_size)
    finally:
        await engine.dispose()
    return (
        f"batch {batch.id}: {counts['stored']} stored, {counts['unchanged']} unchanged, "
        f"{counts['refused']} refused"
    )


def _import(args: argparse.Namespace, settings: Settings) -> int:
    print(asyncio.run(import_file(settings, args.file, org_name=args.org)))
    return 0


def register(commands: Any) -> None:
    cmd = commands.add_parser("import", help="import an NDJSON file of panels (one per line)")
    cmd.add_argument("file", type=Path)
    cmd.add_argument("--org", help="organization name (created if new; default: the default one)")
    cmd.set_defaults(handler=_import)
