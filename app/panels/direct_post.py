"""POST /api/v1/panels answered straight from the ASGI scope when nothing about it is unusual
(issue 15, ADR 0010).

Measured with py-spy on the POST load (one worker, 16 connections, the one-statement write of
app.panels.fast_post): of the service's CPU per POST, FastAPI's route handling took a third
(solving the route's dependencies alone ~19 %: the app-wide checks, the audit draft, the
credentials, the scope check, the Idempotency-Key header, the body), for a request whose every
check passes and whose answer ``fast_post.try_post`` computes anyway.

This entry point (installed by app.main through app.kit.routing.dispatch_hot_routes_first)
takes only requests that need nothing the route's dependencies would add, and hands everything
else to the route itself, exactly as it came (the body it read is replayed, message by
message, or the error reading it raised is raised again): no query string (any parameter would
be refused), one ``Content-Type: application/json``, one API key this process verified less
than ``api_key_cache_seconds`` ago (``X-API-Key`` or ``Authorization: Bearer``, not both) whose
role may write panels, at most one Idempotency-Key, and a body that parses (orjson; anything
it refuses, the route parses itself) and validates as a ``PanelCreate``, the model the route
validates with. Then the route's own audit draft and principal are set as its dependencies
set them, and ``fast_post.try_post`` runs, the call the route makes first; when it answers
None (nothing written), the route handles the request from the start. A request answered here
is answered byte for byte as the route answers it (tests/panels/test_direct_post.py).
"""

from __future__ import annotations

from collections import deque

import orjson
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.principal import Scope as AuthScope
from app.kit import direct_entry
from app.kit.routing import Direct
from app.panels import fast_post
from app.panels.schemas import PanelCreate

_NEEDS = (AuthScope.PANELS_WRITE,)  # CanWritePanels: what the route's scope check asks
_JSON = b"application/json"
_HEADERS = (b"content-type", b"idempotency-key")


def direct_for(route: APIRoute) -> Direct:
    """The direct entry point of the POST /api/v1/panels route `route`."""
    spec = direct_entry.audit_spec(route)

    async def direct(scope: Scope, receive: Receive, send: Send, routed: ASGIApp) -> None:
        plain = _plain_headers(scope)
        principal = None if plain is None else direct_entry.cached_principal(plain[0], *_NEEDS)
        if plain is None or principal is None:
            await routed(scope, receive, send)
            return
        replay, body = await _recorded(receive)
        data = None if body is None else _panel(body)
        if body is None or data is None:
            await routed(scope, replay, send)
            return
        request = direct_entry.enter_route(scope, replay, route, {}, spec, principal)
        request._body = body  # what request.body() answers (the fingerprint hashes it)
        settings = request.app.state.settings
        answer = await fast_post.try_post(request, principal, data, key=plain[1], settings=settings)
        if answer is None:  # nothing written: the route answers, from its first dependency on
            await routed(scope, replay, send)
            return
        await answer(scope, receive, send)

    return direct


def _plain_headers(scope: Scope) -> tuple[str, str | None] | None:
    """(the API key, the Idempotency-Key or None) of a request every header check of the route
    passes without a question, else None."""
    if scope.get("query_string"):
        return None
    seen = direct_entry.single_headers(scope, _HEADERS)
    if seen is None:
        return None
    content_type = seen.get(b"content-type")
    if content_type is None or content_type.partition(b";")[0].strip().lower() != _JSON:
        return None
    token = direct_entry.api_key_token(seen)
    if token is None:
        return None
    idempotency_key = seen.get(b"idempotency-key")
    return token, None if idempotency_key is None else idempotency_key.decode("latin-1")


async def _recorded(receive: Receive) -> tuple[Receive, bytes | None]:
    """Read the whole body; returns a `receive` that gives the route the same messages again
    (then the real ones), or raises again what reading raised, and the body (None when the
    client went away or the body could not be read)."""
    messages: list[Message] = []
    failure: Exception | None = None
    body: bytes | None = None
    try:
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            if not message.get("more_body", False):
                body = b"".join(m.get("body", b"") for m in messages)
                break
    except Exception as exc:  # e.g. a body over the JSON limits: the route raises it itself
        failure = exc
    pending = deque(messages)

    async def replay() -> Message:
        nonlocal failure
        if pending:
            return pending.popleft()
        if failure is not None:
            raised, failure = failure, None
            raise raised
        return await receive()

    return replay, body


def _panel(body: bytes) -> PanelCreate | None:
    try:
        return PanelCreate.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError):
        return None  # the route refuses it, with its own words
