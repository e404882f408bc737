"""The patient timeline: one page of panels and sleep assessments, newest first."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.result_status import ResultStatus
from app.models.mixins import PatientKey
from app.models.panel import Panel, Result
from app.models.sleep_assessment import SleepAssessment
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
    entries = await repository.page(
        session,
        PatientKey(organization_id, patient_id),
        bounds=date_bounds(start, end),
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
    out: list[TimelineEntry] = [
        _panel_entry(panels[e.id], results[e.id])
        if e.kind == repository.PANEL
        else _sleep_entry(assessments[e.id])
        for e in entries
    ]
    last = (entries[-1].at, entries[-1].id) if more and entries else None
    return out, last


def _panel_entry(panel: Panel, results: list[Result]) -> TimelinePanelEntry:
    return TimelinePanelEntry(
        kind="panel",
        at=panel.collected_at,
        panel_id=panel.id,
        status=panel.status,
        specimen=panel.specimen,
        results=[_result_out(r) for r in results],
        ratios=[ratio_out(ratio) for ratio in panel.ratios or []],
    )


def _result_out(result: Result) -> TimelineResultOut:
    # Canonical value and unit: the timeline compares results across labs.
    return TimelineResultOut(
        **{name: getattr(result, name) for name in ("analyte", "comparator", "critical")},
        interpretation=result.interpretation,
        value=result.canonical_value,
        unit=result.canonical_unit,
        status=cast(ResultStatus, result.status),
    )


def _sleep_entry(assessment: SleepAssessment) -> TimelineSleepEntry:
    return TimelineSleepEntry(
        **{name: getattr(assessment, name) for name in ("id", "assessed_on", "total", "category")},
        kind="sleep-assessment",
        at=assessment.timeline_at,
        instrument="ISI",
    )
