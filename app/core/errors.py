"""One error tree, one renderer: every 4xx/5xx leaves as RFC 9457 application/problem+json."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.core.json_guard import JsonViolation

log = logging.getLogger("app.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://mineral-labs.example/problems/"


class AppError(Exception):
    """Base of every error the service raises on purpose. A subclass declares its problem in
    its class line: ``class PlanNotFound(NotFoundError, slug="plan-not-found", title="Plan
    not found")``; what it leaves out (often the status) it inherits from its base."""

    status: int = 400
    type_slug: str = "bad-request"
    title: str = "Bad request"

    def __init_subclass__(
        cls,
        *,
        status: int | None = None,
        slug: str | None = None,
        title: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        for attribute, value in (("status", status), ("type_slug", slug), ("title", title)):
            if value is not None:
                setattr(cls, attribute, value)

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def headers(self) -> dict[str, str] | None:
        return None


class NotFoundError(AppError, status=404, slug="not-found", title="Resource not found"): ...


class ConflictError(
    AppError, status=409, slug="conflict", title="Conflict with the stored state"
): ...


class UnprocessableError(
    AppError, status=422, slug="unprocessable", title="The content cannot be processed"
):
    """The request is well-formed JSON but clinically or semantically unacceptable."""


class PayloadTooLargeError(StarletteHTTPException):
    """Raised while the body is read, so it must be an HTTPException for FastAPI to let it pass."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"The request body exceeds {limit} bytes.")


class JsonLimitError(StarletteHTTPException):
    """The body breaks a JSON bound (number size, nesting depth; see app.core.json_guard). Raised
    while the body is read, before it is parsed, so it is an HTTPException like the 413."""

    def __init__(self, status: int, *, type_slug: str, title: str, detail: str) -> None:
        super().__init__(status_code=status, detail=detail)
        self.type_slug = type_slug
        self.title = title

    @classmethod
    def of(cls, violation: JsonViolation) -> JsonLimitError:
        """The refusal of a body (or an NDJSON line) that breaks a bound."""
        number = violation.kind == "number-out-of-range"
        return cls(
            422 if number else 400,
            type_slug="json-number-out-of-range" if number else "json-too-deep",
            title="JSON number out of range" if number else "JSON nested too deeply",
            detail=violation.message,
        )

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        detail = self.detail if isinstance(self.detail, str) else None
        return problem_body(
            self.status_code,
            title=self.title,
            detail=detail,
            type_slug=self.type_slug,
            instance=instance,
        )


class ServiceUnavailableError(
    AppError, status=503, slug="service-unavailable", title="Service unavailable"
): ...


# How long a client is told to wait before retrying when the database is unreachable.
DATABASE_RETRY_AFTER_SECONDS = 5

# SQLSTATEs that mean "the database cannot serve right now", not "this request is wrong":
# class 08 (connection exception), 57P01-57P03 (admin / crash shutdown, cannot connect now:
# a restart or failover), 57014 (query canceled: statement timeout), 53300 (too many
# connections) and 25006 (read-only transaction: a write reached a standby during failover).
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57014", "53300", "25006"})


def _sqlstate(error: BaseException | None) -> str | None:
    value = getattr(error, "sqlstate", None)
    return value if isinstance(value, str) else None


def is_database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the database is unreachable (refused, reset, restarting, failing
    over, pool or statement timeout) rather than that the request is wrong: answered 503 with
    Retry-After, never 500. Nothing was committed by the failed statement; a write whose
    COMMIT was cut off may or may not have been stored, which a retry with the same
    Idempotency-Key resolves."""
    seen = 0
    error: BaseException | None = exc
    while error is not None and seen < 5:
        if isinstance(error, PoolTimeoutError | OSError):  # OSError covers TimeoutError too
            return True
        if isinstance(error, DBAPIError):
            if error.connection_invalidated or isinstance(error, OperationalError | InterfaceError):
                return True
            sqlstate = _sqlstate(error.orig)
            if sqlstate and (sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES):
                return True
        else:
            sqlstate = _sqlstate(error)
            if sqlstate and (sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES):
                return True
            # asyncpg's own connection errors (ConnectionDoesNotExistError, ...) when raised
            # outside SQLAlchemy's translation.
            if (
                type(error).__module__.startswith("asyncpg")
                and "Connection" in type(error).__name__
            ):
                return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def database_unavailable_response(instance: str | None) -> JSONResponse:
    return problem_response(
        503,
        title="Database unavailable",
        detail="The database is unreachable or restarting; nothing was changed by this "
        "request unless it was a write whose outcome is unknown. Retry after the delay; a "
        "create retried with the same Idempotency-Key is stored at most once.",
        type_slug="database-unavailable",
        instance=instance,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def problem_body(
    status: int,
    *,
    title: str,
    detail: str | None,
    type_slug: str,
    instance: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """The RFC 9457 object every problem response carries (also one NDJSON line's problem)."""
    body: dict[str, Any] = {"type": PROBLEM_BASE + type_slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return body


def problem_response(
    status: int,
    *,
    title: str,
    detail: str | None,
    type_slug: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = problem_body(
        status, title=title, detail=detail, type_slug=type_slug, instance=instance, **extensions
    )
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def app_error_problem(exc: AppError, instance: str | None = None) -> dict[str, Any]:
    """An AppError's problem object, extensions included."""
    return problem_body(
        exc.status,
        title=exc.title,
        detail=exc.detail,
        type_slug=exc.type_slug,
        instance=instance,
        **exc.extensions,
    )


_HTTP_TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Resource not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict with the stored state"),
    412: ("precondition-failed", "Precondition failed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "The request is not valid"),
    428: ("precondition-required", "Precondition required"),
    429: ("too-many-requests", "Too many requests"),
}


def _location(loc: Sequence[int | str]) -> str:
    """('body', 'results', 0, 'unit') -> 'body.results[0].unit'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Field paths and messages only: the offending input is never echoed (it may hold PHI)."""
    return [
        {
            "field": _location(err.get("loc", ())),
            "message": err.get("msg", ""),
            "code": err.get("type"),
        }
        for err in errors
    ]


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(
        app_error_problem(exc, request.url.path),
        status_code=exc.status,
        media_type=PROBLEM_JSON,
        headers=exc.headers(),
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = _HTTP_TITLES.get(exc.status_code, ("http-error", "HTTP error"))
    if isinstance(exc, JsonLimitError):
        from app.audit.context import start_draft_for_route

        start_draft_for_route(request)  # refused before authentication: still audited
        slug, title = exc.type_slug, exc.title
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {k: v for k, v in (headers or {}).items() if k.lower() != "allow"}
        headers["allow"] = _allowed_methods(request)
    return problem_response(
        exc.status_code,
        title=title,
        detail=detail,
        type_slug=slug,
        instance=request.url.path,
        headers=headers,
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method the path answers to. Starlette's own Allow header names only the first
    route matching the path, e.g. POST alone for a path that also has a GET route."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


def validation_problem(errors: Sequence[Any], instance: str | None = None) -> dict[str, Any]:
    """The problem of a body that is not JSON (400) or fails validation (422); ``errors`` as
    FastAPI reports them (locations under ``body``)."""
    if any(err.get("type") == "json_invalid" for err in errors):
        return problem_body(
            400,
            title="Malformed JSON",
            detail="The request body is not valid JSON.",
            type_slug="malformed-json",
            instance=instance,
            errors=validation_errors(errors),
        )
    return problem_body(
        422,
        title="The request is not valid",
        detail=f"{len(errors)} field(s) failed validation; see 'errors'.",
        type_slug="validation-error",
        instance=instance,
        errors=validation_errors(errors),
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        from app.audit.context import start_draft_for_route

        start_draft_for_route(request)
    body = validation_problem(errors, request.url.path)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON)


# PostgreSQL refuses NUL characters in text (22021) and in JSON strings (22P05); SQLite stores
# them. Input that only the database rejects is still the client's error, never a 500.
_UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


# lock_not_available (lock_timeout), deadlock_detected, serialization_failure
_RETRYABLE_SQLSTATES = frozenset({"55P03", "40P01", "40001"})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if is_database_unavailable(exc):
        return await _unavailable(request, exc)
    if getattr(exc.orig, "sqlstate", None) in _UNSTORABLE_TEXT_SQLSTATES:
        return problem_response(
            422,
            title="Text cannot be stored",
            detail="A text value contains a NUL (\\u0000) character, which cannot be stored.",
            type_slug="unstorable-text",
            instance=request.url.path,
        )
    if getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        # A lock wait hit the configured bound, or the database chose this transaction as a
        # deadlock victim: nothing was written, and the same request can simply be retried.
        return problem_response(
            409,
            title="Busy: a concurrent request holds this record",
            detail="The request waited too long for a concurrent change; nothing was "
            "written. Retry it.",
            type_slug="concurrent-update",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )
    return await _unhandled(request, exc)


def internal_error_response(instance: str | None) -> JSONResponse:
    """The 500 problem: never the exception's text or a stack trace (they may hold PHI)."""
    return problem_response(
        500,
        title="Internal server error",
        detail="The server could not complete the request; it has been logged.",
        type_slug="internal-error",
        instance=instance,
    )


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_unavailable(exc):  # an OSError that is not the database's
        return await _unhandled(request, exc)
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return database_unavailable_response(request.url.path)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    if is_database_unavailable(exc):
        return await _unavailable(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return internal_error_response(request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _unavailable)
    app.add_exception_handler(OSError, _unavailable)
    app.add_exception_handler(Exception, _unhandled)
