"""The organization's flagged results: what a "results needing attention" screen lists."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.catalog import default_catalog
from app.domain.errors import DomainError
from app.kit import query_params
from app.kit.pagination import keyset
from app.kit.schemas_common import IdentifierOut
from app.panels.views import result_out
from app.results import repository
from app.results.labels import patient_labels
from app.results.schemas import FlaggedResultOut, FlaggedResultPage


class InvalidResultQueryError(query_params.InvalidQueryError):
    title = "A query parameter cannot be used"


async def flagged_page(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    flag: str,
    analyte: str | None,
    collected_from: datetime | None,
    collected_to: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> FlaggedResultPage:
    code: str | None = None
    if analyte is not None:
        try:
            code = default_catalog().resolve(analyte).code
        except DomainError as exc:
            raise InvalidResultQueryError(
                str(exc), errors=[{"field": "query.analyte", "message": str(exc)}]
            ) from exc
    which = repository.Flagged(flag, code, collected_from, collected_to)
    rows = await repository.flagged(session, organization_id, which, limit=limit + 1, after=after)
    page = keyset(rows, limit, lambda r: (r.collected_at, r.id))
    labels = await patient_labels(
        session, organization_id=organization_id, patient_ids=[r.patient_id for r in page.rows]
    )
    items: list[FlaggedResultOut] = []
    for result in page.rows:
        label = labels.get(result.patient_id)
        identifier = (
            IdentifierOut(system=label.identifier_system, value=label.identifier_value)
            if label is not None
            and label.identifier_system is not None
            and label.identifier_value is not None
            else None
        )
        items.append(
            FlaggedResultOut(
                patient_id=result.patient_id,
                patient_identifier=identifier,
                patient_name=label.name if label else None,
                panel_id=result.panel_id,
                collected_at=result.collected_at,
                result=result_out(result),
            )
        )
    return FlaggedResultPage(items=items, limit=limit, next_cursor=page.next_cursor)
