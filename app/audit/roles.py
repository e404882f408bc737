"""`python -m app setup-roles --service-role NAME`: PostgreSQL grants that keep the service
from rewriting its own audit trail.

Run it as the schema's owner (``MIGRATION_DATABASE_URL`` / ``DATABASE_OWNER_URL``, else
``DATABASE_URL``) after every ``migrate``. The service role then has ordinary DML on every
table except two: ``audit_event`` (SELECT and INSERT only: no UPDATE, DELETE, TRUNCATE, and, not
owning the table, no ALTER TABLE, so no DISABLE TRIGGER) and ``alembic_version`` (SELECT).
"""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.core.config import Settings, to_async_url
from app.core.errors import UnprocessableError

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
APPEND_ONLY_TABLES = ("audit_event",)
READ_ONLY_TABLES = ("alembic_version",)


def _quoted(name: str) -> str:
    if not _ROLE_NAME.match(name):
        raise UnprocessableError(
            f"Role name {name!r}: use lowercase letters, digits and _ (at most 63)."
        )
    return f'"{name}"'


def _literal(value: str) -> str:
    if "\x00" in value:
        raise UnprocessableError("A password cannot contain NUL.")
    return "'" + value.replace("'", "''") + "'"


async def _grant(connection: AsyncConnection, role: str, password: str | None) -> list[str]:
    quoted = _quoted(role)
    done: list[str] = []
    owner = await connection.scalar(text("SELECT current_user"))
    if owner == role:
        raise UnprocessableError(
            "The service role must not be the owner the grants run as: connect with the "
            "owner's URL (MIGRATION_DATABASE_URL) and name another role."
        )
    exists = await connection.scalar(
        text("SELECT rolsuper FROM pg_roles WHERE rolname = :name"), {"name": role}
    )
    if exists is None:
        await connection.execute(
            text(f"CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION")
        )
        done.append(f"role {role} created")
    elif exists:
        raise UnprocessableError(f"Role {role} is a superuser: it could rewrite the audit trail.")
    if password is not None:
        await connection.execute(text(f"ALTER ROLE {quoted} PASSWORD {_literal(password)}"))
        done.append("password set")
    owned = (
        await connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = :r"),
            {"r": role},
        )
    ).scalars()
    if owned_tables := list(owned):
        raise UnprocessableError(
            f"Role {role} owns {', '.join(owned_tables)}: an owner can disable the audit "
            "triggers. Reassign them to the migration role first."
        )
    database = await connection.scalar(text("SELECT current_database()"))
    for sql in (
        f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO {quoted}',
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"REVOKE CREATE ON SCHEMA public FROM {quoted}",
        # Start from nothing, then ordinary DML everywhere ...
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        # ... except the audit trail (append and read only) and the migration bookkeeping.
        *(f"REVOKE UPDATE, DELETE ON {table} FROM {quoted}" for table in APPEND_ONLY_TABLES),
        *(f"REVOKE INSERT, UPDATE, DELETE ON {table} FROM {quoted}" for table in READ_ONLY_TABLES),
        f"GRANT EXECUTE ON FUNCTION audit_append_rows(jsonb, text, smallint) TO {quoted}",
        # Tables a later migration creates get the same DML (re-run this after `migrate` all
        # the same: a new append-only table needs its own REVOKE).
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE "
        f"ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {quoted}",
    ):
        await connection.execute(text(sql))
    done.append(
        f"{role}: SELECT/INSERT/UPDATE/DELETE on the service's tables; SELECT and INSERT only "
        f"on {', '.join(APPEND_ONLY_TABLES)}; SELECT on {', '.join(READ_ONLY_TABLES)}"
    )
    return done


async def setup_roles(owner_url: str, *, service_role: str, password: str | None = None) -> str:
    if not owner_url.startswith(("postgresql", "postgres://")):
        return (
            "nothing to do: SQLite has no roles (whoever can write the file can change it; "
            "the keyed chain and checkpoints still detect it)"
        )
    engine = create_async_engine(to_async_url(owner_url))
    try:
        async with engine.begin() as connection:
            lines = await _grant(connection, service_role, password)
    finally:
        await engine.dispose()
    return "\n".join(lines)


def setup_roles_command(
    settings: Settings, *, service_role: str, password: str | None = None
) -> str:
    return asyncio.run(
        setup_roles(settings.owner_database_url, service_role=service_role, password=password)
    )
