"""All SQL for aligned series: the page's time points, then the values at them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.list_sql import Bounds, not_cancelled, not_withdrawn, within
from app.models.mixins import PatientKey
from app.models.panel import Panel, Result
from app.models.sleep_assessment import SleepAssessment


def _results(key: PatientKey, analytes: Sequence[str]) -> Select[Result]:
    return (
        select(Result)
        .join(Panel, Panel.id == Result.panel_id)
        .where(
            key.owns(Result),
            Result.analyte.in_(sorted(set(analytes))),
            # Withdrawn results, and cancelled panels, are not part of a chart.
            not_withdrawn(Result.status),
            not_cancelled(Panel.status),
        )
    )


def _assessments(key: PatientKey) -> Select[SleepAssessment]:
    return select(SleepAssessment).where(key.owns(SleepAssessment))


async def time_points(
    session: AsyncSession,
    key: PatientKey,
    *,
    analytes: Sequence[str],
    with_isi: bool,
    bounds: Bounds,
    after: datetime | None,
    limit: int,
) -> list[datetime]:
    """Up to `limit` distinct time points within `bounds`, the oldest first, after `after`."""
    branches = []
    if analytes:
        query = _results(key, analytes).with_only_columns(Result.collected_at.label("at"))
        branches.append(_bounded(query, Result.collected_at, bounds, after))
    if with_isi:
        query = _assessments(key).with_only_columns(SleepAssessment.timeline_at.label("at"))
        branches.append(_bounded(query, SleepAssessment.timeline_at, bounds, after))
    if not branches:
        return []
    both = union(*branches).subquery("points")
    rows = await session.scalars(select(both.c.at).order_by(both.c.at).limit(limit))
    return list(rows)


def _bounded(
    query: Select[datetime], at: Any, bounds: Bounds, after: datetime | None
) -> Select[datetime]:
    query = within(query, at, bounds)
    if after is not None:
        query = query.where(at > after)
    return query


async def results_between(
    session: AsyncSession,
    key: PatientKey,
    *,
    analytes: Sequence[str],
    first: datetime,
    last: datetime,
) -> Sequence[Result]:
    query = _results(key, analytes).where(Result.collected_at >= first, Result.collected_at <= last)
    # Newest panel last, so where two panels share a collection time the later one wins.
    return (await session.scalars(query.order_by(Result.collected_at, Panel.created_at))).all()


async def assessments_between(
    session: AsyncSession, key: PatientKey, *, first: datetime, last: datetime
) -> Sequence[SleepAssessment]:
    query = _assessments(key).where(
        SleepAssessment.timeline_at >= first, SleepAssessment.timeline_at <= last
    )
    return (
        await session.scalars(
            query.order_by(SleepAssessment.timeline_at, SleepAssessment.recorded_at)
        )
    ).all()
