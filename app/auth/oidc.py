"""OIDC bearer tokens (JWT) for clinician front-ends: signature, issuer, audience and lifetime.

The organization claim (``oidc_organization_claim``, default ``org``) holds the organization's
**name**, the same name the operator gives ``python -m app create-api-key --org NAME``: an
identity-provider administrator can configure it without knowing our internal ids. The
organization must already exist; a token never creates one. The role claim
(``oidc_role_claim``, default ``role``) holds one of ``integration``, ``clinician``, ``admin``
(a string, or a list with exactly one of them). A claim name may be a dotted path into nested
claims (``realm_access.role``) when no top-level claim has that exact name.

Nothing from a token is ever logged: a refusal carries a reason written here, never a value.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
import jwt
from jwt import PyJWK, PyJWKClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit_service
from app.audit.entries import build_entry
from app.auth.principal import Principal, Rejection, Role, oidc_principal_id
from app.core.config import Settings
from app.core.db import transaction

log = logging.getLogger("app.auth.oidc")

# The only algorithms we ever verify with, and the key each needs. `none` and every HS*
# (shared-secret) algorithm are absent on purpose: with HS256 a forger could "sign" with our
# public key as the HMAC secret.
_KEY_TYPES: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
SUPPORTED_ALGORITHMS = frozenset(_KEY_TYPES)

_ROLE_NAMES = frozenset(role.value for role in Role)
_MAX_TOKEN_CHARS = 16_384
_MAX_SUBJECT_CHARS = 255
_MAX_ORGANIZATION_CHARS = 200  # organization.name
_MAX_PRINCIPAL_ID_CHARS = 300  # audit_event.principal_id
_MAX_DISPLAY_CHARS = 200
# A token naming an unknown key id triggers at most one JWKS refetch per this many seconds,
# so a stream of made-up key ids cannot turn into a stream of requests to the identity provider.
_UNKNOWN_KID_REFETCH_SECONDS = 30.0
# After a failed JWKS fetch, wait this long before trying again (the last good set stays).
_FETCH_RETRY_SECONDS = 10.0
_FETCH_TIMEOUT_SECONDS = 5.0


class OidcConfigError(ValueError):
    """The OIDC settings are incomplete or unsafe."""


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """A validated token's caller. The organization is still a name: `app.auth.service`
    resolves it (that needs the database)."""

    issuer: str
    subject: str
    organization_name: str
    role: Role
    display: str
    # The display-name claim (``oidc_display_name_claim``, default ``name``); None without one.
    display_name: str | None = None


class JwksKeys:
    """One parsed JWKS: public signing keys by `kid`, verification keys prepared on first use."""

    def __init__(self, document: Any) -> None:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("a JWKS is a JSON object with a `keys` array")
        self._jwks: dict[str, dict[str, Any]] = {}
        for jwk in document["keys"]:
            if not isinstance(jwk, dict):
                continue
            kid = jwk.get("kid")
            # Only public signing keys: no symmetric (oct) keys, no encryption keys, no
            # private key material, and every key must be addressable by its id.
            if (
                not isinstance(kid, str)
                or not kid
                or jwk.get("kty") not in ("RSA", "EC", "OKP")
                or jwk.get("use") not in (None, "sig")
                or "d" in jwk
            ):
                continue
            self._jwks.setdefault(kid, jwk)
        self._prepared: dict[tuple[str, str], PyJWK] = {}

    def __len__(self) -> int:
        return len(self._jwks)

    def __contains__(self, kid: object) -> bool:
        return kid in self._jwks

    def key(self, kid: str, algorithm: str) -> PyJWK | Rejection:
        cached = self._prepared.get((kid, algorithm))
        if cached is not None:
            return cached
        jwk = self._jwks.get(kid)
        if jwk is None:
            return Rejection("no key in the JWKS has the token's kid")
        declared = jwk.get("alg")
        if declared is not None and declared != algorithm:
            return Rejection("the token's algorithm is not the one its key declares")
        kty, curve = _KEY_TYPES[algorithm]
        if jwk.get("kty") != kty or (curve is not None and jwk.get("crv") != curve):
            return Rejection("the token's algorithm does not fit its key's type")
        try:
            prepared = PyJWK(jwk, algorithm=algorithm)
        except jwt.PyJWTError:
            return Rejection("the JWKS key cannot be used")
        self._prepared[(kid, algorithm)] = prepared
        return prepared


class JwksSource(Protocol):
    async def current(self) -> JwksKeys | Rejection:
        """The keys to verify with now."""
        ...

    async def refreshed(self) -> JwksKeys | Rejection:
        """The keys after a refetch, if the source can refetch and may do so now (a token
        named a key id the current set does not have, e.g. after key rotation)."""
        ...


class JwksFile:
    """A JWKS read from a file once, on first use (a failed read is retried next time)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._keys: JwksKeys | None = None

    async def current(self) -> JwksKeys | Rejection:
        if self._keys is None:
            try:
                self._keys = JwksKeys(json.loads(self._path.read_text("utf-8")))
            except (OSError, ValueError) as exc:
                log.error("OIDC JWKS file %s cannot be used: %s", self._path, exc)
                return Rejection("the JWKS file cannot be read")
        return self._keys

    async def refreshed(self) -> JwksKeys | Rejection:
        return await self.current()


class JwksUrl:
    """A JWKS fetched from the identity provider and kept for `cache_seconds`.

    The fetch is PyJWT's `PyJWKClient.fetch_data` (blocking urllib; run in a worker thread,
    only http(s), no redirects), unless `fetch` is given (tests). When a fetch fails the last
    good set keeps serving, and the next attempt waits a few seconds, so an outage at the
    identity provider neither logs everyone out nor makes every request wait for a timeout.
    """

    def __init__(
        self, url: str, *, cache_seconds: float, fetch: Callable[[], Any] | None = None
    ) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._fetch = (
            fetch
            or PyJWKClient(url, cache_jwk_set=False, timeout=_FETCH_TIMEOUT_SECONDS).fetch_data
        )
        self._keys: JwksKeys | None = None
        self._fetched_at = float("-inf")
        self._retry_at = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> JwksKeys | Rejection:
        return await self._keys_newer_than(self._cache_seconds)

    async def refreshed(self) -> JwksKeys | Rejection:
        return await self._keys_newer_than(min(self._cache_seconds, _UNKNOWN_KID_REFETCH_SECONDS))

    async def _keys_newer_than(self, max_age: float) -> JwksKeys | Rejection:
        if self._stale(max_age):
            async with self._lock:
                # Whoever held the lock may just have fetched: one fetch serves every waiter.
                if self._stale(max_age):
                    await self._refetch()
        if self._keys is None:
            return Rejection("the JWKS is not available")
        return self._keys

    def _stale(self, max_age: float) -> bool:
        now = time.monotonic()
        return now - self._fetched_at >= max_age and now >= self._retry_at

    async def _refetch(self) -> None:
        try:
            document = await anyio.to_thread.run_sync(self._fetch)
            keys = JwksKeys(document)
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            self._retry_at = time.monotonic() + _FETCH_RETRY_SECONDS
            log.warning("OIDC JWKS fetch from %s failed: %s", self._url, type(exc).__name__)
            return
        self._keys = keys
        self._fetched_at = time.monotonic()


class OidcVerifier:
    """Validates bearer JWTs: signature (key chosen by `kid`, allowed algorithms only), `iss`,
    `aud`, `exp`, `nbf` and `iat` (with leeway), then reads subject, organization and role."""

    def __init__(
        self,
        *,
        source: JwksSource,
        issuer: str,
        audience: str,
        algorithms: Sequence[str],
        leeway_seconds: float = 0,
        organization_claim: str = "org",
        role_claim: str = "role",
        display_name_claim: str = "name",
    ) -> None:
        refused = [alg for alg in algorithms if alg not in SUPPORTED_ALGORITHMS]
        if refused or not algorithms:
            raise OidcConfigError(
                f"OIDC algorithms must be among {sorted(SUPPORTED_ALGORITHMS)}; "
                f"refused: {refused or 'an empty list'}"
            )
        self.source = source
        self.issuer = issuer
        self.audience = audience
        self.algorithms = frozenset(algorithms)
        self.leeway_seconds = leeway_seconds
        self.organization_claim = organization_claim
        self.role_claim = role_claim
        self.display_name_claim = display_name_claim

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcVerifier | None:
        """The verifier the settings describe; None when OIDC is not configured (no JWKS).

        Raises OidcConfigError when a JWKS is configured without an issuer and an audience (a
        token checked against neither would be accepted from any client of the provider) or
        when both a file and a URL are set."""
        if settings.oidc_jwks_file is None and settings.oidc_jwks_url is None:
            return None
        if settings.oidc_jwks_file is not None and settings.oidc_jwks_url is not None:
            raise OidcConfigError("set either the OIDC JWKS file or its URL, not both")
        if not settings.oidc_issuer or not settings.oidc_audience:
            raise OidcConfigError("OIDC needs both an issuer and an audience")
        source: JwksSource
        if settings.oidc_jwks_file is not None:
            source = JwksFile(settings.oidc_jwks_file)
        else:
            assert settings.oidc_jwks_url is not None
            try:
                source = JwksUrl(
                    settings.oidc_jwks_url, cache_seconds=settings.oidc_jwks_cache_seconds
                )
            except jwt.PyJWTError as exc:
                raise OidcConfigError(f"OIDC JWKS URL refused: {exc}") from exc
        return cls(
            source=source,
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            algorithms=settings.oidc_algorithms,
            leeway_seconds=settings.oidc_leeway_seconds,
            organization_claim=settings.oidc_organization_claim,
            role_claim=settings.oidc_role_claim,
            display_name_claim=settings.oidc_display_name_claim,
        )

    async def verify(self, token: str) -> OidcIdentity | Rejection:
        if len(token) > _MAX_TOKEN_CHARS:
            return Rejection("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return Rejection("the bearer token is not a JWT")
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            return Rejection("the token's algorithm is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            return Rejection("the token header has no kid")

        key = await self._key(kid, algorithm)
        if isinstance(key, Rejection):
            return key
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_seconds,
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            return Rejection(_decode_failure(exc))
        return self._identity(claims)

    async def _key(self, kid: str, algorithm: str) -> PyJWK | Rejection:
        keys = await self.source.current()
        if isinstance(keys, JwksKeys) and kid not in keys:
            keys = await self.source.refreshed()
        if isinstance(keys, Rejection):
            return keys
        return keys.key(kid, algorithm)

    def _identity(self, claims: dict[str, Any]) -> OidcIdentity | Rejection:
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= _MAX_SUBJECT_CHARS:
            return Rejection("the token's subject is empty or too long")
        if len(oidc_principal_id(self.issuer, subject)) > _MAX_PRINCIPAL_ID_CHARS:
            return Rejection("the token's issuer and subject are too long to record")
        organization = _claim(claims, self.organization_claim)
        if organization is None:
            return Rejection("the token has no organization claim")
        if not isinstance(organization, str) or not 0 < len(organization) <= (
            _MAX_ORGANIZATION_CHARS
        ):
            return Rejection("the token's organization claim is not a name")
        role = _role(_claim(claims, self.role_claim))
        if isinstance(role, Rejection):
            return role
        display = claims.get("preferred_username")
        if not isinstance(display, str) or not display:
            display = subject
        display_name = _claim(claims, self.display_name_claim)
        if not isinstance(display_name, str) or not display_name.strip().isprintable():
            display_name = None
        return OidcIdentity(
            issuer=self.issuer,
            subject=subject,
            organization_name=organization,
            role=role,
            display=display[:_MAX_DISPLAY_CHARS],
            display_name=display_name.strip()[:_MAX_DISPLAY_CHARS] if display_name else None,
        )


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A top-level claim by its exact name (which may contain dots, e.g. a URL), else a
    dotted path into nested objects."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _role(value: Any) -> Role | Rejection:
    if value is None:
        return Rejection("the token has no role claim")
    candidates = value if isinstance(value, list) else [value]
    roles = {Role(item) for item in candidates if isinstance(item, str) and item in _ROLE_NAMES}
    if len(roles) != 1:
        # None of ours, or several: a token must not leave the role to our choice.
        return Rejection("the token's role claim does not name exactly one known role")
    return roles.pop()


def _decode_failure(exc: jwt.PyJWTError) -> str:
    # Most specific first: several of these subclass each other.
    reasons: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
        (jwt.ExpiredSignatureError, "the token has expired"),
        (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat)"),
        (jwt.InvalidAudienceError, "the token is for another audience"),
        (jwt.InvalidIssuerError, "the token is from another issuer"),
        (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
        (jwt.InvalidSignatureError, "the token's signature does not verify"),
        (jwt.InvalidAlgorithmError, "the token's algorithm is not allowed"),
        (jwt.InvalidKeyError, "the token's key is unusable"),
        (jwt.DecodeError, "the token is malformed"),
    )
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    return "the token is not valid"


# --- logins: the first use of each token is an audit event ----------------------------------

# Tokens already recorded by this process, by SHA-256 of the token (never the token), oldest
# first; bounded so a flood of distinct valid tokens costs memory only up to this size.
_recorded_logins: dict[str, None] = {}
_RECORDED_LOGINS_MAX = 50_000


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def audit_first_use(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    token: str,
    principal: Principal,
    scope: Mapping[str, Any],
) -> None:
    """Record a `login` audit event the first time this process sees a token that mapped to a
    principal: who (principal, organization, role), when, from where, on which request.

    Cheap by design: one short transaction per token per process (a token lives minutes), none
    for its later requests. Another process (or a restart) records the token once more. A
    failure to write is logged and retried on the token's next request; the request goes on
    (what it accesses is audited on its own)."""
    digest = _token_digest(token)
    if digest in _recorded_logins:
        return
    entry = build_entry(
        principal, action="login", resource_type="principal", outcome="success", scope=scope
    )
    try:
        async with transaction(sessionmaker) as session:
            await audit_service.append(session, [entry])
    except SQLAlchemyError as exc:
        log.warning("OIDC login of %s not audited: %s", principal.id, type(exc).__name__)
        return
    if len(_recorded_logins) >= _RECORDED_LOGINS_MAX:
        _recorded_logins.pop(next(iter(_recorded_logins)))
    _recorded_logins[digest] = None
