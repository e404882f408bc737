"""FastAPI dependencies: who is calling (401) and may they do this (403).

A route declares the scopes it needs, never a role::

    @router.post("/api/v1/panels")
    async def create_panel(principal: CanWritePanels, session: AuditedSession) -> ...:
        ...

    # or, for a combination without an alias:
    principal: Annotated[Principal, Security(require("panels:read", "plans:read"))]

Credentials: ``Authorization: Bearer mlk_...`` or ``X-API-Key: mlk_...`` (API keys), or
``Authorization: Bearer <JWT>`` (OIDC access tokens). The lookup runs in its own short read
transaction, so it never depends on (or holds up) the route's session. The principal is also
stored on ``request.state.principal`` for the audit trail, before any 403 is raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, NoReturn

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError

from app.auth import keys, service
from app.auth.errors import ForbiddenError, UnauthorizedError
from app.auth.oidc import OidcVerifier, audit_first_use
from app.auth.principal import ALL_SCOPES, Principal, Rejection, Scope
from app.core.config import Settings
from app.core.db import transaction, utcnow
from app.kit.problems import problem_doc

log = logging.getLogger("app.auth")

API_KEY_HEADER = "X-API-Key"

_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description="An API key (`mlk_...`), created by an administrator and shown once.",
    auto_error=False,
)
_bearer = HTTPBearer(
    scheme_name="Bearer",
    bearerFormat="JWT or mlk_ API key",
    description="An OIDC access token (JWT) from the configured identity provider, or an "
    "API key (`mlk_...`).",
    auto_error=False,
)

_NO_CREDENTIALS = (
    "Send an API key as `X-API-Key: mlk_...` or `Authorization: Bearer mlk_...`, "
    "or an OIDC access token as `Authorization: Bearer <JWT>`."
)
_REFUSED = "The credentials are not valid (unknown, malformed, revoked or expired)."

# For every protected route's `responses=`, next to app.kit.problems.PROBLEM_RESPONSES.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        **problem_doc("No credentials, or credentials that are invalid, revoked or expired."),
        "headers": {
            "WWW-Authenticate": {
                "description": 'The challenge: `Bearer realm="mineral-labs"`.',
                "schema": {"type": "string"},
            }
        },
    },
    403: problem_doc("Your role does not allow this operation."),
}


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> Principal:
    """The caller, or 401. Resolved once per request (FastAPI caches the dependency, and the
    principal is kept on request.state)."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    token = _credential(request, bearer, api_key)
    now = utcnow()
    if keys.looks_like_api_key(token):
        principal = await _api_key_principal(request, token, now)
    elif api_key is not None and bearer is None:
        _refuse(request, Rejection(f"{API_KEY_HEADER} does not hold an API key"))
    else:
        principal = await _oidc_principal(request, token)
    request.state.principal = principal
    return principal


def _credential(
    request: Request, bearer: HTTPAuthorizationCredentials | None, api_key: str | None
) -> str:
    if bearer is not None and api_key is not None and bearer.credentials != api_key:
        _refuse(request, Rejection(f"both Authorization and {API_KEY_HEADER} were sent"))
    if bearer is not None:
        return bearer.credentials
    if api_key is not None:
        return api_key
    if request.headers.get("authorization"):
        raise UnauthorizedError(
            "The Authorization header must read `Bearer <token>`. " + _NO_CREDENTIALS
        )
    raise UnauthorizedError("Authentication required. " + _NO_CREDENTIALS)


def _refuse(request: Request, rejection: Rejection) -> NoReturn:
    # The reason goes to the log (and request.state for the audit trail), never the response:
    # the caller learns only that the credential was refused.
    request.state.auth_failure = rejection.reason
    log.info("credentials refused on %s %s: %s", request.method, request.url.path, rejection.reason)
    raise UnauthorizedError(_REFUSED, invalid_token=True)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    key_id: uuid.UUID
    key_expires_at: datetime | None
    trusted_until: float


# Verified keys, by SHA-256 of the whole token (never the token itself), per process. A hit
# skips the database read for `api_key_cache_seconds`; revoking through this process evicts at
# once, other processes notice within that time. Bounded so junk tokens cannot grow it.
_verified: dict[str, _Verified] = {}
_VERIFIED_MAX = 10_000
# Verifications in flight, by the same digest: when a busy key's entry expires, every request
# in flight would otherwise read the key at once, each on its own pooled connection (a pool's
# worth of overflow connections opened and closed every `api_key_cache_seconds`, replacing
# warm server backends with cold ones). One request verifies; the others wait for its answer.
# A waiter whose leader was refused, failed or was cancelled verifies for itself.
_verifying: dict[str, asyncio.Future[Principal | None]] = {}


def forget_api_key(key_id: uuid.UUID) -> None:
    for digest in [d for d, v in _verified.items() if v.key_id == key_id]:
        _verified.pop(digest, None)


def cached_api_key_principal(token: str, now: datetime) -> Principal | None:
    """The principal of an API key this process verified less than `api_key_cache_seconds`
    ago (and that has not expired since), or None: no database read, no refusal. For a hot
    path that answers only what needs nothing more (app.panels.direct_post); anything else
    goes through `authenticate`."""
    return _cached(hashlib.sha256(token.encode()).hexdigest(), now)


def _cached(digest: str, now: datetime) -> Principal | None:
    cached = _verified.get(digest)
    if (
        cached is not None
        and cached.trusted_until > time.monotonic()
        and (cached.key_expires_at is None or cached.key_expires_at > now)
    ):
        return cached.principal
    return None


async def _api_key_principal(request: Request, token: str, now: datetime) -> Principal:
    digest = hashlib.sha256(token.encode()).hexdigest()
    cached = _cached(digest, now)
    if cached is not None:
        return cached
    pending = _verifying.get(digest)
    if pending is not None:
        shared = await asyncio.shield(pending)
        if shared is not None:
            return shared
        return await _verify_api_key(request, token, digest, now)
    leader: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
    _verifying[digest] = leader
    principal: Principal | None = None
    try:
        principal = await _verify_api_key(request, token, digest, now)
    finally:
        if _verifying.get(digest) is leader:
            del _verifying[digest]
        leader.set_result(principal)
    return principal


async def _verify_api_key(request: Request, token: str, digest: str, now: datetime) -> Principal:
    """Read and check the key (its own short read transaction), record its use when due, and
    remember it for `api_key_cache_seconds`."""
    settings = _settings(request)
    async with transaction(request.app.state.read_sessionmaker) as session:
        verified = await service.verify_api_key(session, token=token, now=now)
    if isinstance(verified, Rejection):
        _verified.pop(digest, None)
        _refuse(request, verified)
    interval = settings.api_key_touch_interval_seconds
    if service.needs_touch(verified, now=now, touch_interval=interval):
        await _record_use(request, verified.id, now, interval)
    principal = service.principal_for_key(verified)
    if settings.api_key_cache_seconds > 0:
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[digest] = _Verified(
            principal=principal,
            key_id=verified.id,
            key_expires_at=verified.expires_at,
            trusted_until=time.monotonic() + settings.api_key_cache_seconds,
        )
    return principal


async def _record_use(request: Request, key_id: uuid.UUID, now: datetime, interval: int) -> None:
    """The last-used time is bookkeeping: written in its own short transaction at most once per
    interval per key, and a failure to write it never fails the request."""
    try:
        async with transaction(request.app.state.sessionmaker) as session:
            await service.touch_api_key(session, key_id=key_id, now=now, touch_interval=interval)
    except SQLAlchemyError as exc:
        log.warning("last-used time of API key %s not recorded: %s", key_id, type(exc).__name__)


def get_oidc_verifier(request: Request) -> OidcVerifier | None:
    """The app's verifier, built from its settings on first use. `create_app` may set
    ``app.state.oidc_verifier`` itself to refuse a bad OIDC configuration at startup."""
    state = request.app.state
    if not hasattr(state, "oidc_verifier"):
        state.oidc_verifier = OidcVerifier.from_settings(_settings(request))
    verifier: OidcVerifier | None = state.oidc_verifier
    return verifier


async def _oidc_principal(request: Request, token: str) -> Principal:
    verifier = get_oidc_verifier(request)
    if verifier is None:
        _refuse(request, Rejection("a JWT was sent but OIDC is not configured"))
    identity = await verifier.verify(token)
    if isinstance(identity, Rejection):
        _refuse(request, identity)
    async with transaction(request.app.state.read_sessionmaker) as session:
        principal = await service.principal_for_oidc(session, identity=identity)
    if isinstance(principal, Rejection):
        _refuse(request, principal)
    # A token mapped to a principal: its first use is a `login` audit event.
    await audit_first_use(
        request.app.state.sessionmaker, token=token, principal=principal, scope=request.scope
    )
    return principal


def require(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if its role grants every one of `scopes`; else 403.

    Calls with the same scopes return the same function, so FastAPI resolves it once per
    request however many parameters use it. An unknown scope fails at import time."""
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown or not scopes:
        raise ValueError(f"require() needs known scopes; unknown: {unknown}")
    return _require(tuple(sorted({str(scope) for scope in scopes})))


@cache
def _require(scopes: tuple[str, ...]) -> Callable[..., Awaitable[Principal]]:
    # The credentials as `authenticate` declares them, and `authenticate` called rather than
    # declared: one dependency node fewer to solve on every request (the principal is kept on
    # request.state, so a later `CurrentPrincipal` gets it without a second lookup).
    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        api_key: Annotated[str | None, Security(_api_key_header)],
    ) -> Principal:
        principal = await authenticate(request, bearer, api_key)
        missing = principal.missing_scopes(*scopes)
        if missing:
            request.state.auth_denied_scopes = missing
            raise ForbiddenError(
                f"The role '{principal.role}' does not allow this operation "
                f"(it needs {', '.join(missing)}).",
                required_scopes=list(scopes),
            )
        return principal

    dependency.__name__ = dependency.__qualname__ = "require_" + "_".join(
        scope.replace(":", "_") for scope in scopes
    )
    return dependency


async def _organization_id(principal: Annotated[Principal, Security(authenticate)]) -> uuid.UUID:
    return principal.organization_id


CurrentPrincipal = Annotated[Principal, Security(authenticate)]
# The caller's organization: what every repository query is scoped by.
CurrentOrganizationId = Annotated[uuid.UUID, Security(_organization_id)]

# One alias per scope, so route signatures read like prose: `principal: CanWritePanels`.
CanReadPatients = Annotated[Principal, Security(require(Scope.PATIENTS_READ))]
CanWritePatients = Annotated[Principal, Security(require(Scope.PATIENTS_WRITE))]
CanReadPanels = Annotated[Principal, Security(require(Scope.PANELS_READ))]
CanWritePanels = Annotated[Principal, Security(require(Scope.PANELS_WRITE))]
CanReinterpretPanels = Annotated[Principal, Security(require(Scope.PANELS_REINTERPRET))]
CanReadPlans = Annotated[Principal, Security(require(Scope.PLANS_READ))]
CanWritePlans = Annotated[Principal, Security(require(Scope.PLANS_WRITE))]
CanReadRanges = Annotated[Principal, Security(require(Scope.RANGES_READ))]
CanWriteRanges = Annotated[Principal, Security(require(Scope.RANGES_WRITE))]
CanReadRules = Annotated[Principal, Security(require(Scope.RULES_READ))]
CanWriteRules = Annotated[Principal, Security(require(Scope.RULES_WRITE))]
CanAdminKeys = Annotated[Principal, Security(require(Scope.KEYS_ADMIN))]
CanReadAudit = Annotated[Principal, Security(require(Scope.AUDIT_READ))]
