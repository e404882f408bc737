"""All SQL for plan rule sets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.plan import PlanRuleSet


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, rule_set_id: uuid.UUID
) -> PlanRuleSet | None:
    return await session.scalar(
        select(PlanRuleSet).where(
            PlanRuleSet.organization_id == organization_id, PlanRuleSet.id == rule_set_id
        )
    )


async def get_active(session: AsyncSession, *, organization_id: uuid.UUID) -> PlanRuleSet | None:
    return await session.scalar(
        select(PlanRuleSet).where(
            PlanRuleSet.organization_id == organization_id, PlanRuleSet.status == "active"
        )
    )


async def list_sets(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[PlanRuleSet]:
    query = select(PlanRuleSet).where(PlanRuleSet.organization_id == organization_id)
    if after is not None:
        moment, row_id = after
        query = query.where(
            (PlanRuleSet.created_at < moment)
            | ((PlanRuleSet.created_at == moment) & (PlanRuleSet.id < row_id))
        )
    query = query.order_by(PlanRuleSet.created_at.desc(), PlanRuleSet.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def next_version(session: AsyncSession, *, organization_id: uuid.UUID, name: str) -> int:
    current = await session.scalar(
        select(func.max(PlanRuleSet.version)).where(
            PlanRuleSet.organization_id == organization_id, PlanRuleSet.name == name
        )
    )
    return (current or 0) + 1


async def count_sets(session: AsyncSession, *, organization_id: uuid.UUID) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(PlanRuleSet)
            .where(PlanRuleSet.organization_id == organization_id)
        )
    ) or 0


async def add(session: AsyncSession, rule_set: PlanRuleSet) -> None:
    session.add(rule_set)
    await session.flush()


async def activate(
    session: AsyncSession, *, organization_id: uuid.UUID, rule_set_id: uuid.UUID, now: datetime
) -> None:
    await session.execute(
        update(PlanRuleSet)
        .where(
            PlanRuleSet.organization_id == organization_id,
            PlanRuleSet.status == "active",
            PlanRuleSet.id != rule_set_id,
        )
        .values(status="retired")
    )
    await session.execute(
        update(PlanRuleSet)
        .where(PlanRuleSet.id == rule_set_id)
        .values(status="active", activated_at=now)
    )
