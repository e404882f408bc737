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

from app.domain.result_status import WITHDRAWN
from app.models.panel import Panel, Result
from app.models.sleep_assessment import SleepAssessment

PANEL = "panel"
SLEEP_ASSESSMENT = "sleep-assessment"


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    id: uuid.UUID
    at: datetime


def _bounded(
    query: Select[str, uuid.UUID, datetime],
    at: Any,
    row_id: Any,
    *,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
) -> Select[str, uuid.UUID, datetime]:
    # Each branch is filtered on its own (patient, time, id) index before the union.
    if start is not None:
        query = query.where(at >= start)
    if end is not None:
        query = query.where(at <= end)
    if after is not None:
        moment, last_id = after
        query = query.where((at < moment) | ((at == moment) & (row_id < last_id)))
    return query


async def page(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Entry]:
    """Up to `limit` entries, newest first (ties by id, descending)."""
    panels = _bounded(
        select(
            literal(PANEL).label("kind"),
            Panel.id.label("id"),
            Panel.collected_at.label("at"),
        ).where(Panel.organization_id == organization_id, Panel.patient_id == patient_id),
        Panel.collected_at,
        Panel.id,
        start=start,
        end=end,
        after=after,
    )
    assessments = _bounded(
        select(
            literal(SLEEP_ASSESSMENT).label("kind"),
            SleepAssessment.id.label("id"),
            SleepAssessment.timeline_at.label("at"),
        ).where(
            SleepAssessment.organization_id == organization_id,
            SleepAssessment.patient_id == patient_id,
        ),
        SleepAssessment.timeline_at,
        SleepAssessment.id,
        start=start,
        end=end,
        after=after,
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
            .where(Result.panel_id.in_(panel_ids), Result.status.not_in(sorted(WITHDRAWN)))
            .order_by(Result.panel_id, Result.position)
        )
    ).all()


async def assessments(session: AsyncSession, ids: Sequence[uuid.UUID]) -> Sequence[SleepAssessment]:
    if not ids:
        return []
    return (await session.scalars(select(SleepAssessment).where(SleepAssessment.id.in_(ids)))).all()
