"""New panels a chunk at a time (``app.batches``): the same rows and document as
``app.panels.service.ingest`` stores for one panel, written with one multi-row INSERT each for
panels and results instead of several round trips per panel.

Only the plain case is handled here: a panel whose patient is known and whose natural key is
new. Everything else (unknown patient, refused results, an existing key: re-send or
correction) is left to the caller's per-panel path, which decides it exactly as a single POST.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.catalog import Catalog
from app.models.panel import Panel
from app.ops import metrics
from app.panels import bulk_repository
from app.panels.interpretation import normalize
from app.panels.repository import PatientForPanel
from app.panels.schemas import PanelCreate
from app.panels.service import new_panel_rows
from app.ranges.compiled import CompiledRangeSet

_PANEL_COLUMNS = [column.key for column in Panel.__table__.columns]


@dataclass(frozen=True)
class NewPanel:
    """A panel ready to insert: its columns (document included) and its results' rows."""

    values: dict[str, Any]
    results: list[dict[str, Any]]

    @property
    def id(self) -> uuid.UUID:
        panel_id: uuid.UUID = self.values["id"]
        return panel_id


def build(
    data: PanelCreate,
    *,
    organization_id: uuid.UUID,
    patient: PatientForPanel,
    range_set: CompiledRangeSet | None,
    source_format: str,
    catalog: Catalog,
) -> NewPanel:
    """The panel ``ingest`` would insert for ``data``. Pure (no I/O); raises what ``ingest``
    raises for refused results, so a caller can leave such a panel to ``ingest``."""
    normalized = normalize(data, specimen=data.specimen.value, catalog=catalog)
    panel, rows, _view = new_panel_rows(
        data,
        normalized,
        organization_id=organization_id,
        patient=patient,
        range_set=range_set,
        source_format=source_format,
    )
    return NewPanel({key: getattr(panel, key) for key in _PANEL_COLUMNS}, rows)


async def insert_new(
    session: AsyncSession, panels: list[NewPanel], *, source_format: str
) -> set[uuid.UUID]:
    """Insert the panels (those whose natural key is still free) and their results: the ids
    inserted. A panel left out (stored meanwhile by a concurrent sender) gets no results."""
    # Sorted by natural key: two senders inserting the same panels in opposite orders then
    # take the unique index's locks in one order and wait for each other, never deadlock.
    ordered = sorted(panels, key=lambda p: (p.values["source"], p.values["accession"]))
    inserted = await bulk_repository.insert_panels_if_new(session, [p.values for p in ordered])
    rows = [row for panel in panels if panel.id in inserted for row in panel.results]
    if rows:
        await bulk_repository.insert_results(session, rows)
    for panel in panels:
        if panel.id in inserted:
            metrics.count_ingested(session, source_format=source_format, results=len(panel.results))
    return inserted
