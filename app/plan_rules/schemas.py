from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from app.domain.plans.rules import RuleSetDocument
from app.kit.pagination import PageMeta
from app.kit.schemas_common import OutputModel
from app.models.plan_rule_set import stored_json


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

    @field_validator("document", mode="before")
    @classmethod
    def _as_stored(cls, document: object) -> object:
        return stored_json(document) if isinstance(document, RuleSetDocument) else document


class RuleSetPage(PageMeta):
    items: list[RuleSetOut]
