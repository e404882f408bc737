"""Range sets compiled for interpretation: every row converted to the canonical unit once.

Range sets are immutable once stored (a change is a new version), so a compiled set can be
cached in each process without any risk of serving stale limits. The one cache is
`app.ranges.service.COMPILED`, a `SetCache` keyed by (organization_id, range_set_id): read it
through `active_compiled` / `compiled_by_id`, which load and compile on a miss.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from app.domain.catalog import Catalog
from app.domain.ratios import RatioDefinition
from app.domain.reference_ranges import AnalyteRanges
from app.domain.types import RangeLimits, RangeRow, Sex
from app.domain.units import convert
from app.models.range_set import RangeSet, RatioRange, ReferenceRange

_LIMIT_FIELDS = (
    "low",
    "high",
    "critical_low",
    "critical_high",
    "absolute_low",
    "absolute_high",
)


@dataclass(frozen=True)
class CompiledRangeSet:
    id: uuid.UUID
    name: str
    version: int
    rows_by_analyte: dict[str, tuple[RangeRow, ...]]
    ratios: tuple[RatioDefinition, ...]
    original_units: dict[str, str] = field(default_factory=dict)
    # Each analyte's rows prepared for selection, filled on first use (the set never changes).
    _ranges: dict[str, AnalyteRanges] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def rows_for(self, analyte: str) -> tuple[RangeRow, ...]:
        return self.rows_by_analyte.get(analyte, ())

    def ranges_for(self, analyte: str) -> AnalyteRanges:
        found = self._ranges.get(analyte)
        if found is None:
            found = self._ranges[analyte] = AnalyteRanges(self.rows_for(analyte), analyte)
        return found

    def reference(self) -> dict[str, Any]:
        return dict(self._reference)  # a new dict each time: it is stored in each snapshot

    @cached_property
    def _reference(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "version": self.version}


def compile_rows(
    rows: Sequence[ReferenceRange | Any], catalog: Catalog
) -> tuple[dict[str, tuple[RangeRow, ...]], dict[str, str]]:
    """Convert rows (ORM rows or documents with the same attribute names) to canonical units."""
    by_analyte: dict[str, list[RangeRow]] = {}
    original_units: dict[str, str] = {}
    for position, row in enumerate(rows):
        analyte = catalog.get(row.analyte)
        unit = catalog.normalize_unit_for(analyte, row.unit)
        limits = {}
        for name in _LIMIT_FIELDS:
            value: Decimal | None = getattr(row, name)
            limits[name] = (
                None
                if value is None
                else convert(value, analyte=analyte, from_unit=unit, to_unit=analyte.canonical_unit)
            )
        row_id = str(getattr(row, "id", None) or position)
        original_units[row_id] = unit
        sex = getattr(row, "sex", None)
        specimen = getattr(row, "specimen", None)
        by_analyte.setdefault(analyte.code, []).append(
            RangeRow(
                analyte=analyte.code,
                unit=analyte.canonical_unit,
                limits=RangeLimits(**limits),
                specimen=str(specimen) if specimen is not None else None,
                sex=Sex(sex) if sex is not None else None,
                age_min_years=row.age_min_years,
                age_max_years=row.age_max_years,
                source=row.source,
                row_id=row_id,
            )
        )
    return {code: tuple(items) for code, items in by_analyte.items()}, original_units


def ratio_definitions(ratios: Sequence[RatioRange | Any]) -> tuple[RatioDefinition, ...]:
    return tuple(RatioDefinition.of(ratio) for ratio in ratios)


def compile_range_set(range_set: RangeSet, catalog: Catalog) -> CompiledRangeSet:
    rows, original_units = compile_rows(range_set.rows, catalog)
    return CompiledRangeSet(
        id=range_set.id,
        name=range_set.name,
        version=range_set.version,
        rows_by_analyte=rows,
        ratios=ratio_definitions(range_set.ratios),
        original_units=original_units,
    )
