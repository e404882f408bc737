"""Request-scoped dependencies shared by every router, as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.context import append_success
from app.auth.deps import CurrentOrganizationId, CurrentPrincipal
from app.core.config import Settings
from app.core.db import transaction


# Sessions depend on the caller being authenticated: the credential lookup (its own short
# transaction) runs BEFORE the request's connection is taken, so a request never holds one pool
# connection while waiting for a second, which would deadlock a full pool under load.
async def _write_session(
    request: Request, _principal: CurrentPrincipal
) -> AsyncIterator[AsyncSession]:
    async with audited_transaction(request) as session:
        yield session


@asynccontextmanager
async def audited_transaction(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's write transaction, as `AuditedSession` runs it, for a route that opens it
    itself (only on its plain path: a hot path answered in one statement needs none). Leave
    the block before answering: the commit is what makes the answer true."""
    async with transaction(request.app.state.sessionmaker) as session:
        yield session
        # Last statement before the commit: the audit row of a PHI access commits with it.
        await append_success(session, request, _default_status(request))


def _default_status(request: Request) -> int:
    status = getattr(request.scope.get("route"), "status_code", None)
    return status if isinstance(status, int) else 200


async def _read_session(
    request: Request, _principal: CurrentPrincipal
) -> AsyncIterator[AsyncSession]:
    async with transaction(request.app.state.read_sessionmaker) as session:
        yield session


# scope="function": the commit happens when the endpoint returns, before the response is sent,
# so a failed commit can never be reported to the caller as a success.
AuditedSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


# The caller's organization, from its credentials: every repository query is scoped by it, so
# another organization's record is simply not found (404), never confirmed to exist.
OrganizationId = CurrentOrganizationId
