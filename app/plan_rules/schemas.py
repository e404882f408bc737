from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from app.kit.pagination import PageMeta
from app.kit.schemas_common import OutputModel


class RuleSetOut(OutputModel):
    id: uuid.UUID
    name: str
    version: int
    status: str = Field(description="`draft`, `active` (drafts new plans) or `retired`.")
    description: str | None
    source: str
    created_at: datetime
    activated_at: datetime | None


class RuleSetDetailOut(RuleSetOut):
    document: dict[str, Any] = Field(
        description="The rule set as stored: upper limits, item templates, generation rules "
        "and safety rules, every clinical number with its source."
    )


class RuleSetPage(PageMeta):
    items: list[RuleSetOut]
