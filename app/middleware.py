"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request on the hot path)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.audit.context import draft_of, record_unwritten
from app.errors import PayloadTooLargeError, internal_error_response, problem_response

log = logging.getLogger("app.middleware")
access_log = logging.getLogger("app.access")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


class RequestContextMiddleware:
    """Request id (echoed or generated), security headers, and the request body size limit.

    The limit applies to the declared Content-Length (refused before the app runs) and to the
    bytes actually received, so a chunked body without a length cannot exceed it either.

    Unhandled exceptions are rendered here as a 500 problem: Starlette's own fallback sits
    outside every middleware, so its 500 would leave without the request id and the security
    headers.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        limit = self.max_body_bytes
        response_started = False
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                if access_log.isEnabledFor(logging.INFO):
                    # The path only: query strings may carry identifiers; bodies never logged.
                    access_log.info(
                        "%s %s %s %.1fms request_id=%s",
                        scope.get("method"),
                        scope.get("path"),
                        message["status"],
                        (time.perf_counter() - started) * 1000,
                        request_id,
                    )
                await _audit_unwritten(scope, message["status"])
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, request_id)
                for name, value in _SECURITY_HEADERS:
                    if name.decode() not in headers:
                        headers.raw.append((name, value))
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            too_large = problem_response(
                413,
                title="Request body too large",
                detail=f"The request body exceeds {limit} bytes.",
                type_slug="payload-too-large",
                instance=scope.get("path"),
                headers={"connection": "close"},
            )
            await too_large(scope, receive, send_with_headers)
            return

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(limit)
            return message

        try:
            await self.app(scope, receive_limited, send_with_headers)
        except Exception:
            if response_started:  # too late for a problem response; the server drops the stream
                raise
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await internal_error_response(scope.get("path"))(scope, receive, send_with_headers)


async def _audit_unwritten(scope: Scope, status: int) -> None:
    """A PHI request whose transaction did not write its audit row (refused, failed) gets one
    now, before the response leaves."""
    draft = draft_of(scope.get("state") or {})
    if draft is None or draft.written:
        return
    try:
        await record_unwritten(scope, status)
    except Exception:
        draft.written = True  # one attempt: the failure is logged, the response still leaves
        log.exception(
            "audit row for %s %s could not be written", scope.get("method"), scope.get("path")
        )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
