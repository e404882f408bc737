"""GET /api/v1/panels/{panel_id} answered straight from the ASGI scope when nothing about it
is unusual (issue 15, ADR 0010, as app.panels.direct_post does for the POST).

Measured with py-spy on the GET load (one worker, 16 connections): FastAPI's route handling
took about a third of the service's CPU per GET (solving the dependencies alone ~30 %: the
app-wide checks, the audit draft, the credentials, the scope check, the path parameter), for a
request whose answer is one statement (app.panels.hot.read_remembered: the stored document
and its audit row).

This entry point takes only what needs nothing from those dependencies: no query string (any
parameter would be refused), one API key this process verified less than
``api_key_cache_seconds`` ago (``X-API-Key`` or ``Authorization: Bearer``, not both) whose
role may read panels, a panel id in its canonical form (lower-case, hyphenated: any other
spelling the route parses itself) and a panel whose patient this process has noted. The route's
own audit draft and principal are set as its dependencies set them, and the read the route
makes first runs; when it finds nothing (nothing appended), or anything else is unusual, the
route handles the request from the start. A GET has no body the route reads, so nothing needs
replaying. A request answered here is answered byte for byte as the route answers it
(tests/panels/test_direct_get.py).
"""

from __future__ import annotations

import uuid

from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.principal import Scope as AuthScope
from app.kit import direct_entry
from app.kit.routing import Direct
from app.panels import hot

_NEEDS = (AuthScope.PANELS_READ,)  # CanReadPanels: what the route's scope check asks
_PARAM = "panel_id"


def direct_for(route: APIRoute) -> Direct:
    """The direct entry point of the GET /api/v1/panels/{panel_id} route `route`."""
    spec = direct_entry.audit_spec(route)
    if set(route.param_convertors) != {_PARAM}:
        raise ValueError(f"{route.path} does not take exactly the path parameter {_PARAM}")

    async def direct(scope: Scope, receive: Receive, send: Send, routed: ASGIApp) -> None:
        token = _api_key(scope)
        principal = None if token is None else direct_entry.cached_principal(token, *_NEEDS)
        text = None if principal is None else _panel_id_text(route, scope)
        if principal is None or text is None:
            await routed(scope, receive, send)
            return
        panel_id = uuid.UUID(text)
        patient_id = hot.remembered_patient(
            scope["app"].state.engine, principal.organization_id, panel_id
        )
        if patient_id is None:
            await routed(scope, receive, send)
            return
        request = direct_entry.enter_route(scope, receive, route, {_PARAM: text}, spec, principal)
        document = await hot.read_remembered(request, principal, panel_id, patient_id)
        if document is None:  # nothing appended: the route answers, from its first dependency
            await routed(scope, receive, send)
            return
        await Response(document, media_type="application/json")(scope, receive, send)

    return direct


def _api_key(scope: Scope) -> str | None:
    if scope.get("query_string"):
        return None
    seen = direct_entry.single_headers(scope, ())
    return None if seen is None else direct_entry.api_key_token(seen)


def _panel_id_text(route: APIRoute, scope: Scope) -> str | None:
    """The panel id of the path when it is a UUID in canonical form, else None."""
    match = route.path_regex.match(scope["path"])
    text = None if match is None else match.group(_PARAM)
    if text is None or len(text) != 36:
        return None
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return None
    return text if str(parsed) == text else None
