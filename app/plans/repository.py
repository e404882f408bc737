"""All SQL for treatment plans."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models.panel import Panel
from app.models.plan import TreatmentPlan, TreatmentPlanVersion


async def panels_with_results(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    panel_ids: Sequence[uuid.UUID] | None,
    collected_since: datetime | None,
    limit: int,
) -> Sequence[Panel]:
    """The patient's panels (chosen ids, or the latest ones), newest first, results loaded."""
    query = (
        select(Panel)
        .options(selectinload(Panel.results))
        .where(
            Panel.organization_id == organization_id,
            Panel.patient_id == patient_id,
            Panel.status != "cancelled",
        )
    )
    if panel_ids is not None:
        query = query.where(Panel.id.in_(panel_ids))
    if collected_since is not None:
        query = query.where(Panel.collected_at >= collected_since)
    query = query.order_by(Panel.collected_at.desc(), Panel.created_at.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID
) -> TreatmentPlan | None:
    return await session.scalar(
        select(TreatmentPlan).where(
            TreatmentPlan.organization_id == organization_id, TreatmentPlan.id == plan_id
        )
    )


async def add(session: AsyncSession, plan: TreatmentPlan, version: TreatmentPlanVersion) -> None:
    session.add(plan)
    await session.flush()
    session.add(version)
    await session.flush()


async def update_if_version(
    session: AsyncSession,
    *,
    plan_id: uuid.UUID,
    expected_version: int,
    values: dict[str, Any],
    version: TreatmentPlanVersion,
) -> bool:
    """Apply a change only if nobody else changed the plan since `expected_version`."""
    result = await session.execute(
        update(TreatmentPlan)
        .where(TreatmentPlan.id == plan_id, TreatmentPlan.version == expected_version)
        .values(version=expected_version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(version)
    await session.flush()
    return True


def _search_conditions(
    organization_id: uuid.UUID, patient_id: uuid.UUID | None, statuses: Sequence[str] | None
) -> list[Any]:
    conditions: list[Any] = [TreatmentPlan.organization_id == organization_id]
    if patient_id is not None:
        conditions.append(TreatmentPlan.patient_id == patient_id)
    if statuses:
        conditions.append(TreatmentPlan.status.in_(statuses))
    return conditions


async def search(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None,
    statuses: Sequence[str] | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[TreatmentPlan]:
    """Plans (of one patient, or all), newest first, keyset-paged."""
    query = select(TreatmentPlan).where(*_search_conditions(organization_id, patient_id, statuses))
    if after is not None:
        moment, row_id = after
        query = query.where(
            (TreatmentPlan.created_at < moment)
            | ((TreatmentPlan.created_at == moment) & (TreatmentPlan.id < row_id))
        )
    query = query.order_by(TreatmentPlan.created_at.desc(), TreatmentPlan.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def count(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID | None,
    statuses: Sequence[str] | None,
) -> int:
    total = await session.scalar(
        select(func.count())
        .select_from(TreatmentPlan)
        .where(*_search_conditions(organization_id, patient_id, statuses))
    )
    return total or 0


async def drafts(
    session: AsyncSession, *, organization_id: uuid.UUID, limit: int
) -> tuple[Sequence[TreatmentPlan], int]:
    """Drafts awaiting review, the longest-waiting first, and how many there are."""
    where = (TreatmentPlan.organization_id == organization_id) & (TreatmentPlan.status == "draft")
    total = await session.scalar(select(func.count()).select_from(TreatmentPlan).where(where))
    rows = await session.scalars(
        select(TreatmentPlan)
        .where(where)
        .order_by(TreatmentPlan.created_at, TreatmentPlan.id)
        .limit(limit)
    )
    return rows.all(), total or 0


async def retests_due(
    session: AsyncSession, *, organization_id: uuid.UUID, due_by: date, limit: int
) -> tuple[Sequence[TreatmentPlan], int]:
    """Active plans with a retest due on or before `due_by`, the earliest first."""
    where = (
        (TreatmentPlan.organization_id == organization_id)
        & (TreatmentPlan.status == "active")
        & (TreatmentPlan.next_retest_date <= due_by)
    )
    total = await session.scalar(select(func.count()).select_from(TreatmentPlan).where(where))
    rows = await session.scalars(
        select(TreatmentPlan)
        .where(where)
        .order_by(TreatmentPlan.next_retest_date, TreatmentPlan.id)
        .limit(limit)
    )
    return rows.all(), total or 0


async def versions(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID
) -> Sequence[TreatmentPlanVersion]:
    rows = await session.scalars(
        select(TreatmentPlanVersion)
        .where(
            TreatmentPlanVersion.organization_id == organization_id,
            TreatmentPlanVersion.plan_id == plan_id,
        )
        .order_by(TreatmentPlanVersion.version)
    )
    return rows.all()


async def get_version(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID, version: int
) -> TreatmentPlanVersion | None:
    return await session.scalar(
        select(TreatmentPlanVersion).where(
            TreatmentPlanVersion.organization_id == organization_id,
            TreatmentPlanVersion.plan_id == plan_id,
            TreatmentPlanVersion.version == version,
        )
    )
