"""Organizations and API keys: create, list, revoke, authenticate. Services flush, never
commit: the caller's transaction decides."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import keys, repository
from app.auth.oidc import OidcIdentity
from app.auth.principal import (
    Principal,
    Rejection,
    Role,
    api_key_principal_id,
    oidc_principal_id,
    scopes_for,
)
from app.core.db import new_id, utcnow
from app.core.errors import NotFoundError, UnprocessableError
from app.models.api_key import ApiKey
from app.models.organization import Organization

log = logging.getLogger("app.auth")

ApiKeyStatus = Literal["active", "revoked", "expired"]


async def get_or_create_organization(
    session: AsyncSession, *, name: str, now: datetime | None = None
) -> Organization:
    await repository.insert_organization_if_new(session, name=name, now=now or utcnow())
    organization = await repository.get_organization_by_name(session, name=name)
    assert organization is not None  # inserted above, or by whoever won the race
    return organization


async def create_api_key(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    role: Role,
    name: str,
    expires_at: datetime | None = None,
    created_by: str | None = None,
    now: datetime | None = None,
    display_name: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its full text. The text exists only in this return value: show it to the
    caller once; only the hash of its secret is stored."""
    now = now or utcnow()
    if expires_at is not None and expires_at <= now:
        raise UnprocessableError("`expires_at` must be in the future.")
    new_key = keys.generate_key()
    api_key = ApiKey(
        id=new_id(),
        organization_id=organization_id,
        name=name,
        display_name=display_name or name,
        role=Role(role).value,
        prefix=new_key.prefix,
        secret_hash=new_key.secret_hash,
        created_at=now,
        created_by=created_by,
        expires_at=expires_at,
    )
    await repository.add_api_key(session, api_key)
    return api_key, new_key.full_key


async def revoke_api_key(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    key_id: uuid.UUID,
    now: datetime | None = None,
    revoked_by: str | None = None,
) -> ApiKey:
    """Revoke a key of the organization. Revoking a revoked key changes nothing (the first
    revocation time and revoker stay); another organization's key is not found."""
    api_key = await repository.get_api_key(session, organization_id=organization_id, key_id=key_id)
    if api_key is None:
        raise NotFoundError("No such API key.")
    return await _revoke(session, api_key, now or utcnow(), revoked_by)


async def revoke_api_key_by_reference(
    session: AsyncSession, *, reference: str, now: datetime | None = None
) -> ApiKey:
    """Revoke any organization's key named by its id, its prefix (``mlk_<prefix>`` or bare) or
    its full text: for the operator's command line."""
    api_key: ApiKey | None
    try:
        key_id = uuid.UUID(reference)
    except ValueError:
        parsed = keys.parse_key(reference)
        prefix = parsed[0] if parsed else reference.removeprefix(keys.KEY_MARKER + "_")
        api_key = await repository.get_api_key_by_prefix(session, prefix=prefix)
    else:
        api_key = await repository.get_api_key_by_id(session, key_id=key_id)
    if api_key is None:
        raise NotFoundError("No API key has that id or prefix.")
    return await _revoke(session, api_key, now or utcnow(), "cli")


async def _revoke(
    session: AsyncSession, api_key: ApiKey, now: datetime, revoked_by: str | None
) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = now
        api_key.revoked_by = revoked_by
        await session.flush()
    return api_key


# Listing keys has no rule beyond the query (see patients.service.search).
list_api_keys = repository.list_api_keys


def api_key_status(api_key: ApiKey, *, now: datetime) -> ApiKeyStatus:
    if api_key.revoked_at is not None:
        return "revoked"
    if api_key.expires_at is not None and api_key.expires_at <= now:
        return "expired"
    return "active"


def principal_for_key(api_key: ApiKey) -> Principal:
    role = Role(api_key.role)
    return Principal(
        id=api_key_principal_id(api_key.id),
        organization_id=api_key.organization_id,
        role=role,
        kind="api_key",
        scopes=scopes_for(role),
        display=f"{api_key.name} ({keys.display_prefix(api_key.prefix)})",
        display_name=api_key.display_name or api_key.name,
    )


async def verify_api_key(session: AsyncSession, *, token: str, now: datetime) -> ApiKey | Rejection:
    """The key a token names, if its secret matches and it is neither revoked nor expired.
    One indexed read; writes nothing."""
    parsed = keys.parse_key(token)
    if parsed is None:
        return Rejection("malformed API key")
    prefix, secret = parsed
    api_key = await repository.get_api_key_by_prefix(session, prefix=prefix)
    # An unknown prefix answers faster than a wrong secret; that reveals only whether a prefix
    # exists, and prefixes are public (they appear in listings and logs).
    if api_key is None:
        return Rejection("unknown API key prefix")
    if not keys.secret_matches(secret, api_key.secret_hash):
        return Rejection(f"wrong secret for API key {api_key.id}")
    status = api_key_status(api_key, now=now)
    if status != "active":
        return Rejection(f"API key {api_key.id} is {status}")
    return api_key


def needs_touch(api_key: ApiKey, *, now: datetime, touch_interval: float) -> bool:
    return api_key.last_used_at is None or api_key.last_used_at < now - timedelta(
        seconds=touch_interval
    )


async def touch_api_key(
    session: AsyncSession, *, key_id: uuid.UUID, now: datetime, touch_interval: float
) -> bool:
    """Record the key's use unless it was recorded less than `touch_interval` seconds ago."""
    return await repository.touch_api_key(
        session, key_id=key_id, now=now, older_than=now - timedelta(seconds=touch_interval)
    )


async def authenticate_api_key(
    session: AsyncSession, *, token: str, now: datetime, touch_interval: float
) -> Principal | None:
    """Verify a key and record its use, in the given (writable) session. The request path
    (`app.auth.deps`) runs the same two steps with a read session and, only when the use is
    due to be recorded, a separate short write."""
    verified = await verify_api_key(session, token=token, now=now)
    if isinstance(verified, Rejection):
        log.info("API key refused: %s", verified.reason)
        return None
    if needs_touch(verified, now=now, touch_interval=touch_interval):
        await touch_api_key(session, key_id=verified.id, now=now, touch_interval=touch_interval)
    return principal_for_key(verified)


async def principal_for_oidc(
    session: AsyncSession, *, identity: OidcIdentity
) -> Principal | Rejection:
    """The principal for a validated token. The organization claim names an organization that
    must already exist: a token never creates one."""
    organization = await repository.get_organization_by_name(
        session, name=identity.organization_name
    )
    if organization is None:
        return Rejection("the token's organization does not exist")
    return Principal(
        id=oidc_principal_id(identity.issuer, identity.subject),
        organization_id=organization.id,
        role=identity.role,
        kind="oidc",
        scopes=scopes_for(identity.role),
        display=identity.display,
        display_name=identity.display_name,
    )
