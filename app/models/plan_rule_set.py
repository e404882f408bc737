from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Dialect, TypeDecorator
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType
from app.domain.plans.rules import RuleSetDocument
from app.kit.versioned_sets.model import VersionedSet


def stored_json(document: RuleSetDocument) -> dict[str, Any]:
    """The JSON a rule set is stored (and shown) as: the keys it was read with. A set stored
    by an early release lacks sections added since (`pregnancy_unknown`, template `effects`,
    ...): it loads with their defaults and still reads back exactly as stored. New sets are
    stored with every default written out (`with_defaults_written`)."""
    return document.model_dump(mode="json", by_alias=True, exclude_unset=True)


def with_defaults_written(document: RuleSetDocument) -> RuleSetDocument:
    """The same document with every default counted as given, so it is stored with them: the
    stored JSON then says what the engine applies."""
    return RuleSetDocument.model_validate(document.model_dump(mode="json", by_alias=True))


# A stored set never changes, and a document is ~70 KB of JSON that takes ~1 ms to validate:
# the documents this process loaded last, by their JSON (a hit costs one serialization,
# ~0.05 ms). Keyed by content, so an entry can never be stale.
@lru_cache(maxsize=32)
def _parsed(stored: bytes) -> RuleSetDocument:
    return RuleSetDocument.model_validate_json(stored)


class RuleSetDocumentType(TypeDecorator[RuleSetDocument]):
    """A rule-set document in its JSON column (JSONB on PostgreSQL): validated into the typed
    model on every load, written back as the JSON it was read from (`stored_json`)."""

    impl = JSONType
    cache_ok = True

    def process_bind_param(self, value: RuleSetDocument | None, dialect: Dialect) -> object:
        return None if value is None else stored_json(value)

    def process_result_value(self, value: object, dialect: Dialect) -> RuleSetDocument | None:
        return None if value is None else _parsed(orjson.dumps(value))


class PlanRuleSet(VersionedSet, Base):
    """A named, versioned, immutable plan rule set (the validated document); one is active."""

    __tablename__ = "plan_rule_set"

    document: Mapped[RuleSetDocument] = mapped_column(RuleSetDocumentType)
