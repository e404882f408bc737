"""Corrections (OBX-11 ``C``) and final results after preliminary ones, for a stored panel.

The core ingestion refuses different content under a stored accession (409); an HL7 sender
corrects a result by re-sending the panel with the corrected OBX marked ``C``. Here the stored
results are updated in place (result ids stay stable), the values and verdicts they had are
kept as a superseded interpretation with the reason (so the panel's history shows what was
corrected and by which message), and the panel is re-interpreted with the same functions as
ingestion (``app.panels.interpretation``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.domain.catalog import Catalog, default_catalog
from app.errors import NotFoundError, UnprocessableError
from app.interop.hl7 import repository
from app.models.panel import Result
from app.panels import repository as panels
from app.panels.interpretation import (
    NormalizedResult,
    interpret_results,
    normalize_results,
    panel_ratios,
    result_content,
    stored_as_normalized,
)
from app.panels.schemas import PanelCreate, PanelOut
from app.panels.service import keep_superseded, patient_facts, payload_hash
from app.panels.views import panel_out
from app.ranges import service as ranges

SOURCE_FORMAT = "hl7v2"


class CorrectionRefusedError(UnprocessableError):
    type_slug = "correction-refused"
    title = "The correction cannot be applied to the stored panel"


async def correct_panel(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    panel_id: uuid.UUID,
    data: PanelCreate,
    reason: str,
    catalog: Catalog | None = None,
) -> PanelOut:
    """Apply ``data`` (the re-sent panel) to the stored panel: results of the same analyte are
    replaced, new analytes added, analytes not re-sent kept as they were."""
    catalog = catalog or default_catalog()
    await repository.lock_panel(session, organization_id=organization_id, panel_id=panel_id)
    row = await panels.get_with_results(session, organization_id=organization_id, panel_id=panel_id)
    if row is None:
        raise NotFoundError("No panel with this id.")
    panel = row[0]
    if data.specimen.value != panel.specimen:
        raise CorrectionRefusedError(
            f"The stored panel's specimen is {panel.specimen}; a correction cannot change it.",
            errors=[{"field": "body.specimen", "message": "differs from the stored panel"}],
        )
    corrected = normalize_results(
        data.results, specimen=panel.specimen, catalog=catalog, field="body.results"
    )
    patient = await panels.patient_for_panel(
        session, organization_id=organization_id, patient_id=panel.patient_id, identifier=None
    )
    assert patient is not None  # the panel's foreign key guarantees it
    range_set = await ranges.compiled_if_any(
        session,
        organization_id=organization_id,
        range_set_id=patient.range_set_id,
        catalog=catalog,
    )
    stored = list(panel.results)
    now = utcnow()
    keep_superseded(session, panel=panel, results=stored, reason=reason, now=now, with_values=True)

    merged, targets = _merge(stored, corrected, catalog, first_unsent=len(data.results))
    verdicts = interpret_results(
        merged,
        range_set=range_set,
        patient=patient_facts(patient, data.collected_at),
        specimen=panel.specimen,
        refuse_impossible=True,
        field="body.results",
    )
    position = max((r.position for r in stored), default=-1) + 1
    results: list[Result] = []
    for normalized, verdict, target in zip(merged, verdicts, targets, strict=True):
        values = result_content(normalized, verdict)
        if target is None:
            target = Result(
                id=uuid.uuid4(),
                organization_id=organization_id,
                panel_id=panel.id,
                patient_id=panel.patient_id,
                position=position,
                **values,
            )
            position += 1
            session.add(target)
        else:
            for name, value in values.items():
                setattr(target, name, value)
        target.collected_at = data.collected_at
        results.append(target)

    panel.status = data.status
    panel.collected_at = data.collected_at
    panel.received_at = data.received_at
    panel.performing_lab = data.performing_lab
    panel.payload_hash = payload_hash(data, SOURCE_FORMAT, panel.patient_id)
    panel.range_set_id = range_set.id if range_set else None
    panel.interpretation_version += 1
    panel.interpreted_at = now
    panel.has_critical = any(v.critical for v in verdicts)
    panel.has_possible_critical = any(v.possibly_critical for v in verdicts)
    panel.ratios = panel_ratios(merged, range_set)
    results.sort(key=lambda r: r.position)
    out = panel_out(
        panel,
        results,
        range_set.name if range_set else None,
        range_set.version if range_set else None,
    )
    panel.document = out.model_dump_json()
    await session.flush()
    return out


def _merge(
    stored: list[Result], corrected: list[NormalizedResult], catalog: Catalog, *, first_unsent: int
) -> tuple[list[NormalizedResult], list[Result | None]]:
    """The panel's results after the correction, each with the stored row it replaces (None
    for a new analyte). Results not re-sent get positions after the message's, so an error
    about them never names one of the message's OBX."""
    by_code = {n.analyte.code: n for n in corrected}
    stored_codes = {r.analyte for r in stored}
    merged: list[NormalizedResult] = []
    targets: list[Result | None] = []
    unsent = first_unsent
    for row in stored:
        replacement = by_code.get(row.analyte)
        if replacement is None:
            merged.append(replace(stored_as_normalized(row, catalog), position=unsent))
            unsent += 1
        else:
            merged.append(replacement)
        targets.append(row)
    for normalized in corrected:
        if normalized.analyte.code not in stored_codes:
            merged.append(normalized)
            targets.append(None)
    return merged, targets
