from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType
from app.kit.versioned_sets.model import VersionedSet


class PlanRuleSet(VersionedSet, Base):
    """A named, versioned, immutable plan rule set (the validated document); one is active."""

    __tablename__ = "plan_rule_set"

    # The RuleSetDocument as JSON (validated on import; parsed through the set cache on use).
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
