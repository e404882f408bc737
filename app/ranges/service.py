"""Reference-range sets: import, validate, version, activate; compiled sets for interpretation."""

from __future__ import annotations

import uuid
from importlib import resources
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import UnprocessableError
from app.domain.catalog import Catalog, default_catalog
from app.domain.errors import DomainError, UnknownAnalyteError
from app.domain.range_sets import RangeSetDocument, parse_range_set_yaml
from app.domain.reference_ranges import validate_rows
from app.domain.types import RangeRow
from app.kit.versioned_sets.cache import SetCache
from app.kit.versioned_sets.service import SetLifecycle
from app.models.range_set import RangeSet
from app.ranges import repository
from app.ranges.compiled import CompiledRangeSet, compile_range_set, compile_rows

RANGE_SET_LIFECYCLE = SetLifecycle(
    repository.RANGE_SETS, noun="range set", title="reference-range set"
)

# The compiled sets of this process, keyed by (organization_id, range_set_id): a set never
# changes once stored, so an entry never goes stale (see app/kit/versioned_sets/cache.py).
COMPILED: SetCache[CompiledRangeSet] = SetCache(size=32)


class RangeSetInvalidError(UnprocessableError):
    type_slug = "invalid-range-set"
    title = "The reference-range set is not valid"


def default_document() -> RangeSetDocument:
    text = resources.files("app.data").joinpath("reference_ranges/default.yaml").read_text("utf-8")
    return parse_range_set_yaml(text)


async def active_compiled(
    session: AsyncSession, *, organization_id: uuid.UUID, catalog: Catalog | None = None
) -> CompiledRangeSet | None:
    """The organization's active set, compiled. One indexed query; compilation is cached."""
    range_set_id = await repository.RANGE_SETS.get_active_id(
        session, organization_id=organization_id
    )
    return await compiled_if_any(
        session, organization_id=organization_id, range_set_id=range_set_id, catalog=catalog
    )


async def compiled_by_id(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    range_set_id: uuid.UUID,
    catalog: Catalog | None = None,
) -> CompiledRangeSet:
    """The set compiled to canonical units: from the cache, else loaded (404 when the
    organization has no such set) and compiled once."""

    async def load() -> CompiledRangeSet:
        range_set = await RANGE_SET_LIFECYCLE.loaded_or_raise(
            session, organization_id=organization_id, set_id=range_set_id
        )
        return compile_range_set(range_set, catalog or default_catalog())

    return await COMPILED.get_or_load((organization_id, range_set_id), load)


async def compiled_if_any(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    range_set_id: uuid.UUID | None,
    catalog: Catalog | None = None,
) -> CompiledRangeSet | None:
    """The compiled set with this id, or None when there is none (no set was active)."""
    if range_set_id is None:
        return None
    return await compiled_by_id(
        session, organization_id=organization_id, range_set_id=range_set_id, catalog=catalog
    )


def check_document(document: RangeSetDocument, catalog: Catalog) -> None:
    """Refuse a set that names unknown analytes or units, or whose rows are ambiguous."""
    problems: list[dict[str, Any]] = []
    compiled: list[RangeRow] = []
    for index, row in enumerate(document.rows):
        try:
            by_analyte, _ = compile_rows([row], catalog)
        except DomainError as exc:
            field = "analyte" if isinstance(exc, UnknownAnalyteError) else "unit"
            problems.append({"field": f"rows[{index}].{field}", "message": str(exc)})
            continue
        compiled.extend(r for rows in by_analyte.values() for r in rows)
    known = {a.code for a in catalog.all()}
    for index, ratio in enumerate(document.ratios):
        for side in ("numerator", "denominator"):
            if getattr(ratio, side) not in known:
                problems.append(
                    {
                        "field": f"ratios[{index}].{side}",
                        "message": f"unknown analyte {getattr(ratio, side)!r}",
                    }
                )
    if problems:
        raise RangeSetInvalidError(
            f"{len(problems)} problem(s) in the range set; see 'errors'.", errors=problems
        )
    conflicts = validate_rows(compiled)
    if conflicts:
        raise RangeSetInvalidError(
            f"{len(conflicts)} pair(s) of rows are equally specific and overlap; see 'errors'.",
            errors=[{"field": f"rows[{c.second_index}]", "message": c.message} for c in conflicts],
        )


async def import_document(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    document: RangeSetDocument,
    activate: bool,
    catalog: Catalog | None = None,
) -> RangeSet:
    check_document(document, catalog or default_catalog())
    range_set = await RANGE_SET_LIFECYCLE.draft(
        session,
        organization_id=organization_id,
        header=document,
        effective_from=document.effective_from,
    )
    rows = [
        {"position": position, **row.model_dump(mode="python")}
        for position, row in enumerate(document.rows)
    ]
    for row in rows:
        row["specimen"] = str(row["specimen"]) if row["specimen"] is not None else None
    ratios = [
        {"position": position, **ratio.model_dump(mode="python")}
        for position, ratio in enumerate(document.ratios)
    ]

    async def add_children(stored: RangeSet) -> None:
        await repository.add_children(session, stored, rows, ratios)

    return await RANGE_SET_LIFECYCLE.store(
        session, range_set, activate=activate, add_children=add_children
    )


async def ensure_default(session: AsyncSession, *, organization_id: uuid.UUID) -> bool:
    """Load and activate the shipped default set when the organization has none yet."""
    return await RANGE_SET_LIFECYCLE.ensure_default(
        session, organization_id, import_document, default_document
    )
