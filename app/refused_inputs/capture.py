"""Keeps refused FHIR Bundles and JSON panels: a pure ASGI middleware around the app.

For ``POST /fhir/R4`` and ``POST /api/v1/panels`` it keeps the request body as the app reads it
and, when the answer is a refusal, writes it to the refused-input store in a short transaction
of its own *before* the answer leaves (the request's transaction has rolled back by then), so
the refusal is listed as soon as the sender sees it. Kept: 4xx answers of an authenticated
caller, and a batch Bundle answered 200 with failed entries (named in ``details``). Not kept:
401 / 403 (no trusted sender), 413 (nothing read), 415 and other protocol-level answers
(405, 406, 429), an Idempotency-Key still in flight. A failure to keep it is logged and never
changes the answer.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.refused_inputs import service

CHANNELS = {"/fhir/R4": "fhir", "/fhir/R4/": "fhir", "/api/v1/panels": "json"}
_NOT_KEPT = frozenset({401, 403, 405, 406, 408, 413, 415, 429})


class RefusedInputCapture:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        channel = CHANNELS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if channel is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []
        held: list[Message] = []
        chunks: list[bytes] = []

        async def capturing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def capturing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if _worth_holding(channel, message["status"]):
                    held.append(message)
                    return
            elif message["type"] == "http.response.body" and held:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start = held.pop()
                answer = b"".join(chunks)
                await _keep(scope, channel, start, b"".join(body), answer)
                await send(start)
                await send({"type": "http.response.body", "body": answer, "more_body": False})
                return
            await send(message)

        await self.app(scope, capturing_receive, capturing_send)


def _worth_holding(channel: str, status: int) -> bool:
    if 400 <= status < 500:
        return status not in _NOT_KEPT
    return channel == "fhir" and status == 200  # a batch-response may hold failed entries


def _header(start: Message, name: bytes) -> str:
    for key, value in start.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def _request_header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _keep(scope: Scope, channel: str, start: Message, payload: bytes, answer: bytes) -> None:
    state: Any = scope.get("state") or {}
    principal = state.get("principal") if isinstance(state, dict) else None
    if principal is None:
        return  # no trusted organization to keep it for
    status = int(start["status"])
    media_type = _header(start, b"content-type").split(";")[0].strip()
    details: dict[str, Any] = {}
    if status == 200:
        failed = service.failed_entries(answer)
        if not failed:
            return
        details["failed_entries"] = failed
    elif status == 409 and b"idempotency-key-in-flight" in answer:
        return
    app = scope["app"]
    await service.record_separately(
        app.state.sessionmaker,
        service.Refusal(
            organization_id=principal.organization_id,
            channel=channel,
            content_type=_request_header(scope, b"content-type") or "application/json",
            payload=payload,
            reason=service.reason_from_body(answer, media_type) or f"answered {status}",
            response_status=status,
            principal_id=principal.id,
            details=details,
        ),
        retention_days=app.state.settings.refused_input_retention_days,
    )
