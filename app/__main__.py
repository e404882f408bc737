"""Command line: ``python -m app serve | migrate | load-ranges FILE | demo-data``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from app.config import Settings, get_settings


def _alembic_config(settings: Settings) -> object:
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    ini = root / "alembic.ini"
    if not ini.exists():
        ini = Path.cwd() / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent / "migrations"))
    # Migrations run as the schema's owner; they re-seal the audit chain with the service's key.
    config.attributes["database_url"] = settings.owner_database_url
    config.attributes["audit_key"] = settings.audit_key.get_secret_value()
    return config


def migrate(settings: Settings) -> None:
    """Apply every migration, then load the default reference ranges if none exist yet."""
    from alembic import command

    command.upgrade(_alembic_config(settings), "head")  # type: ignore[arg-type]
    loaded = asyncio.run(_ensure_defaults(settings))
    print("database migrated" + "".join(f"; default {what} loaded" for what in loaded))


async def _ensure_defaults(settings: Settings) -> list[str]:
    """The shipped reference ranges and plan rule set, for an organization that has none."""
    from app.db import make_engine, make_sessionmaker, transaction
    from app.models.organization import DEFAULT_ORGANIZATION_ID
    from app.plan_rules import service as rule_sets
    from app.ranges import service as ranges

    engine = make_engine(settings)
    loaded = []
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            org = DEFAULT_ORGANIZATION_ID
            if await ranges.ensure_default(session, organization_id=org):
                loaded.append("reference ranges")
            if await rule_sets.ensure_default(session, organization_id=org):
                loaded.append("plan rule set")
    finally:
        await engine.dispose()
    return loaded


async def _load_ranges(settings: Settings, path: Path, *, activate: bool, name: str | None) -> str:
    from app.db import make_engine, make_sessionmaker, transaction
    from app.domain.range_sets import parse_range_set_csv, parse_range_set_yaml
    from app.models.organization import DEFAULT_ORGANIZATION_ID
    from app.ranges import service

    text = path.read_text("utf-8")
    if path.suffix.lower() == ".csv":
        document = parse_range_set_csv(
            text, name=name or path.stem, source=f"imported from {path.name}"
        )
    else:
        document = parse_range_set_yaml(text)
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            range_set = await service.import_document(
                session,
                organization_id=DEFAULT_ORGANIZATION_ID,
                document=document,
                activate=activate,
            )
            state = "active" if activate else "draft"
            return f"{range_set.name} v{range_set.version} ({range_set.id}) stored as {state}"
    finally:
        await engine.dispose()


async def _load_rules(settings: Settings, path: Path, *, activate: bool) -> str:
    from app.db import make_engine, make_sessionmaker, transaction
    from app.domain.plans.rules import parse_rule_set_yaml
    from app.models.organization import DEFAULT_ORGANIZATION_ID
    from app.plan_rules import service

    document = parse_rule_set_yaml(path.read_text("utf-8"))
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            rule_set = await service.import_document(
                session,
                organization_id=DEFAULT_ORGANIZATION_ID,
                document=document,
                activate=activate,
            )
            state = "active" if activate else "draft"
            return f"{rule_set.name} v{rule_set.version} ({rule_set.id}) stored as {state}"
    finally:
        await engine.dispose()


def serve(settings: Settings, *, host: str, port: int, workers: int, migrate_first: bool) -> None:
    import uvicorn

    from app.ops.metrics import prepare_multiprocess_dir

    if migrate_first:
        migrate(settings)
    prepare_multiprocess_dir()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        server_header=False,
        # uvicorn's access log prints query strings, which can hold identifiers (an MRN in
        # ?identifier=...): the app logs its own access lines, without them.
        access_log=False,
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then stop.
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="apply migrations and run the HTTP service")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8000)
    serve_cmd.add_argument("--workers", type=int, default=1)
    serve_cmd.add_argument(
        "--no-migrate", action="store_true", help="do not apply migrations before serving"
    )

    commands.add_parser(
        "migrate", help="apply migrations and load the default ranges and plan rule set"
    )

    load = commands.add_parser("load-ranges", help="import a reference-range set (YAML or CSV)")
    load.add_argument("file", type=Path)
    load.add_argument("--name", help="set name for a CSV file (default: the file name)")
    load.add_argument(
        "--no-activate", action="store_true", help="store the set without activating it"
    )

    load_rules = commands.add_parser("load-rules", help="import a plan rule set (YAML)")
    load_rules.add_argument("file", type=Path)
    load_rules.add_argument(
        "--no-activate", action="store_true", help="store the set without activating it"
    )

    demo = commands.add_parser("demo-data", help="add demo patients and panels")
    demo.add_argument(
        "--org", help="organization name (created if new; default: the default organization)"
    )

    create_key = commands.add_parser(
        "create-api-key", help="create an API key (printed once, as the last line)"
    )
    create_key.add_argument("--org", required=True, help="organization name (created if new)")
    create_key.add_argument("--role", required=True, choices=["integration", "clinician", "admin"])
    create_key.add_argument("--name", help="a label for the key")
    create_key.add_argument(
        "--display-name", help="the name plans show as author or approver (default: --name)"
    )
    create_key.add_argument(
        "--expires-at", type=datetime.fromisoformat, help="ISO 8601 time with a UTC offset"
    )
    revoke_key = commands.add_parser("revoke-api-key", help="revoke an API key")
    revoke_key.add_argument("key", help="key id, mlk_<prefix>, or the full key")
    verify_cmd = commands.add_parser("verify-audit", help="check the audit trail's keyed chain")
    verify_cmd.add_argument(
        "--checkpoint",
        type=Path,
        help="also check that every row of this signed checkpoint is still there",
    )
    checkpoint_cmd = commands.add_parser(
        "audit-checkpoint", help="export a signed checkpoint of the audit trail's head"
    )
    checkpoint_cmd.add_argument("action", choices=["export"])
    checkpoint_cmd.add_argument("file", type=Path)
    roles_cmd = commands.add_parser(
        "setup-roles",
        help="PostgreSQL: grant the service role DML, but only INSERT/SELECT on the audit trail "
        "(run as the owner: MIGRATION_DATABASE_URL)",
    )
    roles_cmd.add_argument("--service-role", required=True, help="role DATABASE_URL logs in as")
    roles_cmd.add_argument(
        "--password-env",
        metavar="VAR",
        help="set the role's password from this environment variable",
    )
    commands.add_parser("purge-idempotency", help="delete expired Idempotency-Key records")
    commands.add_parser(
        "purge-refused", help="delete refused inputs past MINERAL_REFUSED_INPUT_RETENTION_DAYS"
    )

    mllp = commands.add_parser("mllp", help="run the HL7 v2 MLLP listener")
    mllp.add_argument("--host", default="127.0.0.1")
    mllp.add_argument("--port", type=int, default=2575)
    mllp.add_argument(
        "--api-key",
        default=os.environ.get("MINERAL_MLLP_API_KEY"),
        help="integration API key whose organization receives the results "
        "(default: $MINERAL_MLLP_API_KEY; prefer it, command lines are visible to others)",
    )
    mllp.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="also serve Prometheus metrics of the listener on this port (default: off)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    from app.domain.errors import DomainError
    from app.domain.plans.rules import RuleSetFormatError
    from app.domain.range_errors import RangeSetFormatError
    from app.errors import AppError

    try:
        if args.command == "serve":
            serve(
                settings,
                host=args.host,
                port=args.port,
                workers=args.workers,
                migrate_first=not args.no_migrate,
            )
        elif args.command == "migrate":
            migrate(settings)
        elif args.command == "load-ranges":
            print(
                asyncio.run(
                    _load_ranges(settings, args.file, activate=not args.no_activate, name=args.name)
                )
            )
        elif args.command == "load-rules":
            print(asyncio.run(_load_rules(settings, args.file, activate=not args.no_activate)))
        elif args.command == "demo-data":
            from app.demo import load_demo_data

            print(asyncio.run(load_demo_data(settings, org_name=args.org)))
        elif args.command == "create-api-key":
            from app.auth.cli import create_api_key_command

            print(
                create_api_key_command(
                    settings,
                    org=args.org,
                    role=args.role,
                    name=args.name,
                    display_name=args.display_name,
                    expires_at=args.expires_at,
                )
            )
        elif args.command == "revoke-api-key":
            from app.auth.cli import revoke_api_key_command

            print(revoke_api_key_command(settings, key=args.key))
        elif args.command == "verify-audit":
            from app.audit.cli import verify_audit_command

            code, message = verify_audit_command(settings, checkpoint=args.checkpoint)
            print(message)
            return code
        elif args.command == "audit-checkpoint":
            from app.audit.cli import export_checkpoint_command

            print(export_checkpoint_command(settings, path=args.file))
        elif args.command == "setup-roles":
            from app.audit.roles import setup_roles_command

            password = os.environ.get(args.password_env) if args.password_env else None
            if args.password_env and password is None:
                print(f"error: ${args.password_env} is not set", file=sys.stderr)
                return 2
            print(setup_roles_command(settings, service_role=args.service_role, password=password))
        elif args.command == "mllp":
            from app.interop.hl7.mllp import run_mllp

            if not args.api_key:
                print("error: give --api-key or set MINERAL_MLLP_API_KEY", file=sys.stderr)
                return 2
            run_mllp(
                settings,
                host=args.host,
                port=args.port,
                api_key=args.api_key,
                metrics_port=args.metrics_port,
            )
        elif args.command == "purge-refused":
            from app.refused_inputs.cli import purge_refused_command

            print(purge_refused_command(settings))
        elif args.command == "purge-idempotency":
            from app.idempotency.cli import purge_idempotency_command

            print(purge_idempotency_command(settings))
    except (AppError, DomainError, RangeSetFormatError, RuleSetFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        errors = getattr(exc, "extensions", {}).get("errors") or getattr(exc, "errors", None)
        for item in errors or []:
            print(f"  {item}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
