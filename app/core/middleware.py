"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request on the hot path)."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.audit.context import draft_of, record_unwritten
from app.core.errors import (
    JsonLimitError,
    PayloadTooLargeError,
    database_unavailable_response,
    internal_error_response,
    is_database_unavailable,
    problem_response,
)
from app.core.json_guard import JsonLimits, check_json
from app.core.security_headers import API_POLICY, html_policy

log = logging.getLogger("app.middleware")
access_log = logging.getLogger("app.access")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RAW = REQUEST_ID_HEADER.encode()
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


STREAMED_PATHS = frozenset({"/api/v1/panel-batches"})


class RequestContextMiddleware:
    """Request id (echoed or generated), security headers, and the request body size limit.

    The limit applies to the declared Content-Length (refused before the app runs) and to the
    bytes actually received, so a chunked body without a length cannot exceed it either.

    Unhandled exceptions are rendered here as a 500 problem: Starlette's own fallback sits
    outside every middleware, so its 500 would leave without the request id and the security
    headers.
    """

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, json_limits: JsonLimits | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.json_limits = json_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        # A panel batch streams any number of lines and caps each one itself (app.batches).
        limit = sys.maxsize if scope.get("path") in STREAMED_PATHS else self.max_body_bytes
        response_started = False
        started = time.perf_counter()
        html_start: list[Message] = []
        html_body: list[bytes] = []

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
                # The raw list, read once: ASGI header names are lowercase bytes.
                headers = message["headers"] = list(message.get("headers", ()))
                present = {name for name, _ in headers}
                content_type = next((v for name, v in headers if name == b"content-type"), b"")
                html = content_type.startswith(b"text/html")
                headers.append((_REQUEST_ID_RAW, request_id.encode("latin-1")))
                headers.extend(header for header in _SECURITY_HEADERS if header[0] not in present)
                if html:
                    # The page's policy names its inline scripts and styles: wait for the body.
                    html_start.append(message)
                    return
                headers.append((b"content-security-policy", API_POLICY))
            elif message["type"] == "http.response.body" and html_start:
                html_body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(html_body)
                start = html_start.pop()
                start["headers"].append(
                    (b"content-security-policy", html_policy(scope.get("path", ""), body))
                )
                start["headers"].append((b"x-frame-options", b"DENY"))
                await send(start)
                message = {"type": "http.response.body", "body": body, "more_body": False}
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

        app_receive: Receive = receive_limited
        if self.json_limits is not None and _declares_json(scope):
            app_receive = _checked_json(receive_limited, self.json_limits)

        try:
            await self.app(scope, app_receive, send_with_headers)
        except Exception as exc:
            if response_started:  # too late for a problem response; the server drops the stream
                raise
            if is_database_unavailable(exc):
                log.warning("database unavailable on %s %s", scope.get("method"), scope.get("path"))
                response = database_unavailable_response(scope.get("path"))
            else:
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                response = internal_error_response(scope.get("path"))
            await response(scope, receive, send_with_headers)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Bodies this large are checked in a worker thread: the scan is linear but not free.
_OFFLOAD_CHECK_BYTES = 64 * 1024


def _declares_json(scope: Scope) -> bool:
    """A body FastAPI (or a FHIR route) will parse as JSON: application/json, any
    application/*+json, or no content type at all."""
    if scope.get("method") not in _BODY_METHODS:
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return True


def _checked_json(receive: Receive, limits: JsonLimits) -> Receive:
    """The body as one message, checked against ``limits`` when the app first reads it and
    before anything parses it: a number or nesting bomb costs one linear scan, not the
    parser's memory or recursion."""
    checked = False

    async def receive_checked() -> Message:
        nonlocal checked
        if checked:
            return await receive()
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        checked = True
        body = b"".join(chunks)
        if len(body) >= _OFFLOAD_CHECK_BYTES:
            violation = await asyncio.to_thread(check_json, body, limits)
        else:
            violation = check_json(body, limits)
        if violation is not None:
            raise JsonLimitError.of(violation)
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_checked


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
