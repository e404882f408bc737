"""Refused inputs: list, read, re-process and discard what the interfaces refused."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Response
from pydantic import BaseModel, Field

from app.audit.context import audit_target, audited
from app.kit.listing import OrganizationListing
from app.kit.pagination import Page
from app.kit.problems import problem_doc
from app.kit.routing import api_router
from app.models.refused_input import RefusedInput
from app.refused_inputs import repository, service
from app.refused_inputs.deps import CanManageRefused, RefusedTarget

Channel = Literal["hl7-http", "hl7-mllp", "fhir", "json"]
Status = Literal["refused", "reprocessed", "discarded"]

router = api_router("refused inputs", "/api/v1/refused-inputs")


class RefusedInputOut(BaseModel):
    id: uuid.UUID
    channel: Channel = Field(description="Where it arrived.")
    content_type: str
    status: Status
    reason: str = Field(description="Why it was refused (ERR / OperationOutcome / problem text).")
    response_status: int = Field(description="The HTTP status of the refusal (HL7: 200 + AE/AR).")
    details: dict[str, Any] = Field(
        description="HL7: `ack_code`; FHIR batch: `failed_entries` (entry indexes); a line of "
        "a panel batch (`POST /api/v1/panel-batches`): `batch_id` and `line` (1-based)."
    )
    principal_id: str | None = Field(description="The credential that sent it.")
    sending_application: str | None = Field(description="HL7 MSH-3.")
    sending_facility: str | None = Field(description="HL7 MSH-4.")
    control_id: str | None = Field(description="HL7 MSH-10.")
    attempts: int = Field(description="Times it was refused (resends and re-processing).")
    received_at: datetime
    last_refused_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    result: dict[str, Any] = Field(description="What re-processing stored (panel ids, ...).")


class RefusedInputDetail(RefusedInputOut):
    payload: str = Field(description="The raw body as received (UTF-8; invalid bytes replaced).")


class RefusedInputPage(Page[RefusedInputOut]):
    pass


def _out(row: RefusedInput) -> RefusedInputOut:
    return RefusedInputOut.model_validate(row, from_attributes=True)


@router.get(
    "", summary="List refused inputs", dependencies=[Depends(audited("search", "refused_input"))]
)
async def list_refused_inputs(
    principal: CanManageRefused,
    query: OrganizationListing,
    channel: Annotated[Channel | None, Query(description="Only this channel.")] = None,
    status: Annotated[Status | None, Query(description="Only this status.")] = None,
) -> RefusedInputPage:
    """Your organization's refused inputs, newest first (without payloads): every HL7 v2
    message answered `AE` / `AR` (HTTP and MLLP), every FHIR Bundle answered 4xx (or a batch
    with failed entries), every `POST /api/v1/panels` answered 4xx. PHI: for the `admin` and
    `integration` roles only, audited; kept `MINERAL_REFUSED_INPUT_RETENTION_DAYS` days."""
    rows = await repository.page(
        query.session,
        organization_id=query.organization_id,
        channel=channel,
        status=status,
        **query.fetch,
    )
    return query.page(RefusedInputPage, rows, lambda r: (r.received_at, r.id), _out)


@router.get(
    "/{refused_id}",
    summary="Read a refused input with its payload",
    dependencies=[Depends(audited("read", "refused_input"))],
)
async def get_refused_input(target: RefusedTarget) -> RefusedInputDetail:
    """The refused input with its raw payload, reason and sender."""
    row = await service.get(target.session, **target.key)
    return RefusedInputDetail(
        **_out(row).model_dump(), payload=row.payload.decode("utf-8", "replace")
    )


@router.post(
    "/{refused_id}/reprocess",
    summary="Re-process a refused input",
    response_class=Response,
    responses={
        200: {
            "description": "The channel's own answer to the input sent again: an HL7 ACK "
            "(`AA` or `AE`/`AR`), a FHIR transaction/batch-response, or the stored panel. "
            "`Refused-Input-Status` says whether it is now `reprocessed` or still `refused`."
        },
        409: problem_doc("The input is already re-processed or discarded."),
        422: problem_doc("Refused again (FHIR / JSON): the channel's refusal; still `refused`."),
    },
    dependencies=[Depends(audited("reprocess", "refused_input"))],
)
async def reprocess_refused_input(target: RefusedTarget) -> Response:
    """Runs the input again through the same ingestion as a fresh one (HL7 service, FHIR
    Bundle processing, panel ingest), with the same validation, dedupe and idempotency (an
    MSH-10, Bundle or source + accession already stored stores nothing new). Fix the cause
    first (`PUT /api/v1/code-maps/...`, a range set, the patient record). Accepted: the input
    is marked `reprocessed` with what was stored in `result`. Refused again: it stays
    `refused` with the new reason; nothing is stored and no second copy is kept."""
    row, done = await service.reprocess(
        target.session, **target.key, principal_id=target.principal.id
    )
    audit_target(
        target.request,
        patient_ids=done.patient_ids,
        status_code=done.status_code,
        outcome="success" if done.accepted else "error",
    )
    return Response(
        done.body,
        status_code=done.status_code,
        media_type=done.media_type,
        headers={"Refused-Input-Status": row.status},
    )


@router.post(
    "/{refused_id}/discard",
    summary="Discard a refused input",
    responses={409: problem_doc("The input is already re-processed or discarded.")},
    dependencies=[Depends(audited("discard", "refused_input"))],
)
async def discard_refused_input(target: RefusedTarget) -> RefusedInputOut:
    """Closes a refusal that cannot be fixed without changing the data (e.g. a unit the lab
    must correct and resend): nothing is run, the input stays readable until retention."""
    row = await service.discard(target.session, **target.key, principal_id=target.principal.id)
    return _out(row)
