"""Reference-range sets: import, validate, version, activate; compiled sets for interpretation."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.concurrency import lock_for_update
from app.db import utcnow
from app.domain.catalog import Catalog, default_catalog
from app.domain.errors import DomainError, UnknownAnalyteError
from app.domain.range_sets import RangeSetDocument, parse_range_set_yaml
from app.domain.reference_ranges import validate_rows
from app.domain.types import RangeRow
from app.errors import ConflictError, NotFoundError, UnprocessableError
from app.models.range_set import RangeSet
from app.ranges import repository
from app.ranges.compiled import CompiledRangeSet, compile_range_set, compile_rows

_CACHE_SIZE = 32
_compiled: OrderedDict[uuid.UUID, CompiledRangeSet] = OrderedDict()


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
    range_set_id = await repository.get_active_id(session, organization_id=organization_id)
    if range_set_id is None:
        return None
    return await compiled_by_id(
        session, organization_id=organization_id, range_set_id=range_set_id, catalog=catalog
    )


async def compiled_by_id(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    range_set_id: uuid.UUID,
    catalog: Catalog | None = None,
) -> CompiledRangeSet:
    cached = _compiled.get(range_set_id)
    if cached is not None:
        _compiled.move_to_end(range_set_id)
        return cached
    range_set = await repository.get_with_rows(
        session, organization_id=organization_id, range_set_id=range_set_id
    )
    if range_set is None:
        raise NotFoundError("No such reference-range set.")
    compiled = compile_range_set(range_set, catalog or default_catalog())
    _compiled[range_set_id] = compiled
    while len(_compiled) > _CACHE_SIZE:
        _compiled.popitem(last=False)
    return compiled


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
    version = await repository.next_version(
        session, organization_id=organization_id, name=document.name
    )
    range_set = RangeSet(
        id=uuid.uuid4(),
        organization_id=organization_id,
        name=document.name,
        version=version,
        status="draft",
        description=document.description,
        source=document.source,
        effective_from=document.effective_from,
        created_at=utcnow(),
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
    try:
        await repository.add_set(session, range_set, rows, ratios)
        if activate:
            await _activate(session, organization_id=organization_id, range_set=range_set)
    except IntegrityError as exc:
        raise ConflictError(
            "Another import of this range set finished at the same time; retry."
        ) from exc
    return range_set


async def activate(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    range_set_id: uuid.UUID,
    precondition: Callable[[RangeSet], None] | None = None,
) -> RangeSet:
    """Activate the set. ``precondition`` (the caller's If-Match check) runs on the row locked
    for this transaction, so it sees every activation committed before it."""
    range_set = await repository.get(
        session, organization_id=organization_id, range_set_id=range_set_id
    )
    if range_set is None:
        raise NotFoundError("No such reference-range set.")
    # Concurrent activations with one If-Match: exactly one wins, the others get 412.
    await lock_for_update(session, range_set)
    if precondition is not None:
        precondition(range_set)
    if range_set.status != "active":
        try:
            await _activate(session, organization_id=organization_id, range_set=range_set)
        except IntegrityError as exc:
            raise ConflictError("Another range set was activated at the same time; retry.") from exc
    return range_set


async def _activate(
    session: AsyncSession, *, organization_id: uuid.UUID, range_set: RangeSet
) -> None:
    now = utcnow()
    await repository.activate(
        session, organization_id=organization_id, range_set_id=range_set.id, now=now
    )
    range_set.status = "active"
    range_set.activated_at = now


async def ensure_default(session: AsyncSession, *, organization_id: uuid.UUID) -> bool:
    """Load and activate the shipped default set when the organization has none yet."""
    if await repository.count_sets(session, organization_id=organization_id):
        return False
    await import_document(
        session, organization_id=organization_id, document=default_document(), activate=True
    )
    return True
