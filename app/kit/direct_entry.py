"""What the hot routes' direct entry points (ADR 0010: app.panels.direct_post,
app.panels.direct_get) share: reading a request's credentials straight from the ASGI scope
when nothing about them is unusual, and setting what the route's dependencies would have set
(the route, its audit draft, the principal) before answering.

Every check here is conservative: anything it does not recognise as the plain case answers
None, and the caller hands the request to the route, which gives the answer (or the refusal)
in its own words.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import Receive, Scope

from app.audit.context import AuditDraft
from app.auth import deps as auth
from app.auth import keys
from app.auth.principal import Principal
from app.core.db import utcnow

_CREDENTIALS = (b"x-api-key", b"authorization")


def audit_spec(route: APIRoute) -> tuple[str, str]:
    """(action, resource type) of the route's `audited` dependency; a route without one is a
    programming error (a direct entry point only serves audited routes)."""
    for depends in route.dependencies:
        spec: tuple[str, str] | None = getattr(depends.dependency, "audit_spec", None)
        if spec is not None:
            return spec
    raise ValueError(f"{route.path} is not an audited route")


def single_headers(scope: Scope, names: Iterable[bytes]) -> dict[bytes, bytes] | None:
    """The request's headers among `names` and the credential headers, or None when one of
    them is sent twice (which one counts is the route's question)."""
    wanted = {*names, *_CREDENTIALS}
    seen: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in wanted:
            if name in seen:
                return None
            seen[name] = value
    return seen


def api_key_token(seen: dict[bytes, bytes]) -> str | None:
    """The API key of headers `single_headers` read: one `X-API-Key` or one `Authorization:
    Bearer`, not both, holding something in our key namespace; else None."""
    api_key, authorization = seen.get(b"x-api-key"), seen.get(b"authorization")
    if authorization is not None:
        scheme, _, api_key_from_bearer = authorization.partition(b" ")
        if api_key is not None or scheme.lower() != b"bearer":
            return None
        api_key = api_key_from_bearer
    if not api_key or api_key != api_key.strip() or b" " in api_key:
        return None
    token = api_key.decode("latin-1")
    return token if keys.looks_like_api_key(token) else None


def cached_principal(token: str, *needs: str) -> Principal | None:
    """The principal of an API key this process verified recently (no database read) whose
    role grants every scope in `needs`; None when the key is not cached (the route reads and
    caches it) or the route would answer 403 (and explain)."""
    principal = auth.cached_api_key_principal(token, utcnow())
    if principal is None or principal.missing_scopes(*needs):
        return None
    return principal


def enter_route(
    scope: Scope,
    receive: Receive,
    route: APIRoute,
    path_params: dict[str, Any],
    spec: tuple[str, str],
    principal: Principal,
) -> Request:
    """The request as the route's endpoint sees it once its dependencies have run: the route
    and its path parameters in the scope, the route's audit draft and the principal on its
    state (what the middleware writes the audit row and the logs from)."""
    scope["route"] = route
    scope["path_params"] = path_params
    request = Request(scope, receive)
    action, resource_type = spec
    request.state.audit = AuditDraft(action=action, resource_type=resource_type)
    request.state.principal = principal
    return request
