"""Strict query strings: a parameter a route does not declare is refused, never ignored.

An ignored typo is dangerous here: `GET /api/v1/patients?identifer=MRN-1` would list every
patient, and a find-by-MRN screen would show the wrong one. One app-wide dependency compares
the request's query parameter names with those the matched route declares (its own and its
dependencies'), and answers **400** `unknown-query-parameter` naming both.

Query errors come in three classes, each with one status and problem type:

* `unknown-query-parameter` (400): a parameter the route does not declare;
* `validation-error` (422): a declared parameter whose value breaks its declared type or
  constraint (`limit=0`, `birth_date=yesterday`); `errors` names each `query.<name>`;
* `invalid-query` (400): well-typed values that cannot be used (an identifier without a
  `system|`, `from` after `to`, an analyte or unit that does not exist);
  `invalid-cursor` (400) is its pagination sibling.

The FHIR facade (`/fhir/R4`) is excluded: FHIR search has its own rules for unknown
parameters (`handling=strict|lenient`), applied by the facade itself. So are routes outside
the documented API (docs pages, operations endpoints).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.audit.context import start_draft_for_route
from app.core.errors import AppError

EXCLUDED_PREFIXES = ("/fhir/",)


class UnknownQueryParameterError(
    AppError, status=400, slug="unknown-query-parameter", title="Unknown query parameter"
): ...


class InvalidQueryError(
    AppError, status=400, slug="invalid-query", title="Invalid query parameter"
):
    """Declared query parameters whose values are well-typed but cannot be used together or
    do not name anything (subclass it; do not use 422 for query problems)."""


_CACHE_ATTRIBUTE = "_accepted_query_parameters"


def accepted_query_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameter names a route declares, through its whole dependency tree
    (computed once per route)."""
    cached: frozenset[str] | None = getattr(route, _CACHE_ATTRIBUTE, None)
    if cached is None:
        cached = frozenset(_query_names(route.dependant))
        setattr(route, _CACHE_ATTRIBUTE, cached)
    return cached


def _query_names(dependant: Dependant) -> set[str]:
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        for field in current.query_params:
            annotation = field.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                # A query-parameter model: its fields are the parameters.
                names.update(info.alias or name for name, info in annotation.model_fields.items())
            else:
                names.add(field.alias)
        pending.extend(current.dependencies)
    return names


def is_checked(route: APIRoute) -> bool:
    return route.include_in_schema and not route.path.startswith(EXCLUDED_PREFIXES)


async def reject_unknown_query_parameters(request: Request) -> None:
    """App-wide dependency: 400 when the query string names a parameter the route does not
    declare."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not is_checked(route):
        return
    accepted = accepted_query_parameters(route)
    unknown = sorted({name for name in request.query_params if name not in accepted})
    if not unknown:
        return
    # Refused before the route's own dependencies ran: still write its one audit row.
    start_draft_for_route(request)
    listed = ", ".join(sorted(accepted)) if accepted else "none"
    raise UnknownQueryParameterError(
        f"Unknown query parameter(s): {', '.join(unknown)}. This endpoint accepts: {listed}.",
        unknown=unknown,
        accepted=sorted(accepted),
        errors=[
            {
                "field": f"query.{name}",
                "message": "not a parameter of this endpoint",
                "code": "unknown_parameter",
            }
            for name in unknown
        ],
    )
