"""Re-interpretation of a stored panel, and the interpretations it supersedes (kept readable)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.core.errors import NotFoundError
from app.domain.catalog import default_catalog
from app.domain.pipeline import InterpretedPanel
from app.models.panel import Panel, PanelInterpretation, Result
from app.panels import repository
from app.panels.interpretation import interpret, patient_facts, stored_as_normalized
from app.panels.schemas import PanelOut
from app.panels.service import get, require_patient
from app.panels.views import panel_out, result_snapshot
from app.ranges import service as ranges
from app.ranges.compiled import CompiledRangeSet

# The superseded interpretation's columns that are the panel's own, as they were.
_KEPT_FROM_PANEL = ("organization_id", "range_set_id", "interpreted_at")


def keep_superseded(
    session: AsyncSession,
    *,
    panel: Panel,
    results: Sequence[Result],
    reason: str | None,
    now: datetime,
    with_values: bool = False,
) -> None:
    """Keep the panel's current interpretation readable before it is replaced; with
    ``with_values`` also each result's value and unit as sent (every caller passes it now, so
    each version of the history reads like the current one, values included)."""

    def snapshot(result: Result) -> dict[str, object]:
        kept = result_snapshot(result)
        if with_values:
            kept |= {"value_text": result.value_text, "unit": result.unit}
        return kept

    repository.add_superseded(
        session,
        PanelInterpretation(
            **{name: getattr(panel, name) for name in _KEPT_FROM_PANEL},
            panel_id=panel.id,
            version=panel.interpretation_version,
            superseded_at=now,
            reason=reason,
            results=[snapshot(r) for r in results],
            ratios=list(panel.ratios or []),
        ),
    )


async def reinterpret(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID, reason: str | None
) -> PanelOut:
    """Interpret the stored values again with the active range set, keeping the old verdicts."""
    row = await repository.get_with_results(
        session, organization_id=organization_id, panel_id=panel_id
    )
    if row is None:
        raise NotFoundError("No panel with this id.")
    panel = row[0]
    patient = await require_patient(
        session, organization_id=organization_id, patient_id=panel.patient_id
    )
    catalog = default_catalog()
    range_set = await ranges.active_compiled(
        session, organization_id=organization_id, catalog=catalog
    )
    results = list(panel.results)
    keep_superseded(
        session, panel=panel, results=results, reason=reason, now=utcnow(), with_values=True
    )
    interpreted = interpret(
        [stored_as_normalized(r, catalog) for r in results],
        range_set=range_set,
        patient=patient_facts(patient, panel.collected_at),
        specimen=panel.specimen,
        refuse_impossible=False,
    )
    for result, verdict in zip(results, interpreted.verdicts, strict=True):
        result.interpretation = verdict.code.value if verdict.code else None
        result.critical = verdict.critical
        result.possibly_critical = verdict.possibly_critical
        result.interpretation_status = verdict.status
        result.interpretation_note = verdict.note
        result.lab_disagreement = verdict.lab_disagreement
        result.reference_range = verdict.reference_range
    out = record_interpretation(panel, results, interpreted, range_set, now=utcnow())
    await session.flush()
    return out


def record_interpretation(
    panel: Panel,
    results: list[Result],
    interpreted: InterpretedPanel,
    range_set: CompiledRangeSet | None,
    *,
    now: datetime,
) -> PanelOut:
    """The panel's next interpretation version (re-interpretation, correction): the range set
    it used, its critical summary and ratios, and the document read back from then on."""
    panel.interpretation_version += 1
    panel.interpreted_at = now
    panel.range_set_id = range_set.id if range_set else None
    panel.has_critical = interpreted.has_critical
    panel.has_possible_critical = interpreted.has_possible_critical
    panel.ratios = interpreted.ratios
    out = panel_out(
        panel,
        results,
        range_set.name if range_set else None,
        range_set.version if range_set else None,
    )
    panel.document = out.model_dump_json()
    return out


async def interpretation_versions(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> tuple[PanelOut, Sequence[PanelInterpretation]]:
    current = await get(session, organization_id=organization_id, panel_id=panel_id)
    older = await repository.superseded_interpretations(
        session, organization_id=organization_id, panel_id=panel_id
    )
    return current, older
