"""The three ways an Idempotency-Key is refused, rendered as problem+json by app.errors."""

from __future__ import annotations

from typing import Any

from app.errors import AppError, ConflictError, UnprocessableError


class InvalidIdempotencyKeyError(AppError):
    status = 400
    type_slug = "invalid-idempotency-key"
    title = "Invalid Idempotency-Key"


class IdempotencyKeyReusedError(UnprocessableError):
    """The key was first used with another request (method, path or body)."""

    type_slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class IdempotencyKeyInFlightError(ConflictError):
    """The first request with this key is still running; retry it later."""

    type_slug = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is in progress"

    def __init__(self, detail: str, *, retry_after_seconds: int = 1, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_seconds)}
