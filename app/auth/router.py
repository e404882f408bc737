"""API keys, managed by an organization's administrators (scope `keys:admin`)."""

from __future__ import annotations

import uuid

from fastapi import Depends, Request, status

from app.audit.context import audit_target, audited
from app.auth import service
from app.auth.deps import CanAdminKeys, forget_api_key
from app.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ApiKeyPage
from app.core.db import utcnow
from app.core.deps import AuditedSession, ReadSession
from app.kit.listing import Listing, by_creation
from app.kit.routing import api_router

router = api_router("api keys", "/api/v1/api-keys")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    dependencies=[Depends(audited("create", "api_key"))],
)
async def create_api_key(
    request: Request, body: ApiKeyCreate, principal: CanAdminKeys, session: AuditedSession
) -> ApiKeyCreated:
    """Creates a key for your organization with the given role. The response holds the full
    key in `key`: **this is the only time it is shown**, only a hash of it is stored. Send it
    as `X-API-Key: mlk_...` or `Authorization: Bearer mlk_...`. Needs the `admin` role.

    An admin may issue keys of every role, including `clinician` and `integration`, which read
    patient data the admin's own role cannot: such an issuance is never silent. The new key
    names its issuer (`created_by`, shown in every listing), the issuance is an audit event
    (action `create`, resource `api_key`, by you), and every access made with the key is
    audited under the key, so what it read leads back to who issued it."""
    now = utcnow()
    api_key, full_key = await service.create_api_key(
        session,
        organization_id=principal.organization_id,
        created_by=principal.id,
        now=now,
        **body.model_dump(),  # name, display_name, role, expires_at as asked for
    )
    audit_target(request, resource_id=api_key.id)
    return ApiKeyCreated.from_new_key(api_key, full_key, now=now)


@router.get("", summary="List API keys")
async def list_api_keys(
    principal: CanAdminKeys, session: ReadSession, query: Listing
) -> ApiKeyPage:
    """Your organization's keys, newest first, with their status (`active`, `revoked`,
    `expired`) and last use. A key's secret is never returned, only its `prefix`."""
    api_keys = await service.list_api_keys(
        session, organization_id=principal.organization_id, **query.fetch
    )
    now = utcnow()
    return query.page(ApiKeyPage, api_keys, by_creation, lambda k: ApiKeyOut.from_key(k, now=now))


@router.post(
    "/{key_id}/revoke",
    summary="Revoke an API key",
    dependencies=[Depends(audited("revoke", "api_key"))],
)
async def revoke_api_key(
    request: Request, key_id: uuid.UUID, principal: CanAdminKeys, session: AuditedSession
) -> ApiKeyOut:
    """Stops the key from working for good (create a new key to replace it): at once on this
    server, within `MINERAL_API_KEY_CACHE_SECONDS` (default 5 s) on other replicas. Revoking a
    revoked key is harmless and keeps the first revocation time. A key of another organization
    is 404. The revocation is an audit event and the key records who revoked it."""
    now = utcnow()
    audit_target(request, resource_id=key_id)
    api_key = await service.revoke_api_key(
        session,
        organization_id=principal.organization_id,
        key_id=key_id,
        now=now,
        revoked_by=principal.id,
    )
    forget_api_key(api_key.id)
    return ApiKeyOut.from_key(api_key, now=now)
