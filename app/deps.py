"""Request-scoped dependencies shared by every router, as Annotated aliases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import transaction
from app.models.organization import DEFAULT_ORGANIZATION_ID


async def _write_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with transaction(request.app.state.sessionmaker) as session:
        yield session


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with transaction(request.app.state.read_sessionmaker) as session:
        yield session


# scope="function": the commit happens when the endpoint returns, before the response is sent,
# so a failed commit can never be reported to the caller as a success.
WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


def _organization_id(request: Request) -> uuid.UUID:
    # Every caller belongs to the default organization until access control lands; routes
    # already take the organization from here so scoping lives in one place.
    return DEFAULT_ORGANIZATION_ID


OrganizationId = Annotated[uuid.UUID, Depends(_organization_id)]
