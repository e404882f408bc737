from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.audit.context import audit_target, audited, draft_of
from app.audit.service import AuditEntry
from app.auth.deps import AUTH_RESPONSES, CanReadPanels, CanWritePanels
from app.auth.principal import Principal
from app.batches import service
from app.batches.schemas import BatchOut, outcome_lines
from app.core.deps import AuditedSession
from app.core.errors import AppError
from app.kit.problems import PROBLEM_RESPONSES, problem_doc
from app.panels.schemas import PANEL_EXAMPLE

router = APIRouter(tags=["panel batches"], responses={**PROBLEM_RESPONSES, **AUTH_RESPONSES})

NDJSON = "application/x-ndjson"


class UnsupportedBatchTypeError(AppError):
    status = 415
    type_slug = "unsupported-media-type"
    title = "Unsupported media type"


class _Streamed(StreamingResponse):
    """Streams without Starlette's disconnect listener, which would consume the request body
    this response is still reading line by line."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)


def _base_entry(request: Request, principal: Principal) -> AuditEntry:
    client = request.client
    return AuditEntry(
        organization_id=principal.organization_id,
        principal_id=principal.id,
        principal_kind=principal.kind,
        role=str(principal.role),
        action="create",
        resource_type="panel",
        outcome="success",
        status_code=200,
        method=request.method,
        path=request.url.path,
        request_id=request.scope.get("state", {}).get("request_id"),
        client_address=client.host if client else None,
    )


# Two panels, one per line, each in the shape POST /api/v1/panels accepts.
_NDJSON_EXAMPLE = "".join(
    orjson.dumps(PANEL_EXAMPLE | {"accession": accession}).decode() + "\n"
    for accession in ("ACC-2026-000123", "ACC-2026-000124")
)


@router.post(
    "/api/v1/panel-batches",
    summary="Post many panels as NDJSON",
    response_class=Response,
    responses={
        200: {
            "description": "One JSON outcome per line (`line`, `outcome`: stored / unchanged / "
            "refused, `status`, `panel_id`, `problem`), then a last line with the batch.",
            "content": {NDJSON: {}},
        },
        415: problem_doc("The body is not `application/x-ndjson`."),
    },
    # Refusals before the batch starts (401, 403, 415) get their audit row from the
    # middleware, as the single POST's do; once started, the batch writes its own rows.
    dependencies=[Depends(audited("create", "panel-batch"))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {NDJSON: {"schema": {"type": "string"}, "example": _NDJSON_EXAMPLE}},
        }
    },
)
async def post_panel_batch(request: Request, principal: CanWritePanels) -> Response:
    """Ingests one panel per line, each in the shape `POST /api/v1/panels` accepts, with the
    same units, interpretation, criticals, dedupe and corrections. A refused line carries the
    problem the single POST answers for the same body (JSON limits and field errors included).
    A stored or unchanged line carries `has_critical` and `has_possible_critical` (a value
    such as `<0.5` that may be critical); the batch counts both (`critical`,
    `possibly_critical`).

    Streamed in and out: outcomes are answered a chunk (500 lines or 8 MiB) at a time, after
    that chunk committed; a refused line never stops the others. Each line is at most the service's
    body limit. **Safe to re-send**: an interrupted batch sent again answers `unchanged` for
    what was stored. The batch's counts are readable under `GET /api/v1/panel-batches/{id}`
    while it runs (its id is the `Location` header)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != NDJSON:
        raise UnsupportedBatchTypeError(f"Send the panels as {NDJSON}, one JSON object a line.")
    settings = request.app.state.settings
    sessionmaker = request.app.state.sessionmaker
    base = _base_entry(request, principal)
    batch = await service.start(sessionmaker, base)
    draft = draft_of(request.state)
    if draft is not None:
        draft.written = True  # start() committed the batch's own row, in its transaction
    chunks = service.run_ndjson_chunks(
        sessionmaker, batch_id=batch.id, base=base, chunks=request.stream(), settings=settings
    )

    async def body() -> AsyncIterator[bytes]:
        # One write per committed chunk, not per line: each write is a trip through the
        # middleware and the server's send.
        async with contextlib.aclosing(chunks):
            async for outcomes in chunks:
                yield outcome_lines(outcomes)
        async with sessionmaker() as session:
            final = await service.get(
                session, organization_id=principal.organization_id, batch_id=batch.id
            )
        yield b'{"batch":' + final.model_dump_json().encode() + b"}\n"

    return _Streamed(
        body(),
        media_type=NDJSON,
        headers={"Location": f"/api/v1/panel-batches/{batch.id}"},
    )


@router.get(
    "/api/v1/panel-batches/{batch_id}",
    summary="A panel batch's progress",
    response_model=BatchOut,
    dependencies=[Depends(audited("read", "panel-batch"))],
)
async def get_panel_batch(
    batch_id: uuid.UUID, request: Request, session: AuditedSession, principal: CanReadPanels
) -> BatchOut:
    """Counts of the lines committed so far (stored, unchanged, refused) and whether the batch
    is still running, completed, or failed (cut off: re-send it)."""
    audit_target(request, resource_id=batch_id)
    return await service.get(session, organization_id=principal.organization_id, batch_id=batch_id)
