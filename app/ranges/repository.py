"""All SQL for reference-range sets: the shared set queries, plus the rows and ratios."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.kit.versioned_sets.repository import VersionedSetRepository
from app.models.range_set import RangeSet, RatioRange, ReferenceRange

RANGE_SETS = VersionedSetRepository(
    RangeSet, load=(selectinload(RangeSet.rows), selectinload(RangeSet.ratios))
)


async def add_children(
    session: AsyncSession,
    range_set: RangeSet,
    rows: Sequence[dict[str, Any]],
    ratios: Sequence[dict[str, Any]],
) -> None:
    """The rows and ratio ranges of a set just flushed (they need its id)."""
    session.add_all(ReferenceRange(range_set_id=range_set.id, **row) for row in rows)
    session.add_all(RatioRange(range_set_id=range_set.id, **ratio) for ratio in ratios)
    await session.flush()
