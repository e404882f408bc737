"""Admin API for HL7 v2 code maps: a sender's local test codes → our analytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, Depends, Path, Query, Request, Response, status

from app.audit.context import audit_target, audited
from app.auth.deps import CanReadRanges, CanWriteRanges
from app.code_maps import repository, service
from app.code_maps.schemas import ENTRY_EXAMPLE, CodeMapEntryIn, CodeMapEntryOut, CodeMapPage
from app.core.deps import AuditedSession, ReadSession
from app.core.errors import NotFoundError
from app.kit.listing import Listing, by_creation
from app.kit.problems import problem_doc
from app.kit.routing import api_router

router = api_router("HL7 code maps", "/api/v1/code-maps")

# Printable ASCII, no surrounding spaces (a path segment never holds `/`).
_TOKEN = r"^[!-~](?:[ -~]*[!-~])?$"


def _token(where: Callable[..., Any], max_length: int, description: str, *examples: str) -> Any:
    """A facility or code parameter (`Path` or `Query`): 1 to `max_length` printable ASCII."""
    return where(
        min_length=1,
        max_length=max_length,
        pattern=_TOKEN,
        description=description,
        examples=list(examples),
    )


SendingFacility = Annotated[
    str,
    _token(
        Path,
        100,
        "The sending facility as in MSH-4 (first component), or `*` for any facility. Matched "
        "case-insensitively.",
        "ACME-LAB",
        "*",
    ),
]
LocalCode = Annotated[
    str,
    _token(
        Path, 50, "The sender's local test code as in OBX-3. Matched case-insensitively.", "MAGS"
    ),
]


@router.get(
    "",
    summary="List HL7 code-map entries",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {"items": [ENTRY_EXAMPLE], "limit": 50, "next_cursor": None}
                }
            }
        }
    },
)
async def list_code_maps(
    session: ReadSession,
    principal: CanReadRanges,
    sending_facility: Annotated[
        str | None,
        _token(
            Query,
            100,
            "Only the entries of this facility (`*` for the any-facility entries).",
            "ACME-LAB",
        ),
    ] = None,
    *,
    query: Listing,
) -> CodeMapPage:
    """Your organization's code-map entries, newest first.

    An HL7 v2 result coded in LOINC needs no entry. Any other `OBX-3` code is looked up, for
    the message's sending facility (`MSH-4`), in this order: an entry for that facility, an
    entry for `*` (any facility), then the service's built-in defaults (e.g. `MG` → magnesium).
    A code found nowhere is refused in the ACK (`AE`, naming the code) and nothing of that
    message is stored."""
    entries = await repository.list_entries(
        session,
        organization_id=principal.organization_id,
        sending_facility=service.normalize(sending_facility) if sending_facility else None,
        **query.fetch,
    )
    return query.page(CodeMapPage, entries, by_creation, CodeMapEntryOut.model_validate)


@router.put(
    "/{sending_facility}/{local_code}",
    summary="Map a sender's local code to an analyte",
    responses={
        200: {
            "description": "The entry was replaced.",
            "content": {"application/json": {"example": ENTRY_EXAMPLE}},
        },
        201: {
            "model": CodeMapEntryOut,
            "description": "The entry was created.",
            "content": {"application/json": {"example": ENTRY_EXAMPLE}},
        },
        422: problem_doc(
            "The body failed validation, or `analyte` is not a known analyte code (the "
            "problem's `detail` lists the known ones); nothing is stored."
        ),
    },
    dependencies=[Depends(audited("update", "code_map"))],
)
async def put_code_map(
    request: Request,
    sending_facility: SendingFacility,
    local_code: LocalCode,
    body: Annotated[
        CodeMapEntryIn,
        Body(
            openapi_examples={
                "magnesium": {
                    "summary": "ACME sends MAGS for serum magnesium",
                    "value": {"analyte": "magnesium", "note": "ACME sends MAGS"},
                }
            }
        ),
    ],
    response: Response,
    session: AuditedSession,
    principal: CanWriteRanges,
) -> CodeMapEntryOut:
    """Creates (**201**) or replaces (**200**) the mapping of one local test code for one
    sending facility (`*`: any facility) to one of our analyte codes, e.g.
    `PUT /api/v1/code-maps/ACME-LAB/MAGS` with `{"analyte": "magnesium"}`.

    From the next message on, results that facility sends as `MAGS` are stored as magnesium
    (value, unit and range conversion as for any magnesium result). Facility and code are
    stored upper-case and matched case-insensitively. Your entries take precedence over the
    built-in defaults; a facility's own entry over a `*` entry. Stored results are not
    changed. An unknown `analyte` is refused with **422** naming the known analytes."""
    entry, created = await service.put_entry(
        session,
        organization_id=principal.organization_id,
        sending_facility=sending_facility,
        local_code=local_code,
        analyte=body.analyte,
        note=body.note,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    audit_target(
        request,
        resource_id=entry.id,
        action="create" if created else None,
        status_code=response.status_code if created else None,
    )
    return CodeMapEntryOut.model_validate(entry)


@router.delete(
    "/{sending_facility}/{local_code}",
    summary="Remove a code-map entry",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        204: {"description": "The entry was removed."},
        404: problem_doc("Your organization has no entry for this facility and code."),
    },
    dependencies=[Depends(audited("delete", "code_map"))],
)
async def delete_code_map(
    request: Request,
    sending_facility: SendingFacility,
    local_code: LocalCode,
    session: AuditedSession,
    principal: CanWriteRanges,
) -> Response:
    """Removes the mapping of one local code for one sending facility (`*`: the any-facility
    entry). From the next message on, that code falls back to a `*` entry, then to the
    built-in defaults; a code mapped nowhere is refused in the ACK (`AE`). Stored results are
    not changed."""
    removed = await repository.remove(
        session,
        organization_id=principal.organization_id,
        sending_facility=service.normalize(sending_facility),
        local_code=service.normalize(local_code),
    )
    if not removed:
        raise NotFoundError("No code-map entry for this sending facility and local code.")
    audit_target(
        request,
        resource_id=f"{service.normalize(sending_facility)}/{service.normalize(local_code)}",
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
