"""HTTP side of Idempotency-Key: the header, its OpenAPI documentation and the response."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Request, Response

from app.idempotency.service import StoredResponse
from app.kit.problems import problem_doc

REPLAYED_HEADER = "Idempotent-Replayed"

# Validated by run_idempotent (400), not here: FastAPI's own validation would answer 422.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="A unique value per operation (a UUID is ideal), 1-255 printable ASCII "
        "characters. Retrying with the same key and the same body returns the first response "
        f"again, marked `{REPLAYED_HEADER}: true`, and never creates a second record. Keys are "
        "kept for the configured retention (24 h by default).",
    ),
]

IDEMPOTENCY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc("Malformed request, or an invalid `Idempotency-Key`."),
    409: problem_doc(
        "A request with this `Idempotency-Key` is still in progress; retry after `Retry-After`."
    ),
    422: problem_doc(
        "The request failed validation, or this `Idempotency-Key` was used with another body."
    ),
}


def request_target(request: Request) -> str:
    """Path and query string: both are part of what the key promises to repeat. (Read from the
    scope for the common case: building ``request.url`` costs more than the rest of a hot
    POST's key handling; the same string as ``request.url`` gives.)"""
    path: str = request.scope["path"]
    if not request.scope.get("query_string") and "?" not in path and "#" not in path:
        return path
    query = request.url.query
    return f"{request.url.path}?{query}" if query else request.url.path


def stored_response(response: StoredResponse, *, replayed: bool) -> Response:
    headers = dict(response.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(content=response.body, status_code=response.status, headers=headers)
