"""All SQL for plan rule sets: the shared set queries (a rule set has no child rows)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.versioned_sets.repository import VersionedSetRepository
from app.models.plan_rule_set import PlanRuleSet

RULE_SETS = VersionedSetRepository(PlanRuleSet)


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, rule_set_id: uuid.UUID
) -> PlanRuleSet | None:
    return await RULE_SETS.get(session, organization_id=organization_id, set_id=rule_set_id)
