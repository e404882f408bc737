"""``migrate``, ``load-ranges FILE`` and ``load-rules FILE``: the schema and the versioned sets."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings

T = TypeVar("T")


def _alembic_config(settings: Settings) -> object:
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent.parent
    ini = root / "alembic.ini"
    if not ini.exists():
        ini = Path.cwd() / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "migrations"))
    # Migrations run as the schema's owner; they re-seal the audit chain with the service's key.
    config.attributes["database_url"] = settings.owner_database_url
    config.attributes["audit_key"] = settings.audit_key.get_secret_value()
    return config


async def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on an engine of its own (a CLI command's lifetime)."""
    from app.core.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


def migrate(settings: Settings) -> None:
    """Apply every migration, then load the default reference ranges if none exist yet."""
    from alembic import command

    command.upgrade(_alembic_config(settings), "head")  # type: ignore[arg-type]
    loaded = asyncio.run(in_transaction(settings, _ensure_defaults))
    print("database migrated" + "".join(f"; default {what} loaded" for what in loaded))


async def _ensure_defaults(session: AsyncSession) -> list[str]:
    """The shipped reference ranges and plan rule set, for an organization that has none."""
    from app.models.organization import DEFAULT_ORGANIZATION_ID
    from app.plan_rules import service as rule_sets
    from app.ranges import service as ranges

    loaded = []
    org = DEFAULT_ORGANIZATION_ID
    if await ranges.ensure_default(session, organization_id=org):
        loaded.append("reference ranges")
    if await rule_sets.ensure_default(session, organization_id=org):
        loaded.append("plan rule set")
    return loaded


def _range_document(path: Path, name: str | None) -> Any:
    from app.domain.range_sets import parse_range_set_csv, parse_range_set_yaml

    text = path.read_text("utf-8")
    if path.suffix.lower() == ".csv":
        return parse_range_set_csv(
            text, name=name or path.stem, source=f"imported from {path.name}"
        )
    return parse_range_set_yaml(text)


def _import_set(settings: Settings, service: Any, document: Any, *, activate: bool) -> str:
    """Store a range set or a rule set (both services share ``import_document``)."""
    from app.models.organization import DEFAULT_ORGANIZATION_ID

    async def work(session: AsyncSession) -> str:
        stored = await service.import_document(
            session, organization_id=DEFAULT_ORGANIZATION_ID, document=document, activate=activate
        )
        state = "active" if activate else "draft"
        return f"{stored.name} v{stored.version} ({stored.id}) stored as {state}"

    return asyncio.run(in_transaction(settings, work))


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings)
    return 0


def _load_ranges(args: argparse.Namespace, settings: Settings) -> int:
    from app.ranges import service

    document = _range_document(args.file, args.name)
    print(_import_set(settings, service, document, activate=not args.no_activate))
    return 0


def _load_rules(args: argparse.Namespace, settings: Settings) -> int:
    from app.domain.plans.rules import parse_rule_set_yaml
    from app.plan_rules import service

    document = parse_rule_set_yaml(args.file.read_text("utf-8"))
    print(_import_set(settings, service, document, activate=not args.no_activate))
    return 0


def register(commands: Any) -> None:
    commands.add_parser(
        "migrate", help="apply migrations and load the default ranges and plan rule set"
    ).set_defaults(handler=_migrate)

    load = commands.add_parser("load-ranges", help="import a reference-range set (YAML or CSV)")
    load.add_argument("file", type=Path)
    load.add_argument("--name", help="set name for a CSV file (default: the file name)")
    load.add_argument(
        "--no-activate", action="store_true", help="store the set without activating it"
    )
    load.set_defaults(handler=_load_ranges)

    load_rules = commands.add_parser("load-rules", help="import a plan rule set (YAML)")
    load_rules.add_argument("file", type=Path)
    load_rules.add_argument(
        "--no-activate", action="store_true", help="store the set without activating it"
    )
    load_rules.set_defaults(handler=_load_rules)
