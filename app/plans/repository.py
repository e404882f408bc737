"""All SQL for treatment plans."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypedDict

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.core.db import flush_in_order, utcnow
from app.domain.plans.document import PlanBasis, PlanDocument
from app.kit.list_sql import not_cancelled, not_withdrawn
from app.models.panel import Panel, Result
from app.models.plan import TreatmentPlan, TreatmentPlanVersion


class PlanChanges(TypedDict, total=False):
    """The plan columns a change may set (besides its version)."""

    status: str
    document: PlanDocument
    updated_at: datetime
    next_retest_date: date | None
    review_reason: str | None
    approver: str
    activated_at: datetime
    ended_at: datetime


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


async def results_since(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    collected_after: datetime | None,
    received_after: datetime,
) -> Sequence[tuple[Result, Panel]]:
    """The patient's results (not withdrawn, panel not cancelled) collected after
    `collected_after` or stored after `received_after`, oldest first."""
    arrived = Panel.created_at > received_after
    if collected_after is not None:
        arrived = arrived | (Result.collected_at > collected_after)
    rows = await session.execute(
        select(Result, Panel)
        .join(Panel, Result.panel_id == Panel.id)
        .where(
            Result.organization_id == organization_id,
            Result.patient_id == patient_id,
            not_cancelled(Panel.status),
            not_withdrawn(Result.status),
            arrived,
        )
        .order_by(Result.collected_at, Result.id)
        .limit(500)
    )
    return [(result, panel) for result, panel in rows]


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, plan_id: uuid.UUID
) -> TreatmentPlan | None:
    return await session.scalar(
        select(TreatmentPlan).where(
            TreatmentPlan.organization_id == organization_id, TreatmentPlan.id == plan_id
        )
    )


async def add(session: AsyncSession, plan: TreatmentPlan, version: TreatmentPlanVersion) -> None:
    await flush_in_order(session, [plan], [version])


async def update_if_version(
    session: AsyncSession,
    *,
    plan_id: uuid.UUID,
    expected_version: int,
    values: PlanChanges,
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
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [TreatmentPlan.organization_id == organization_id]
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
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> tuple[Sequence[TreatmentPlan], int]:
    """Drafts awaiting review, the longest-waiting first (after the keyset `after`), and how
    many there are in all."""
    where = (TreatmentPlan.organization_id == organization_id) & (TreatmentPlan.status == "draft")
    total = await session.scalar(select(func.count()).select_from(TreatmentPlan).where(where))
    query = select(TreatmentPlan).where(where)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (TreatmentPlan.created_at > moment)
            | ((TreatmentPlan.created_at == moment) & (TreatmentPlan.id > row_id))
        )
    rows = await session.scalars(
        query.order_by(TreatmentPlan.created_at, TreatmentPlan.id).limit(limit)
    )
    return rows.all(), total or 0


async def retests_due(
    session: AsyncSession, *, organization_id: uuid.UUID, due_by: date
) -> Sequence[TreatmentPlan]:
    """Every active plan with a retest due on or before `due_by`, the earliest first (the
    worklist counts and pages the retests inside them)."""
    where = (
        (TreatmentPlan.organization_id == organization_id)
        & (TreatmentPlan.status == "active")
        & (TreatmentPlan.next_retest_date <= due_by)
    )
    rows = await session.scalars(
        select(TreatmentPlan)
        .where(where)
        .order_by(TreatmentPlan.next_retest_date, TreatmentPlan.id)
    )
    return rows.all()


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


@dataclass(frozen=True, slots=True)
class RevisedResult:
    """A stored result that was withdrawn or corrected, and the sentence saying so."""

    result_id: uuid.UUID
    panel_id: uuid.UUID
    reason: str


async def flag_plans_resting_on(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    revised: Sequence[RevisedResult],
    changed_by: str,
) -> list[uuid.UUID]:
    """Mark every draft or active plan of the patient that rests on a revised result as
    needing review: ``review_reason`` names the analyte and what happened (appended to a reason
    already set), and the change is a new plan version (so an ETag read before is stale).

    A plan rests on a result when its basis lists the result, or a ratio from the result's
    panel. Runs in the caller's transaction; returns the ids of the plans marked."""
    if not revised:
        return []
    plans = (
        await session.scalars(
            select(TreatmentPlan)
            .where(
                TreatmentPlan.organization_id == organization_id,
                TreatmentPlan.patient_id == patient_id,
                TreatmentPlan.status.in_(("draft", "active")),
            )
            .order_by(TreatmentPlan.created_at, TreatmentPlan.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    marked: list[uuid.UUID] = []
    for plan in plans:
        reasons = _reasons_for(plan.document.basis, revised)
        if not reasons:
            continue
        text = " ".join(reasons)
        reason = f"{plan.review_reason} {text}" if plan.review_reason else text
        now = utcnow()
        changed = await update_if_version(
            session,
            plan_id=plan.id,
            expected_version=plan.version,
            values={"review_reason": reason, "updated_at": now},
            version=TreatmentPlanVersion(
                organization_id=organization_id,
                plan_id=plan.id,
                version=plan.version + 1,
                status=plan.status,
                change="review-needed",
                reason=text,
                changed_by=changed_by,
                changed_at=now,
                document=plan.document,
            ),
        )
        if not changed:  # cannot happen: the row is locked (FOR UPDATE) until we commit
            raise RuntimeError(f"plan {plan.id} changed while it was being marked for review")
        marked.append(plan.id)
    if marked:
        # update_if_version bypasses the unit of work: reload what this session holds.
        for plan in plans:
            if plan.id in marked:
                await session.refresh(plan)
    return marked


def _reasons_for(basis: PlanBasis, revised: Sequence[RevisedResult]) -> list[str]:
    result_ids, ratio_panels = basis.rests_on()
    reasons: list[str] = []
    for change in revised:
        if str(change.result_id) in result_ids:
            reasons.append(change.reason)
        elif str(change.panel_id) in ratio_panels:
            reasons.append(f"{change.reason} A ratio the plan uses comes from that panel.")
    return list(dict.fromkeys(reasons))
