"""The HTTP side every set's routes share: ETags, the list page, activation with If-Match."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.types import DecoratedCallable
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.context import audit_target, audited
from app.auth.deps import AUTH_RESPONSES
from app.auth.principal import Principal
from app.idempotency.deps import IDEMPOTENCY_RESPONSES
from app.kit.concurrency import activation_etag, require_if_match
from app.kit.listing import Listing, ListQuery, by_creation
from app.kit.pagination import Keyset
from app.kit.problems import PROBLEM_RESPONSES, problem_doc
from app.kit.versioned_sets.model import VersionedSet
from app.kit.versioned_sets.repository import VersionedSetRepository
from app.kit.versioned_sets.service import SetLifecycle

S = TypeVar("S", bound=VersionedSet)


class Activatable(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def activated_at(self) -> datetime | None: ...


def set_etag(kind: str, item: Activatable) -> str:
    """Changes when the set is activated or retired (a stored set changes in no other way)."""
    return activation_etag(kind, item.id, item.status, item.activated_at)


def set_router(prefix: str, tag: str) -> APIRouter:
    """The router of one kind of set, documenting the problems every route may answer."""
    return APIRouter(prefix=prefix, tags=[tag], responses={**PROBLEM_RESPONSES, **AUTH_RESPONSES})


def import_route(
    router: APIRouter,
    *,
    summary: str,
    response_model: type[Any],
    body: dict[str, Any],
    accepted: str,
    resource_type: str,
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """`POST ""`: 201 with the stored set, audited as `create` of `resource_type`."""
    return router.post(
        "",
        status_code=201,
        summary=summary,
        response_model=response_model,
        openapi_extra=body,
        responses=import_responses(accepted),
        dependencies=[Depends(audited("create", resource_type))],
    )


def activate_route(
    router: APIRouter,
    path: str,
    *,
    summary: str,
    response_model: type[Any],
    noun: str,
    resource_type: str,
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """`POST {path}` (`/{..._id}/activate`), audited as `activate` of `resource_type`."""
    return router.post(
        path,
        summary=summary,
        response_model=response_model,
        responses=activate_responses(noun),
        dependencies=[Depends(audited("activate", resource_type))],
    )


def import_responses(accepted: str) -> dict[int | str, dict[str, Any]]:
    """The documented refusals of an import route (`accepted`: "JSON, YAML or CSV")."""
    return {
        **IDEMPOTENCY_RESPONSES,
        409: problem_doc(
            "A concurrent import or activation won, or a request with this Idempotency-Key is "
            "still in progress."
        ),
        415: problem_doc(f"The body is not {accepted}."),
    }


def activate_responses(noun: str) -> dict[int | str, dict[str, Any]]:
    """The documented refusals of an activate route (`noun`: "set", "rule set")."""
    return {
        409: problem_doc(f"Another {noun} was activated at the same time."),
        412: problem_doc("The set changed since your If-Match ETag was read."),
        428: problem_doc("If-Match is missing."),
    }


@dataclass(frozen=True, slots=True)
class ListRequest(ListQuery):
    """A set list route's page size and cursor."""

    async def sets(
        self, session: AsyncSession, repository: VersionedSetRepository[S], principal: Principal
    ) -> Keyset[S]:
        """One newest-first page of the principal's organization's sets, `Link` header set."""
        rows = await repository.list(
            session, organization_id=principal.organization_id, **self.fetch
        )
        return self.keyset(rows, by_creation)


def _list_request(query: Listing) -> ListRequest:
    return ListRequest(query.request, query.response, query.limit, query.cursor)


SetList = Annotated[ListRequest, Depends(_list_request)]
"""Inject into a list route as `listing: SetList`: the `limit` and `cursor` query parameters."""


@dataclass(frozen=True, slots=True)
class ActivationRequest:
    """An activate route's request (for If-Match and the audit target) and response (for the
    new ETag)."""

    request: Request
    response: Response

    async def run(
        self,
        session: AsyncSession,
        lifecycle: SetLifecycle[S],
        principal: Principal,
        set_id: uuid.UUID,
        *,
        etag: Callable[[Activatable], str],
    ) -> S:
        """404, 428 without If-Match, 412 when it names an older state (checked before
        anything is written, and again on the locked row, so of concurrent activations with
        one ETag exactly one wins); the new ETag is set on the response."""
        request = self.request
        audit_target(request, resource_id=set_id)
        organization_id = principal.organization_id
        current = await lifecycle.get_or_raise(
            session, organization_id=organization_id, set_id=set_id
        )
        require_if_match(request, etag(current))
        activated = await lifecycle.activate(
            session,
            organization_id=organization_id,
            set_id=set_id,
            precondition=lambda locked: require_if_match(request, etag(locked)),
        )
        self.response.headers["ETag"] = etag(activated)
        return activated


def _activation_request(request: Request, response: Response) -> ActivationRequest:
    return ActivationRequest(request, response)


SetActivation = Annotated[ActivationRequest, Depends(_activation_request)]
"""Inject into an activate route as `activation: SetActivation`."""
