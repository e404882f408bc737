"""Operator commands: ``python -m app create-api-key`` and ``revoke-api-key``.

They act on the database directly (no HTTP, no principal): whoever can run them can already
reach the database."""

from __future__ import annotations

import asyncio
from datetime import datetime

from app.auth import keys, service
from app.auth.principal import Role
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction, utcnow
from app.core.errors import UnprocessableError
from app.plan_rules import service as rule_sets
from app.ranges import service as ranges


def create_api_key_command(
    settings: Settings,
    *,
    org: str,
    role: str,
    name: str | None = None,
    expires_at: datetime | None = None,
    display_name: str | None = None,
) -> str:
    """Create a key (and its organization, if new). The text's last line is the key alone, so
    ``python -m app create-api-key ... | tail -n 1`` captures it."""
    name = name or f"{role} key (command line)"
    if expires_at is not None and expires_at.tzinfo is None:
        raise UnprocessableError("The expiry needs a UTC offset, e.g. 2027-01-01T00:00:00Z.")
    try:
        parsed_role = Role(role)
    except ValueError as exc:
        choices = ", ".join(r.value for r in Role)
        raise UnprocessableError(f"Unknown role {role!r}; use one of {choices}.") from exc
    if not org.strip() or not name.strip():
        raise UnprocessableError("The organization and the key name must not be empty.")
    shown = display_name.strip() if display_name and display_name.strip() else None
    return asyncio.run(_create(settings, org.strip(), parsed_role, name.strip(), expires_at, shown))


async def _create(
    settings: Settings,
    org: str,
    role: Role,
    name: str,
    expires_at: datetime | None,
    display_name: str | None = None,
) -> str:
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            organization = await service.get_or_create_organization(session, name=org)
            # A new organization starts with the shipped ranges and plan rules (as the default
            # one does), so its first panels are interpreted and plans can be drafted.
            await ranges.ensure_default(session, organization_id=organization.id)
            await rule_sets.ensure_default(session, organization_id=organization.id)
            api_key, full_key = await service.create_api_key(
                session,
                organization_id=organization.id,
                role=role,
                name=name,
                display_name=display_name,
                expires_at=expires_at,
                created_by="cli",
            )
    finally:
        await engine.dispose()
    expiry = f", expires {api_key.expires_at.isoformat()}" if api_key.expires_at else ""
    return "\n".join(
        [
            f"organization {organization.name!r} ({organization.id})",
            f"API key {api_key.name!r} created: id {api_key.id}, role {api_key.role}, "
            f"prefix {keys.display_prefix(api_key.prefix)}{expiry}",
            "Store the key now; it is not stored and cannot be shown again:",
            full_key,
        ]
    )


def revoke_api_key_command(settings: Settings, *, key: str) -> str:
    """Revoke a key named by its id, its prefix (``mlk_<prefix>`` or bare) or its full text."""
    return asyncio.run(_revoke(settings, key.strip()))


async def _revoke(settings: Settings, reference: str) -> str:
    now = utcnow()
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            api_key = await service.revoke_api_key_by_reference(
                session, reference=reference, now=now
            )
    finally:
        await engine.dispose()
    label = f"API key {api_key.name!r} ({api_key.id}, {keys.display_prefix(api_key.prefix)})"
    assert api_key.revoked_at is not None
    if api_key.revoked_at != now:
        return f"{label} was already revoked at {api_key.revoked_at.isoformat()}"
    return f"{label} revoked"
