"""Operator commands: API keys, the audit trail, database roles and the purges."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from app.cli.options import options
from app.core.config import Settings


def _create_api_key(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth.cli import create_api_key_command

    given = options(args, "org", "role", "name", "display_name", "expires_at")
    print(create_api_key_command(settings, **given))
    return 0


def _revoke_api_key(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth.cli import revoke_api_key_command

    print(revoke_api_key_command(settings, key=args.key))
    return 0


def _verify_audit(args: argparse.Namespace, settings: Settings) -> int:
    from app.audit.cli import verify_audit_command

    code, message = verify_audit_command(settings, checkpoint=args.checkpoint)
    print(message)
    return code


def _audit_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from app.audit.cli import export_checkpoint_command

    print(export_checkpoint_command(settings, path=args.file))
    return 0


def _setup_roles(args: argparse.Namespace, settings: Settings) -> int:
    from app.audit.roles import setup_roles_command

    password = os.environ.get(args.password_env) if args.password_env else None
    if args.password_env and password is None:
        print(f"error: ${args.password_env} is not set", file=sys.stderr)
        return 2
    print(setup_roles_command(settings, service_role=args.service_role, password=password))
    return 0


def _purge_idempotency(args: argparse.Namespace, settings: Settings) -> int:
    from app.idempotency.cli import purge_idempotency_command

    print(purge_idempotency_command(settings))
    return 0


def _purge_refused(args: argparse.Namespace, settings: Settings) -> int:
    from app.refused_inputs.cli import purge_refused_command

    print(purge_refused_command(settings))
    return 0


def _register_keys(commands: Any) -> None:
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
    create_key.set_defaults(handler=_create_api_key)
    revoke_key = commands.add_parser("revoke-api-key", help="revoke an API key")
    revoke_key.add_argument("key", help="key id, mlk_<prefix>, or the full key")
    revoke_key.set_defaults(handler=_revoke_api_key)


def _register_audit(commands: Any) -> None:
    verify_cmd = commands.add_parser("verify-audit", help="check the audit trail's keyed chain")
    verify_cmd.add_argument(
        "--checkpoint",
        type=Path,
        help="also check that every chain still holds every row this signed checkpoint recorded",
    )
    verify_cmd.set_defaults(handler=_verify_audit)
    checkpoint_cmd = commands.add_parser(
        "audit-checkpoint", help="export a signed checkpoint of every audit chain's head"
    )
    checkpoint_cmd.add_argument("action", choices=["export"])
    checkpoint_cmd.add_argument("file", type=Path)
    checkpoint_cmd.set_defaults(handler=_audit_checkpoint)
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
    roles_cmd.set_defaults(handler=_setup_roles)


def register(commands: Any) -> None:
    _register_keys(commands)
    _register_audit(commands)
    commands.add_parser(
        "purge-idempotency", help="delete expired Idempotency-Key records"
    ).set_defaults(handler=_purge_idempotency)
    commands.add_parser(
        "purge-refused", help="delete refused inputs past MINERAL_REFUSED_INPUT_RETENTION_DAYS"
    ).set_defaults(handler=_purge_refused)
