from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import CanReadRanges, CanWriteRanges
from app.core.deps import ReadSession
from app.core.errors import NotFoundError
from app.domain.range_errors import RangeSetFormatError
from app.domain.range_sets import (
    RangeSetDocument,
    parse_range_set_csv,
    parse_range_set_yaml,
)
from app.kit.versioned_sets import http as sets_http
from app.kit.versioned_sets.upload import Parser, UploadReader, json_and_yaml
from app.models.range_set import RangeSet
from app.ranges import service
from app.ranges.repository import RANGE_SETS
from app.ranges.schemas import RangeSetDetailOut, RangeSetOut, RangeSetPage

ROUTES = sets_http.SetRoutes(
    "/api/v1/range-sets",
    "reference ranges",
    kind="range-set",
    resource_type="range_set",
    noun="set",
)
router = ROUTES.router


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


_UPLOAD = UploadReader[RangeSetDocument](
    noun="range set",
    invalid=service.RangeSetInvalidError,
    parsers=json_and_yaml(RangeSetDocument, parse_range_set_yaml),
    accepted="application/json, application/yaml or text/csv",
    format_errors=(RangeSetFormatError,),
)


def _csv(name: str | None, source: str | None) -> Parser[RangeSetDocument]:
    """The CSV parser for this request: a CSV carries rows only, the query names the set."""

    def parse(raw: bytes, text: str) -> RangeSetDocument:
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

    return parse


@ROUTES.import_route(
    _IMPORT_BODY, summary="Import a reference-range set", response_model=RangeSetDetailOut
)
async def import_range_set(
    principal: CanWriteRanges,
    importing: sets_http.SetImport,
    activate: Annotated[bool, Query(description="Make it the active set right away.")] = False,
    name: Annotated[str | None, Query(max_length=100, description="CSV only: set name.")] = None,
    source: Annotated[
        str | None, Query(max_length=500, description="CSV only: where the ranges come from.")
    ] = None,
) -> Response:
    """Stores a new version of a named range set. Every row names its analyte, specimen, sex,
    half-open age band `[age_min_years, age_max_years)`, unit, limits and **source**; the set
    is refused (422) when an analyte or unit is unknown, limits are out of order, or two rows
    of the same specificity overlap. Versions number from 1 per name. A stored set never
    changes; activating it does not alter stored interpretations."""

    async def read(request: Request) -> RangeSetDocument:
        return await _UPLOAD.read(request, {"text/csv": _csv(name, source)})

    async def shown(session: AsyncSession, range_set: RangeSet) -> RangeSetDetailOut:
        return await _detail(session, range_set.organization_id, range_set.id)

    return await importing.created(
        ROUTES, principal, read, service.import_document, shown, activate=activate
    )


async def _detail(
    session: AsyncSession, organization_id: uuid.UUID, range_set_id: uuid.UUID
) -> RangeSetDetailOut:
    range_set = await service.RANGE_SET_LIFECYCLE.loaded_or_raise(
        session, organization_id=organization_id, set_id=range_set_id
    )
    return RangeSetDetailOut.model_validate(range_set)


@router.get("", summary="List reference-range sets")
async def list_range_sets(
    session: ReadSession, principal: CanReadRanges, listing: sets_http.SetList
) -> RangeSetPage:
    """All range sets of the organization, newest first, with status (`draft`, `active`,
    `retired`)."""
    return await listing.sets_page(session, RANGE_SETS, principal, RangeSetPage)


@router.get("/active", summary="The active reference-range set")
async def active_range_set(
    response: Response, session: ReadSession, principal: CanReadRanges
) -> RangeSetDetailOut:
    """The set new panels are interpreted against, with all its rows and ratio ranges."""
    organization_id = principal.organization_id
    range_set_id = await RANGE_SETS.get_active_id(session, organization_id=organization_id)
    if range_set_id is None:
        raise NotFoundError("No reference-range set is active.")
    detail = await _detail(session, organization_id, range_set_id)
    response.headers["ETag"] = ROUTES.etag(detail)
    return detail


@router.get("/{range_set_id}", summary="Read a reference-range set")
async def get_range_set(
    range_set_id: uuid.UUID, response: Response, session: ReadSession, principal: CanReadRanges
) -> RangeSetDetailOut:
    """One range set with all its rows (in the units they were written in) and ratio ranges,
    with an `ETag` to send as `If-Match` when activating it."""
    detail = await _detail(session, principal.organization_id, range_set_id)
    response.headers["ETag"] = ROUTES.etag(detail)
    return detail


@ROUTES.activate_route(
    "/{range_set_id}/activate", summary="Activate a reference-range set", response_model=RangeSetOut
)
async def activate_range_set(
    range_set_id: uuid.UUID, principal: CanWriteRanges, activation: sets_http.SetActivation
) -> RangeSetOut:
    """Makes this set the one new panels are interpreted against; the previously active set is
    retired. Stored interpretations are not changed (re-interpret a panel explicitly).

    Needs `If-Match: <ETag>` from a read of this set: **428** without it, **412** when the set
    changed since (nothing is modified)."""
    range_set = await activation.run(
        service.RANGE_SET_LIFECYCLE, principal, range_set_id, etag=ROUTES.etag
    )
    return RangeSetOut.model_validate(range_set)
