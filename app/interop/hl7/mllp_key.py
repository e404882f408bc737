"""The MLLP listener's credentials: the principal of one API key, checked at start-up and
re-verified per message through a cache (MLLP itself carries none)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service as auth
from app.auth.principal import Principal, Rejection, Scope
from app.core.db import transaction, utcnow
from app.core.errors import AppError
from app.models.api_key import ApiKey

# The listener's logger: a refused key is reported where the listener's other events are.
log = logging.getLogger("app.interop.hl7.mllp")


class MllpConfigurationError(
    AppError, status=500, slug="mllp-configuration", title="The MLLP listener is misconfigured"
):
    """The listener cannot start: the API key is invalid or may not post panels. (An AppError,
    so the CLI prints it as ``error: ...`` and exits 1.)"""


def _checked(verified: ApiKey | Rejection) -> Principal | Rejection:
    if isinstance(verified, Rejection):
        return verified
    principal = auth.principal_for_key(verified)
    missing = principal.missing_scopes(Scope.PANELS_WRITE)
    if missing:
        return Rejection(f"the API key's role '{principal.role}' lacks {', '.join(missing)}")
    return principal


async def resolve_principal(
    sessionmaker: async_sessionmaker[AsyncSession], api_key: str
) -> Principal:
    """The principal of ``api_key``, which must be valid and allowed to post panels."""
    async with transaction(sessionmaker) as session:
        verified = await auth.verify_api_key(session, token=api_key, now=utcnow())
    checked = _checked(verified)
    if isinstance(checked, Rejection):
        if isinstance(verified, Rejection):
            raise MllpConfigurationError(f"the API key is refused: {checked.reason}")
        raise MllpConfigurationError(checked.reason)
    return checked


class ListenerKey:
    """The listener's API key, re-verified against the database at most every
    ``cache_seconds`` (the same window as the HTTP API's key cache), and against its expiry
    time on every message."""

    def __init__(
        self,
        api_key: str,
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = api_key
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._principal: Principal | None = None
        self._expires_at: datetime | None = None
        self._trusted_until = float("-inf")
        # The principal last seen valid: refused messages are audited against it.
        self.last_principal: Principal | None = None

    async def current(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> Principal | Rejection:
        now = utcnow()
        principal = self._principal
        if (
            principal is not None
            and self._clock() < self._trusted_until
            and (self._expires_at is None or self._expires_at > now)
        ):
            return principal
        async with transaction(sessionmaker) as session:
            verified = await auth.verify_api_key(session, token=self._token, now=now)
        checked = _checked(verified)
        if isinstance(checked, Rejection):
            self._principal = None
            log.warning("MLLP message refused: %s", checked.reason)
            return checked
        self._principal = self.last_principal = checked
        self._expires_at = None if isinstance(verified, Rejection) else verified.expires_at
        self._trusted_until = self._clock() + self._cache_seconds
        return checked
