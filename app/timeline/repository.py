"""All SQL for the patient timeline: one keyset-paginated UNION ALL of panels and sleep
assessments, then the page's own rows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.list_sql import Bounds, after_keyset, not_withdrawn, within
from app.models.mixins import PatientKey
from app.models.panel import Panel, Result
from app.models.sleep_assessment import SleepAssessment

PANEL = "panel"
SLEEP_ASSESSMENT = "sleep-assessment"


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    id: uuid.UUID
    at: datetime


def _branch(
    kind: str,
    model: type[Panel] | type[SleepAssessment],
    at: Any,
    key: PatientKey,
    bounds: Bounds,
    after: tuple[datetime, uuid.UUID] | None,
) -> Select[str, uuid.UUID, datetime]:
    """One table's (kind, id, at) rows of the patient, filtered on its own (patient, time, id)
    index before the union."""
    query = select(literal(kind).label("kind"), model.id.label("id"), at.label("at")).where(
        key.owns(model)
    )
    query = within(query, at, bounds)
    if after is not None:
        query = query.where(after_keyset(at, model.id, after))
    return query


async def page(
    session: AsyncSession,
    key: PatientKey,
    *,
    bounds: Bounds,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Entry]:
    """Up to `limit` entries within `bounds`, newest first (ties by id, descending)."""
    panels = _branch(PANEL, Panel, Panel.collected_at, key, bounds, after)
    assessments = _branch(
        SLEEP_ASSESSMENT, SleepAssessment, SleepAssessment.timeline_at, key, bounds, after
    )
    both = union_all(panels, assessments).subquery("timeline")
    rows = await session.execute(
        select(both.c.kind, both.c.id, both.c.at)
        .order_by(both.c.at.desc(), both.c.id.desc())
        .limit(limit)
    )
    return [Entry(kind=kind, id=row_id, at=at) for kind, row_id, at in rows]


async def panels(session: AsyncSession, ids: Sequence[uuid.UUID]) -> Sequence[Panel]:
    if not ids:
        return []
    return (await session.scalars(select(Panel).where(Panel.id.in_(ids)))).all()


async def results(session: AsyncSession, panel_ids: Sequence[uuid.UUID]) -> Sequence[Result]:
    if not panel_ids:
        return []
    return (
        await session.scalars(
            select(Result)
            # Withdrawn results (cancelled, entered-in-error) are not part of the patient's
            # story; they stay readable, with their status, on the panel itself.
            .where(
                Result.panel_id.in_(panel_ids),
                not_withdrawn(Result.status),
            )
            .order_by(Result.panel_id, Result.position)
        )
    ).all()


async def assessments(session: AsyncSession, ids: Sequence[uuid.UUID]) -> Sequence[SleepAssessment]:
    if not ids:
        return []
    return (await session.scalars(select(SleepAssessment).where(SleepAssessment.id.in_(ids)))).all()
