"""The three ways an Idempotency-Key is refused, rendered as problem+json by app.core.errors."""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError, ConflictError, UnprocessableError


class InvalidIdempotencyKeyError(
    AppError, status=400, slug="invalid-idempotency-key", title="Invalid Idempotency-Key"
): ...


class IdempotencyKeyReusedError(
    UnprocessableError,
    slug="idempotency-key-reused",
    title="Idempotency-Key reused with a different request",
):
    """The key was first used with another request (method, path or body)."""


class IdempotencyKeyInFlightError(
    ConflictError,
    slug="idempotency-key-in-flight",
    title="A request with this Idempotency-Key is in progress",
):
    """The first request with this key is still running; retry it later."""

    def __init__(self, detail: str, *, retry_after_seconds: int = 1, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after_seconds = retry_after_seconds

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_seconds)}
