"""401 and 403, rendered as problem+json by the handler in app.core.errors."""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError

REALM = "mineral-labs"


class UnauthorizedError(AppError, status=401, slug="unauthorized", title="Authentication required"):
    """No credentials, or credentials that are unknown, malformed, revoked or expired.

    The detail never says which of these it was for a presented credential: a caller probing
    keys learns nothing from the answer. The reason is logged (without the credential).
    """

    def __init__(self, detail: str, *, invalid_token: bool = False, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.invalid_token = invalid_token

    def headers(self) -> dict[str, str] | None:
        # RFC 9110 requires a challenge on every 401; RFC 6750 adds error="invalid_token" when a
        # credential was presented but refused.
        challenge = f'Bearer realm="{REALM}"'
        if self.invalid_token:
            challenge += ', error="invalid_token"'
        return {"WWW-Authenticate": challenge}


class ForbiddenError(AppError, status=403, slug="forbidden", title="Forbidden"):
    """Authenticated, but the role does not grant the operation."""
