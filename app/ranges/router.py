from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import ValidationError

from app import uploads
from app.audit.context import audit_target, audited
from app.auth.deps import AUTH_RESPONSES, CanReadRanges, CanWriteRanges
from app.concurrency import activation_etag, require_if_match
from app.deps import ReadSession, SettingsDep, WriteSession
from app.domain.range_errors import RangeSetFormatError
from app.domain.range_sets import (
    RangeSetDocument,
    parse_range_set_csv,
    parse_range_set_yaml,
)
from app.errors import NotFoundError, validation_errors
from app.idempotency.deps import IDEMPOTENCY_RESPONSES, IdempotencyKey
from app.idempotency.http import idempotent, json_response
from app.idempotency.service import StoredResponse
from app.pagination import Cursor, Limit, decode_cursor, encode_cursor, link_next
from app.problems import PROBLEM_RESPONSES, problem_doc
from app.ranges import repository, service
from app.ranges.schemas import RangeSetDetailOut, RangeSetOut, RangeSetPage

router = APIRouter(
    prefix="/api/v1/range-sets",
    tags=["reference ranges"],
    responses={**PROBLEM_RESPONSES, **AUTH_RESPONSES},
)


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The range set as JSON, YAML (`application/yaml`) or CSV (`text/csv`; "
        "give `name` and `source` as query parameters, ratios cannot be expressed in CSV).",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/RangeSetDocument"},
                "example": {
                    "name": "clinic-2027",
                    "source": "Performing laboratory's published ranges, 2027 catalog",
                    "rows": [
                        {
                            "analyte": "magnesium",
                            "specimen": "serum",
                            "age_min_years": 18,
                            "unit": "mg/dL",
                            "low": 1.7,
                            "high": 2.2,
                            "critical_low": 1.0,
                            "critical_high": 5.0,
                            "source": "https://medlineplus.gov/ency/article/003487.htm",
                        }
                    ],
                },
            },
            "application/yaml": {
                "schema": {"type": "string"},
                "example": "name: clinic-2027\n"
                "source: Performing laboratory's published ranges, 2027 catalog\n"
                "rows:\n"
                "  - analyte: magnesium\n"
                "    specimen: serum\n"
                "    age_min_years: 18\n"
                "    unit: mg/dL\n"
                "    low: 1.7\n"
                "    high: 2.2\n"
                "    source: https://medlineplus.gov/ency/article/003487.htm\n",
            },
            "text/csv": {
                "schema": {"type": "string"},
                "example": "analyte,specimen,age_min_years,unit,low,high,source\n"
                "magnesium,serum,18,mg/dL,1.7,2.2,https://medlineplus.gov/ency/article/003487.htm\n",
            },
        },
    }
}


async def _document(request: Request, name: str | None, source: str | None) -> RangeSetDocument:
    media_type = uploads.media_type(request)
    raw, text = await uploads.body_text(request)
    try:
        if media_type in ("application/json", ""):
            return RangeSetDocument.model_validate_json(raw)
        if media_type in uploads.YAML_TYPES:
            return parse_range_set_yaml(text)
        if media_type == "text/csv":
            if name and source:
                return parse_range_set_csv(text, name=name, source=source)
            raise service.RangeSetInvalidError(
                "A CSV import needs the `name` and `source` query parameters.",
                errors=[
                    {"field": f"query.{param}", "message": "required for a CSV import"}
                    for param, value in (("name", name), ("source", source))
                    if not value
                ],
            )
    except ValidationError as exc:
        errors = validation_errors(exc.errors())
        if any(error["code"] == "json_invalid" for error in errors):
            raise uploads.MalformedJsonError("The request body is not valid JSON.") from exc
        raise service.RangeSetInvalidError(
            "The range set failed validation; see 'errors'.", errors=errors
        ) from exc
    except RangeSetFormatError as exc:
        raise service.RangeSetInvalidError(
            str(exc), errors=[uploads.format_error_entry(error) for error in exc.errors]
        ) from exc
    raise uploads.UnsupportedMediaTypeError(
        f"Send application/json, application/yaml or text/csv, not {media_type!r}."
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Import a reference-range set",
    response_model=RangeSetDetailOut,
    openapi_extra=_IMPORT_BODY,
    responses={
        **IDEMPOTENCY_RESPONSES,
        409: problem_doc(
            "A concurrent import or activation won, or a request with this Idempotency-Key is "
            "still in progress."
        ),
        415: problem_doc("The body is not JSON, YAML or CSV."),
    },
    dependencies=[Depends(audited("create", "range_set"))],
)
async def import_range_set(
    request: Request,
    session: WriteSession,
    principal: CanWriteRanges,
    settings: SettingsDep,
    activate: Annotated[bool, Query(description="Make it the active set right away.")] = False,
    name: Annotated[str | None, Query(max_length=100, description="CSV only: set name.")] = None,
    source: Annotated[
        str | None, Query(max_length=500, description="CSV only: where the ranges come from.")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Stores a new version of a named range set. Every row names its analyte, specimen, sex,
    half-open age band `[age_min_years, age_max_years)`, unit, limits and **source**; the set
    is refused (422) when an analyte or unit is unknown, limits are out of order, or two rows
    of the same specificity overlap. Versions number from 1 per name. A stored set never
    changes; activating it does not alter stored interpretations."""
    organization_id = principal.organization_id

    async def produce() -> StoredResponse:
        document = await _document(request, name, source)
        range_set = await service.import_document(
            session, organization_id=organization_id, document=document, activate=activate
        )
        audit_target(request, resource_id=range_set.id, action="activate" if activate else None)
        detail = await _detail(session, organization_id, range_set.id)
        return json_response(
            detail.model_dump_json().encode(),
            201,
            location=f"/api/v1/range-sets/{detail.id}",
            etag=_etag(detail),
        )

    return await idempotent(
        request,
        session,
        principal=principal,
        settings=settings,
        key=idempotency_key,
        produce=produce,
    )


def _etag(range_set: RangeSetOut) -> str:
    return activation_etag("range-set", range_set.id, range_set.status, range_set.activated_at)


async def _detail(
    session: ReadSession | WriteSession, organization_id: uuid.UUID, range_set_id: uuid.UUID
) -> RangeSetDetailOut:
    range_set = await repository.get_with_rows(
        session, organization_id=organization_id, range_set_id=range_set_id
    )
    if range_set is None:
        raise NotFoundError("No such reference-range set.")
    return RangeSetDetailOut.model_validate(range_set)


@router.get("", summary="List reference-range sets", response_model=RangeSetPage)
async def list_range_sets(
    session: ReadSession,
    principal: CanReadRanges,
    limit: Limit = 50,
    cursor: Cursor = None,
    *,
    request: Request,
    response: Response,
) -> RangeSetPage:
    """All range sets of the organization, newest first, with status (`draft`, `active`,
    `retired`)."""
    sets = await repository.list_sets(
        session,
        organization_id=principal.organization_id,
        limit=limit + 1,
        after=decode_cursor(cursor) if cursor else None,
    )
    page = list(sets[:limit])
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(sets) > limit else None
    link_next(request, response, next_cursor)
    return RangeSetPage(
        items=[RangeSetOut.model_validate(s) for s in page], limit=limit, next_cursor=next_cursor
    )


@router.get("/active", summary="The active reference-range set", response_model=RangeSetDetailOut)
async def active_range_set(
    response: Response, session: ReadSession, principal: CanReadRanges
) -> RangeSetDetailOut:
    """The set new panels are interpreted against, with all its rows and ratio ranges."""
    organization_id = principal.organization_id
    range_set_id = await repository.get_active_id(session, organization_id=organization_id)
    if range_set_id is None:
        raise NotFoundError("No reference-range set is active.")
    detail = await _detail(session, organization_id, range_set_id)
    response.headers["ETag"] = _etag(detail)
    return detail


@router.get(
    "/{range_set_id}", summary="Read a reference-range set", response_model=RangeSetDetailOut
)
async def get_range_set(
    range_set_id: uuid.UUID, response: Response, session: ReadSession, principal: CanReadRanges
) -> RangeSetDetailOut:
    """One range set with all its rows (in the units they were written in) and ratio ranges,
    with an `ETag` to send as `If-Match` when activating it."""
    detail = await _detail(session, principal.organization_id, range_set_id)
    response.headers["ETag"] = _etag(detail)
    return detail


@router.post(
    "/{range_set_id}/activate",
    summary="Activate a reference-range set",
    response_model=RangeSetOut,
    responses={
        409: problem_doc("Another set was activated at the same time."),
        412: problem_doc("The set changed since your If-Match ETag was read."),
        428: problem_doc("If-Match is missing."),
    },
    dependencies=[Depends(audited("activate", "range_set"))],
)
async def activate_range_set(
    range_set_id: uuid.UUID,
    request: Request,
    response: Response,
    session: WriteSession,
    principal: CanWriteRanges,
) -> RangeSetOut:
    """Makes this set the one new panels are interpreted against; the previously active set is
    retired. Stored interpretations are not changed (re-interpret a panel explicitly).

    Needs `If-Match: <ETag>` from a read of this set: **428** without it, **412** when the set
    changed since (nothing is modified)."""
    organization_id = principal.organization_id
    audit_target(request, resource_id=range_set_id)
    current = await _detail(session, organization_id, range_set_id)
    require_if_match(request, _etag(current))
    range_set = await service.activate(
        session,
        organization_id=organization_id,
        range_set_id=range_set_id,
        # Checked again on the locked row: of concurrent activations with one ETag, one wins.
        precondition=lambda locked: require_if_match(
            request, _etag(RangeSetOut.model_validate(locked))
        ),
    )
    out = RangeSetOut.model_validate(range_set)
    response.headers["ETag"] = _etag(out)
    return out
