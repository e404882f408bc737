"""FHIR responses and errors: every 4xx/5xx under /fhir/R4 leaves as an OperationOutcome.

The translation is per route (``FhirRoute``), not global: the route swaps the app's
problem+json exception handlers for the ones below, so the native API is untouched while
authentication (401/403, with their WWW-Authenticate challenge), validation and service
errors raised anywhere in a FHIR request (dependencies included) become OperationOutcomes.
The exception still unwinds through the request's session dependency first, so the
transaction rolls back exactly as it does for the native API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.resource import Resource
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.core.errors import DATABASE_RETRY_AFTER_SECONDS, AppError, is_database_unavailable

log = logging.getLogger("app.interop.fhir")

FHIR_JSON = "application/fhir+json"

# HTTP status -> OperationOutcome.issue.code (http://hl7.org/fhir/issue-type).
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "multiple-matches",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    428: "required",
    429: "throttled",
    503: "transient",
}
# PostgreSQL: NUL in text (22021, 22P05); lock timeout, deadlock, serialization failure.
_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})
_RETRYABLE = frozenset({"55P03", "40P01", "40001"})


@dataclass(frozen=True)
class Issue:
    diagnostics: str
    code: str = "processing"
    severity: str = "error"
    expression: tuple[str, ...] = ()


class FhirError(
    AppError, status=422, slug="fhir-processing", title="The FHIR content cannot be processed"
):
    """An error whose OperationOutcome issues are already known (with FHIRPath expressions)."""

    def __init__(self, status: int, issues: Sequence[Issue]) -> None:
        super().__init__(issues[0].diagnostics if issues else self.title)
        self.status = status
        self.issues = tuple(issues)


def issue_code(status: int) -> str:
    return _ISSUE_CODES.get(status, "exception" if status >= 500 else "processing")


def operation_outcome(issues: Sequence[Issue]) -> OperationOutcome:
    return OperationOutcome.model_validate(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": issue.severity,
                    "code": issue.code,
                    "diagnostics": issue.diagnostics,
                    **({"expression": list(issue.expression)} if issue.expression else {}),
                }
                for issue in issues
            ],
        }
    )


def fhir_response(
    resource: Resource, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        resource.model_dump_json(), status_code=status, media_type=FHIR_JSON, headers=headers
    )


def issues_for_app_error(exc: AppError) -> list[Issue]:
    """An AppError's issues: its per-field ``errors`` (one issue each) or its detail."""
    if isinstance(exc, FhirError):
        return list(exc.issues)
    code = issue_code(exc.status)
    errors = exc.extensions.get("errors")
    if isinstance(errors, list) and errors:
        return [
            Issue(
                diagnostics=str(error.get("message", exc.detail)),
                code=code,
                expression=(str(error["field"]),) if error.get("field") else (),
            )
            for error in errors
            if isinstance(error, dict)
        ]
    return [Issue(diagnostics=exc.detail, code=code)]


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def outcome_of(exc: Exception) -> tuple[int, list[Issue], dict[str, str] | None]:
    """HTTP status, issues and headers for any exception raised in a FHIR request."""
    if isinstance(exc, AppError):
        return exc.status, issues_for_app_error(exc), exc.headers()
    if isinstance(exc, RequestValidationError):
        # Query parameters and path ids: FHIR calls a malformed request 400, never 422.
        return (
            400,
            [
                Issue(
                    diagnostics=f"{_location(err.get('loc', ()))}: {err.get('msg', '')}",
                    code="invalid",
                )
                for err in exc.errors()
            ],
            None,
        )
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        return exc.status_code, [Issue(diagnostics=detail, code=issue_code(exc.status_code))], None
    if is_database_unavailable(exc):
        log.warning("database unavailable in a FHIR request: %s", type(exc).__name__)
        text = "The database is unreachable or restarting. Retry after the delay; a Bundle "
        text += "retried unchanged is stored at most once (conditional create and dedupe)."
        retry = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
        return 503, [Issue(diagnostics=text, code="transient")], retry
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate in _UNSTORABLE_TEXT:
            text = "A text value contains a NUL (\\u0000) character, which cannot be stored."
            return 422, [Issue(diagnostics=text, code="invalid")], None
        if sqlstate in _RETRYABLE:
            text = "A concurrent request holds this record; nothing was written. Retry."
            return 409, [Issue(diagnostics=text, code="transient")], {"Retry-After": "1"}
    log.error("unhandled error in a FHIR request", exc_info=exc)
    text = "The server could not complete the request; it has been logged."
    return 500, [Issue(diagnostics=text, code="exception", severity="fatal")], None


async def _render(request: Request, exc: Exception) -> Response:
    status, issues, headers = outcome_of(exc)
    return fhir_response(operation_outcome(issues), status, headers)


_HANDLERS: dict[Any, Callable[..., Any]] = {Exception: _render}


class FhirRoute(APIRoute):
    """An APIRoute whose errors are rendered as OperationOutcome instead of problem+json."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["starlette.exception_handlers"] = (_HANDLERS, {})
        await super().handle(scope, receive, send)


@dataclass
class Outcomes:
    """Issues collected while mapping one resource, raised together."""

    issues: list[Issue] = field(default_factory=list)

    def add(self, diagnostics: str, *expression: str, code: str = "invalid") -> None:
        self.issues.append(Issue(diagnostics=diagnostics, code=code, expression=expression))

    def raise_if_any(self, status: int = 422) -> None:
        if self.issues:
            raise FhirError(status, self.issues)
