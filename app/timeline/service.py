"""The patient timeline: one page of panels and sleep assessments, newest first."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.result_status import ResultStatus
from app.models.panel import Result
from app.panels.views import ratio_out
from app.sleep.service import date_bounds
from app.timeline import repository
from app.timeline.schemas import (
    TimelineEntry,
    TimelinePanelEntry,
    TimelineResultOut,
    TimelineSleepEntry,
)


async def page(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    start: date | None,
    end: date | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[list[TimelineEntry], tuple[datetime, uuid.UUID] | None]:
    """The page's entries and, when more follow, the keyset of its last entry."""
    lower, upper = date_bounds(start, end)
    entries = await repository.page(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        start=lower,
        end=upper,
        after=after,
        limit=limit + 1,
    )
    more = len(entries) > limit
    entries = entries[:limit]
    panel_ids = [e.id for e in entries if e.kind == repository.PANEL]
    sleep_ids = [e.id for e in entries if e.kind == repository.SLEEP_ASSESSMENT]
    panels = {p.id: p for p in await repository.panels(session, panel_ids)}
    results: dict[uuid.UUID, list[Result]] = defaultdict(list)
    for result in await repository.results(session, panel_ids):
        results[result.panel_id].append(result)
    assessments = {a.id: a for a in await repository.assessments(session, sleep_ids)}
    out: list[TimelineEntry] = []
    for entry in entries:
        if entry.kind == repository.PANEL:
            panel = panels[entry.id]
            out.append(
                TimelinePanelEntry(
                    kind="panel",
                    at=panel.collected_at,
                    panel_id=panel.id,
                    status=panel.status,
                    specimen=panel.specimen,
                    results=[
                        TimelineResultOut(
                            analyte=r.analyte,
                            value=r.canonical_value,
                            comparator=r.comparator,
                            unit=r.canonical_unit,
                            interpretation=r.interpretation,
                            critical=r.critical,
                            status=cast(ResultStatus, r.status),
                        )
                        for r in results[panel.id]
                    ],
                    ratios=[ratio_out(ratio) for ratio in panel.ratios or []],
                )
            )
        else:
            assessment = assessments[entry.id]
            out.append(
                TimelineSleepEntry(
                    kind="sleep-assessment",
                    at=assessment.timeline_at,
                    id=assessment.id,
                    instrument="ISI",
                    assessed_on=assessment.assessed_on,
                    total=assessment.total,
                    category=assessment.category,
                )
            )
    last = (entries[-1].at, entries[-1].id) if more and entries else None
    return out, last
