"""The chunk-level fast path of a panel batch: which lines are plain new panels, built in
memory from a few chunk-wide queries (patients, existing natural keys) and the cached compiled
range set, so ``app.panels.bulk`` can insert them all at once.

A line is left to the per-line path (``corrections.ingest_or_correct``) whenever it is not
plain: its patient is not found or its reference is refused, its results are refused, its
source + accession is already stored (an unchanged re-send or a correction), or its source +
accession occurs more than once in the chunk (so the second is decided against the first, as
in a single POST, and never stored twice). Those lines' natural keys never collide with a
fast line's, so the order in which the two paths write does not change any outcome.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError
from app.domain.catalog import Catalog
from app.domain.errors import DomainError
from app.panels import bulk, bulk_repository
from app.panels import repository as panels_repository
from app.panels.repository import PatientForPanel
from app.panels.schemas import PanelCreate
from app.patients import matching as patient_matching
from app.ranges import service as ranges
from app.ranges.compiled import CompiledRangeSet

# Panels built between two turns of the event loop.
_BUILDS_PER_TURN = 25

Patients = tuple[dict[uuid.UUID, PatientForPanel], dict[tuple[str, str], PatientForPanel]]


def _patient_of(data: PanelCreate, patients: Patients) -> PatientForPanel | None:
    ref = data.patient
    if ref.id is not None:
        return patients[0].get(ref.id)
    assert ref.identifier is not None
    identifier = (ref.identifier.system, ref.identifier.value)
    try:
        patient_matching.check_reference(*identifier)
    except AppError:
        return None  # refused by the per-line path, with its own problem
    return patients[1].get(identifier)


async def _range_sets(
    session: AsyncSession,
    organization_id: uuid.UUID,
    patients: Patients,
    catalog: Catalog,
) -> dict[uuid.UUID | None, CompiledRangeSet | None]:
    """The compiled set of each range set the chunk's patients use (one, the active set; the
    compilation is cached). A set that cannot be loaded is left out: its lines go per-line."""
    ids = {p.range_set_id for found in patients for p in found.values()}
    compiled: dict[uuid.UUID | None, CompiledRangeSet | None] = {}
    for range_set_id in ids:
        try:
            compiled[range_set_id] = await ranges.compiled_if_any(
                session,
                organization_id=organization_id,
                range_set_id=range_set_id,
                catalog=catalog,
            )
        except AppError:
            continue
    return compiled


async def plan(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    lines: Sequence[tuple[int, PanelCreate]],
    source_format: str,
    catalog: Catalog,
) -> dict[int, bulk.NewPanel]:
    """The lines that are plain new panels, by line number, each built as ``ingest`` would."""
    keys = Counter((data.source, data.accession) for _, data in lines)
    existing = await bulk_repository.existing_natural_keys(
        session, organization_id=organization_id, keys=list(keys)
    )
    patients = await panels_repository.patients_for_panels(
        session,
        organization_id=organization_id,
        ids=[data.patient.id for _, data in lines if data.patient.id is not None],
        identifiers=[
            (data.patient.identifier.system, data.patient.identifier.value)
            for _, data in lines
            if data.patient.identifier is not None
        ],
    )
    range_sets = await _range_sets(session, organization_id, patients, catalog)
    planned: dict[int, bulk.NewPanel] = {}
    for position, (number, data) in enumerate(lines, start=1):
        if position % _BUILDS_PER_TURN == 0:
            # Let the chunk before this one (pipelined, app.batches.service) take its next
            # round trip instead of waiting for the whole chunk's build.
            await asyncio.sleep(0)
        key = (data.source, data.accession)
        patient = _patient_of(data, patients)
        if keys[key] > 1 or key in existing or patient is None:
            continue
        if patient.range_set_id not in range_sets:
            continue
        try:
            planned[number] = bulk.build(
                data,
                organization_id=organization_id,
                patient=patient,
                range_set=range_sets[patient.range_set_id],
                source_format=source_format,
                catalog=catalog,
            )
        except (AppError, DomainError):
            continue  # refused results: the per-line path answers the same problem
    return planned
