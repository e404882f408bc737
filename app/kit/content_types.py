"""JSON request bodies need a JSON Content-Type: anything else is a 415 naming what is accepted.

Without this check FastAPI treats a body sent without Content-Type (or as `text/plain`) as
bytes and answers 422 "Input should be a valid dictionary", which sends the integrator
looking at the body instead of the header. One app-wide dependency covers every route whose
body is a declared JSON model; routes that read their own bodies (range-set and rule-set
imports in JSON, YAML or CSV, HL7 v2, FHIR) negotiate the media type themselves.
"""

from __future__ import annotations

import email.message

from fastapi import Request, params
from fastapi.routing import APIRoute

from app.audit.context import start_draft_for_route
from app.core.errors import AppError
from app.kit.query_params import is_checked

JSON_MEDIA_TYPES = ("application/json",)


class UnsupportedJsonMediaTypeError(
    AppError, status=415, slug="unsupported-media-type", title="Unsupported media type"
):
    def __init__(self, detail: str, *, method: str) -> None:
        super().__init__(detail, accepted=list(JSON_MEDIA_TYPES))
        self.method = method

    def headers(self) -> dict[str, str] | None:
        # RFC 9110 15.5.16: say which media types the resource accepts for this method.
        if self.method == "PATCH":
            return {"Accept-Patch": ", ".join(JSON_MEDIA_TYPES)}
        if self.method == "POST":
            return {"Accept-Post": ", ".join(JSON_MEDIA_TYPES)}
        return None


def is_json(content_type: str) -> bool:
    """`application/json` or any `application/*+json`, parameters (charset) allowed: the media
    types FastAPI itself parses as JSON."""
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def takes_json_body(route: APIRoute) -> bool:
    field = route.body_field
    return field is not None and not isinstance(field.field_info, params.Form)


async def require_json_content_type(request: Request) -> None:
    """App-wide dependency: 415 for a non-empty JSON body sent without a JSON Content-Type."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not is_checked(route) or not takes_json_body(route):
        return
    content_type = request.headers.get("content-type")
    if content_type and is_json(content_type):
        return
    if not await request.body():  # FastAPI has read (and cached) it already
        return
    start_draft_for_route(request)
    sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    raise UnsupportedJsonMediaTypeError(
        f"The body was sent with {sent}; send it as {' or '.join(JSON_MEDIA_TYPES)}.",
        method=request.method,
    )
