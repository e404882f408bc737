"""The shared versioned-set module: one cache, one set of indexes, import and activation
under a savepoint, for reference-range sets and plan rule sets alike."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import Base
from app.core.errors import ConflictError, NotFoundError
from app.kit.versioned_sets.cache import SetCache
from app.models.organization import DEFAULT_ORGANIZATION_ID
from app.plan_rules import service as rule_sets
from app.ranges import service as ranges
from tests.conftest import OTHER_ORGANIZATION, Database

ORG = uuid.uuid4()


def test_the_cache_keeps_the_most_recently_used_entries_up_to_its_size() -> None:
    cache: SetCache[str] = SetCache(size=2)
    first, second, third = ((ORG, uuid.uuid4()) for _ in range(3))
    cache.put(first, "a")
    cache.put(second, "b")
    assert cache.get(first) == "a"  # first is now the most recent
    cache.put(third, "c")

    assert len(cache) == 2
    assert cache.get(second) is None
    assert cache.get(first) == "a"
    assert cache.get(third) == "c"


def test_the_cache_builds_once_and_keys_on_the_organization_too() -> None:
    cache: SetCache[int] = SetCache()
    set_id = uuid.uuid4()
    calls: list[int] = []

    def build() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get_or_build((ORG, set_id), build) == 1
    assert cache.get_or_build((ORG, set_id), build) == 1
    assert cache.get_or_build((uuid.uuid4(), set_id), build) == 2


@pytest.mark.parametrize("table", ["range_set", "plan_rule_set"])
def test_both_set_tables_have_the_same_constraints(table: str) -> None:
    found = Base.metadata.tables[table]
    indexes = {str(index.name): index for index in found.indexes}

    assert set(indexes) == {f"uq_{table}_one_active", f"ix_{table}_org_created"}
    assert indexes[f"uq_{table}_one_active"].unique
    assert [c.name for c in indexes[f"ix_{table}_org_created"].columns] == [
        "organization_id",
        "created_at",
        "id",
    ]
    assert {c.name for c in found.constraints} >= {
        f"ck_{table}_status",
        f"uq_{table}_organization_id_name_version",
    }


def test_a_compiled_set_is_not_served_to_another_organization(db: Database) -> None:
    other = db.organization_id(OTHER_ORGANIZATION)

    async def go(session: Any) -> None:
        compiled = await ranges.active_compiled(session, organization_id=DEFAULT_ORGANIZATION_ID)
        assert compiled is not None
        # Cached now for its own organization; another one naming its id gets a 404.
        with pytest.raises(NotFoundError):
            await ranges.compiled_by_id(session, organization_id=other, range_set_id=compiled.id)

    db.in_session(go)


@pytest.mark.parametrize("kind", ["ranges", "rules"])
def test_a_conflicting_import_rolls_back_to_its_savepoint(db: Database, kind: str) -> None:
    """A second set with a version already taken fails on the unique constraint: 409, and the
    request's transaction is still usable (for the audit row written after it)."""

    async def go(session: Any) -> None:
        if kind == "ranges":
            lifecycle: Any = ranges.RANGE_SET_LIFECYCLE
            document: Any = ranges.default_document()
        else:
            lifecycle = rule_sets.RULE_SET_LIFECYCLE
            document = rule_sets.default_document()
        active = await lifecycle.repository.get_active(
            session, organization_id=DEFAULT_ORGANIZATION_ID
        )
        extra: dict[str, Any] = {"document": document} if kind == "rules" else {}
        duplicate = await lifecycle.draft(
            session, organization_id=DEFAULT_ORGANIZATION_ID, header=document, **extra
        )
        duplicate.version = active.version  # what a concurrent import that won would hold
        with pytest.raises(ConflictError):
            await lifecycle.store(session, duplicate, activate=True)
        assert (await session.execute(select(1))).scalar() == 1
        still = await lifecycle.repository.get_active_id(
            session, organization_id=DEFAULT_ORGANIZATION_ID
        )
        assert still == active.id

    db.in_session(go)
