"""The HTTP side every set's routes share: the router and its audited import and activate
routes, ETags, the list page, an idempotent import, activation with If-Match."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.types import DecoratedCallable
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.context import audit_target, audited
from app.auth.deps import AUTH_RESPONSES
from app.auth.principal import Principal
from app.core.deps import AuditedSession
from app.idempotency.deps import IDEMPOTENCY_RESPONSES
from app.idempotency.http import Idem, Idempotency
from app.kit.concurrency import activation_etag, require_if_match
from app.kit.listing import Listing, ListQuery, by_creation
from app.kit.pagination import PageT
from app.kit.problems import PROBLEM_RESPONSES, problem_doc
from app.kit.versioned_sets.model import VersionedSet
from app.kit.versioned_sets.repository import VersionedSetRepository
from app.kit.versioned_sets.service import SetLifecycle

S = TypeVar("S", bound=VersionedSet)
S_co = TypeVar("S_co", bound=VersionedSet, covariant=True)
D = TypeVar("D")
D_contra = TypeVar("D_contra", contravariant=True)
M = TypeVar("M", bound=BaseModel)


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


class SetRoutes:
    """One kind of set's HTTP names, said once: its router (`prefix`, OpenAPI `tag`), its ETag
    `kind`, the audit `resource_type` of its import and activate routes, and the `noun` their
    conflicts name ("set", "rule set")."""

    def __init__(self, prefix: str, tag: str, *, kind: str, resource_type: str, noun: str) -> None:
        self.router = set_router(prefix, tag)
        self.prefix, self.kind, self.resource_type, self.noun = prefix, kind, resource_type, noun

    def etag(self, item: Activatable) -> str:
        return set_etag(self.kind, item)

    def import_route(
        self, body: dict[str, Any], *, summary: str, response_model: type[Any]
    ) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """`POST ""`: 201 with the stored set, audited as `create`; `body` is the OpenAPI
        request body, whose media types are the ones the 415 names."""
        return self.router.post(
            "",
            status_code=201,
            summary=summary,
            response_model=response_model,
            openapi_extra=body,
            responses=import_responses(_accepted(body)),
            dependencies=[Depends(audited("create", self.resource_type))],
        )

    def activate_route(
        self, path: str, *, summary: str, response_model: type[Any]
    ) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """`POST {path}` (`/{..._id}/activate`), audited as `activate`."""
        return self.router.post(
            path,
            summary=summary,
            response_model=response_model,
            responses=activate_responses(self.noun),
            dependencies=[Depends(audited("activate", self.resource_type))],
        )


_MEDIA_TYPE_NAMES = {"application/json": "JSON", "application/yaml": "YAML", "text/csv": "CSV"}


def _accepted(body: dict[str, Any]) -> str:
    """The documented body's media types by name, in order: "JSON, YAML or CSV"."""
    *first, last = [_MEDIA_TYPE_NAMES[media] for media in body["requestBody"]["content"]]
    return f"{', '.join(first)} or {last}" if first else last


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

    async def sets_page(
        self,
        session: AsyncSession,
        repository: VersionedSetRepository[S],
        principal: Principal,
        model: type[PageT],
    ) -> PageT:
        """One newest-first page of the principal's organization's sets as `model` (its items
        read from each set's attributes), `Link` header set."""
        rows = await repository.list(
            session, organization_id=principal.organization_id, **self.fetch
        )
        return self.page(model, rows, by_creation)


def _list_request(query: Listing) -> ListRequest:
    return ListRequest(query.request, query.response, query.limit, query.cursor)


SetList = Annotated[ListRequest, Depends(_list_request)]
"""Inject into a list route as `listing: SetList`: the `limit` and `cursor` query parameters."""


class Importer(Protocol[D_contra, S_co]):
    """A set service's `import_document`: check, version and store (and maybe activate)."""

    async def __call__(
        self,
        session: AsyncSession,
        *,
        organization_id: uuid.UUID,
        document: D_contra,
        activate: bool,
    ) -> S_co: ...


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """An import route's request (the body, the audit target), its session and its
    Idempotency-Key."""

    request: Request
    session: AsyncSession
    idem: Idempotency

    async def created(
        self,
        routes: SetRoutes,
        principal: Principal,
        read: Callable[[Request], Awaitable[D]],
        store: Importer[D, S],
        shown: Callable[[AsyncSession, S], Awaitable[M]],
        *,
        activate: bool,
    ) -> Response:
        """201 with `shown(stored set)`, its `Location` and `ETag`, under the Idempotency-Key:
        the body is `read`, then `store`d for the principal's organization, the new set named
        as the audit target (action `activate` when `activate`)."""
        request, session = self.request, self.session
        stored: list[S] = []  # the set this request stored, for its Location and ETag

        async def produce() -> M:
            document = await read(request)
            item = await store(
                session,
                organization_id=principal.organization_id,
                document=document,
                activate=activate,
            )
            stored.append(item)
            audit_target(request, resource_id=item.id, action="activate" if activate else None)
            return await shown(session, item)

        return await self.idem.created(
            produce,
            location=lambda _: f"{routes.prefix}/{stored[0].id}",
            etag=lambda _: routes.etag(stored[0]),
        )


def _import_request(request: Request, session: AuditedSession, idem: Idem) -> ImportRequest:
    return ImportRequest(request, session, idem)


SetImport = Annotated[ImportRequest, Depends(_import_request)]
"""Inject into an import route as `importing: SetImport`."""


@dataclass(frozen=True, slots=True)
class ActivationRequest:
    """An activate route's request (for If-Match and the audit target), response (for the
    new ETag) and session."""

    request: Request
    response: Response
    session: AsyncSession

    async def run(
        self,
        lifecycle: SetLifecycle[S],
        principal: Principal,
        set_id: uuid.UUID,
        *,
        etag: Callable[[Activatable], str],
    ) -> S:
        """404, 428 without If-Match, 412 when it names an older state (checked before
        anything is written, and again on the locked row, so of concurrent activations with
        one ETag exactly one wins); the new ETag is set on the response."""
        request, session = self.request, self.session
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


def _activation_request(
    request: Request, response: Response, session: AuditedSession
) -> ActivationRequest:
    return ActivationRequest(request, response, session)


SetActivation = Annotated[ActivationRequest, Depends(_activation_request)]
"""Inject into an activate route as `activation: SetActivation`."""
