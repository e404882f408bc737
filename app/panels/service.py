"""Panel ingestion and reading (trends: ``trends``; re-interpretation: ``reinterpretation``;
the clinical path itself: ``app.domain.pipeline``). One transaction per call (the caller's)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.db import new_id, utcnow
from app.core.errors import ConflictError, NotFoundError, UnprocessableError
from app.domain.catalog import Catalog, default_catalog
from app.domain.errors import DomainError
from app.domain.pipeline import InterpretedResult, NormalizedResult
from app.kit import query_params
from app.models.panel import Panel, Result
from app.ops import metrics
from app.panels import known_patients, repository
from app.panels.interpretation import (
    interpret,
    normalize,
    patient_facts,
    result_content,
)
from app.panels.repository import PatientForPanel
from app.panels.schemas import PanelCreate, PanelOut
from app.panels.views import panel_fields, panel_out, render
from app.patients import matching as patient_matching
from app.patients import service as patients_service
from app.ranges import service as ranges
from app.ranges.compiled import CompiledRangeSet


class UnknownPatientError(
    UnprocessableError,
    slug="unknown-patient",
    title="The panel names a patient this organization does not have",
): ...


# Said by every accession conflict: the how-to for a sender whose re-send was refused.
CORRECTION_HOW_TO = (
    "To correct the stored panel, send it again with status `corrected` or `amended` (FHIR "
    "DiagnosticReport.status), or `final` while the stored one is `preliminary`; to correct or "
    "withdraw single results, give them the status `corrected`, `amended`, `entered-in-error` "
    "or `cancelled` (FHIR Observation.status). Results a correction leaves out are kept."
)


class AccessionConflictError(
    ConflictError,
    slug="accession-conflict",
    title="A different panel is stored under this accession",
):
    def __init__(self, conflict: str, **extensions: object) -> None:
        super().__init__(f"{conflict} {CORRECTION_HOW_TO}", **extensions)
        self.conflict = conflict  # without the how-to, for channels that say it their own way


@dataclass(frozen=True)
class IngestOutcome:
    panel: PanelOut
    document: str
    created: bool
    # A correction of the panel stored under the same source + accession (app.panels.corrections).
    corrected: bool = False


# Applies a re-send with different content to the stored panel (app.panels.corrections), given
# the stored panel and the patient the re-send resolved to; raises AccessionConflictError when
# the re-send is not a correction.
ConflictHandler = Callable[[Panel, uuid.UUID], Awaitable[IngestOutcome]]


def new_ids(count: int) -> list[uuid.UUID]:
    """``count`` new row ids, time-ordered (``app.core.db.new_id``): a panel takes one for
    itself and one per result."""
    return [new_id() for _ in range(count)]


def payload_hash(data: PanelCreate, source_format: str, patient_id: uuid.UUID) -> str:
    """What makes two posts "the same panel": the content and the patient it resolved to (so a
    re-send naming the patient by identifier instead of id is still the same panel)."""
    content = data.model_dump(mode="json", exclude={"patient"})
    for result in content["results"]:
        # A result without its own status takes the panel's: hashed as before statuses existed,
        # so a panel stored earlier and re-sent unchanged is still the same panel.
        if result.get("status") is None:
            result.pop("status", None)
        if result.get("lab_comment") is None:  # likewise for results without a lab comment
            result.pop("lab_comment", None)
    # The patient id as its text: orjson writes a uuid.UUID as str() does, and calls str() on
    # anything else (asyncpg's UUID subclass), without a str() here per panel.
    canonical = orjson.dumps(
        {"format": source_format, "patient": patient_id, "panel": content},
        default=str,
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def read_patient_with_claim(
    session: AsyncSession, *, organization_id: uuid.UUID, data: PanelCreate
) -> None:
    """PostgreSQL: have the Idempotency-Key claim look up the patient ``ingest`` resolves (one
    statement instead of two); a request without a key, or a replay, runs it as before."""
    ref = data.patient
    identifier = (ref.identifier.system, ref.identifier.value) if ref.identifier else None
    repository.read_patient_along(
        session, organization_id=organization_id, patient_id=ref.id, identifier=identifier
    )


async def _resolve_patient(
    session: AsyncSession, *, organization_id: uuid.UUID, data: PanelCreate
) -> PatientForPanel:
    ref = data.patient
    identifier = (ref.identifier.system, ref.identifier.value) if ref.identifier else None
    if identifier is not None:
        # A placeholder value or an SSN never names a patient (app/data/patient_matching.yaml).
        patient_matching.check_reference(*identifier)
    patient = await repository.patient_for_panel(
        session, organization_id=organization_id, patient_id=ref.id, identifier=identifier
    )
    if patient is None:
        raise UnknownPatientError(
            "No patient matches body.patient; register the patient first.",
            errors=[{"field": "body.patient", "message": "no such patient"}],
        )
    if isinstance(session.bind, AsyncEngine):  # for the one-statement POST (fast_post)
        known_patients.remember(
            known_patients.key_of(session.bind, organization_id, ref.id, identifier), patient
        )
    return patient


async def ingest(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    data: PanelCreate,
    source_format: str = "json",
    catalog: Catalog | None = None,
    on_conflict: ConflictHandler | None = None,
) -> IngestOutcome:
    """Store a panel with its interpreted results, or return the identical stored one.

    The natural key (organization, source, accession) makes a re-sent panel a no-op: the same
    content returns the stored panel (created=False); different content is a 409, unless
    ``on_conflict`` applies it as a correction (``app.panels.corrections.ingest_or_correct``).
    """
    catalog = catalog or default_catalog()
    normalized = normalize(data, specimen=data.specimen.value, catalog=catalog)
    patient = await _resolve_patient(session, organization_id=organization_id, data=data)
    range_set = await ranges.compiled_if_any(
        session,
        organization_id=organization_id,
        range_set_id=patient.range_set_id,
        catalog=catalog,
    )
    panel, rows, out = new_panel(
        data,
        normalized,
        organization_id=organization_id,
        patient=patient,
        range_set=range_set,
        source_format=source_format,
    )
    if not await repository.insert_panel_if_new(session, dict(panel_values(panel))):
        return await _existing(
            session,
            organization_id=organization_id,
            data=data,
            digest=panel.payload_hash,
            patient_id=patient.id,
            on_conflict=on_conflict,
        )
    await repository.insert_results(session, rows)
    metrics.count_ingested(session, source_format=source_format, results=len(rows))
    assert panel.document is not None  # new_panel always renders it
    return IngestOutcome(panel=out, document=panel.document, created=True)


_PANEL_COLUMNS = tuple(column.key for column in Panel.__table__.columns)


def panel_values(panel: Panel) -> dict[str, object]:
    """The column values of a panel ``new_panel`` built (its namespace's own dict)."""
    values: dict[str, object] = vars(panel)
    return values


def new_panel(
    data: PanelCreate,
    normalized: list[NormalizedResult],
    *,
    organization_id: uuid.UUID,
    patient: PatientForPanel,
    range_set: CompiledRangeSet | None,
    source_format: str,
) -> tuple[Panel, list[dict[str, object]], PanelOut]:
    """The panel ``ingest`` inserts for ``data`` (document set), its results' rows and its
    view. Pure (no I/O), so ``app.panels.bulk`` builds a chunk's panels with it; raises what
    ``interpret`` raises for refused results."""
    panel, rows, fields = new_panel_rows(
        data,
        normalized,
        organization_id=organization_id,
        patient=patient,
        range_set=range_set,
        source_format=source_format,
    )
    return panel, rows, PanelOut.model_validate(fields)


def new_panel_rows(
    data: PanelCreate,
    normalized: list[NormalizedResult],
    *,
    organization_id: uuid.UUID,
    patient: PatientForPanel,
    range_set: CompiledRangeSet | None,
    source_format: str,
) -> tuple[Panel, list[dict[str, object]], dict[str, Any]]:
    """``new_panel`` without validating the view (~10% of building a panel,
    bench/panel_cpu.py), for a caller that answers with the panel's document: the panel, its
    results' rows and the view's fields as plain dicts (``views.panel_fields``)."""
    interpreted = interpret(
        normalized,
        range_set=range_set,
        patient=patient_facts(patient, data.collected_at),
        specimen=data.specimen.value,
        refuse_impossible=True,
    )
    now = utcnow()
    # A plain namespace of the row's values, not an ORM instance (~0.1 ms a panel, measured):
    # nothing adds it to a session, the callers insert its values with Core and read its
    # attributes. Every column is present (None when not set, as on an unflushed instance).
    panel = cast(Panel, SimpleNamespace(**dict.fromkeys(_PANEL_COLUMNS)))
    ids = new_ids(1 + len(interpreted.verdicts))
    panel_values(panel).update(
        id=ids[0],
        organization_id=organization_id,
        patient_id=patient.id,
        source=data.source,
        accession=data.accession,
        specimen=data.specimen.value,
        status=data.status,
        collected_at=data.collected_at,
        received_at=data.received_at,
        performing_lab=data.performing_lab,
        source_format=source_format,
        payload_hash=payload_hash(data, source_format, patient.id),
        range_set_id=range_set.id if range_set else None,
        interpretation_version=1,
        interpreted_at=now,
        has_critical=interpreted.has_critical,
        has_possible_critical=interpreted.has_possible_critical,
        ratios=interpreted.ratios,
        created_at=now,
    )
    rows = [
        _result_values(panel, patient.id, result, verdict, result_id)
        for (result, verdict), result_id in zip(interpreted.pairs(), ids[1:], strict=True)
    ]
    fields = panel_fields(
        panel,
        # The view reads attributes only: plain namespaces of the very row values inserted, not
        # ORM instances (whose instrumented construction was ~15% of a POST's CPU, measured).
        [cast(Result, SimpleNamespace(**row)) for row in rows],
        range_set.name if range_set else None,
        range_set.version if range_set else None,
    )
    # The document is written from the fields directly: the bytes the view model would write.
    panel.document = render(fields)
    return panel, rows, fields


async def _existing(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    data: PanelCreate,
    digest: str,
    patient_id: uuid.UUID,
    on_conflict: ConflictHandler | None,
) -> IngestOutcome:
    stored = await repository.get_by_natural_key(
        session, organization_id=organization_id, source=data.source, accession=data.accession
    )
    if stored is None:  # the conflicting row vanished: only possible if it was rolled back
        raise ConflictError("The panel was being written concurrently; retry.")
    if stored.payload_hash != digest:
        if on_conflict is not None:
            return await on_conflict(stored, patient_id)
        raise AccessionConflictError(
            f"Accession {data.accession!r} from {data.source!r} is already stored with "
            "different content.",
            panel_id=str(stored.id),
        )
    return await stored_outcome(session, organization_id=organization_id, panel_id=stored.id)


async def stored_outcome(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> IngestOutcome:
    """The outcome of an identical re-send: the stored panel, nothing written."""
    document = await get_document(session, organization_id=organization_id, panel_id=panel_id)
    return IngestOutcome(
        panel=PanelOut.model_validate_json(document), document=document, created=False
    )


def _result_values(
    panel: Panel,
    patient_id: uuid.UUID,
    result: NormalizedResult,
    verdict: InterpretedResult,
    result_id: uuid.UUID,
) -> dict[str, object]:
    return {
        "id": result_id,
        "organization_id": panel.organization_id,
        "panel_id": panel.id,
        "patient_id": patient_id,
        "position": result.position,
        "collected_at": panel.collected_at,
        **result_content(result, verdict),
    }


async def get_document(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> str:
    """The panel as JSON: the document stored with its latest interpretation (one indexed
    read), or rendered from its rows when none is stored."""
    found, document = await repository.get_document(
        session, organization_id=organization_id, panel_id=panel_id
    )
    if not found:
        raise NotFoundError("No panel with this id.")
    if document is None:
        panel = await get(session, organization_id=organization_id, panel_id=panel_id)
        return panel.model_dump_json()
    return document


def patient_of(document: str) -> uuid.UUID:
    """The patient a panel's JSON document names."""
    return uuid.UUID(orjson.loads(document)["patient_id"])


async def get(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> PanelOut:
    row = await repository.get_with_results(
        session, organization_id=organization_id, panel_id=panel_id
    )
    if row is None:
        raise NotFoundError("No panel with this id.")
    panel, name, version = row
    return panel_out(panel, list(panel.results), name, version)


async def list_for_patient(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    collected_from: datetime | None,
    collected_to: datetime | None,
    analyte: str | None,
    flag: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[PanelOut]:
    await require_patient(session, organization_id=organization_id, patient_id=patient_id)
    code = _analyte_code(analyte) if analyte else None
    window = repository.PatientWindow(organization_id, patient_id, collected_from, collected_to)
    rows = await repository.list_for_patient(
        session,
        window,
        analyte=code,
        flag=flag,
        limit=limit,
        after=after,
    )
    return [panel_out(panel, list(panel.results), name, version) for panel, name, version in rows]


class InvalidQueryError(query_params.InvalidQueryError):
    title = "A query parameter cannot be used"


def _analyte_code(name: str) -> str:
    try:
        return default_catalog().resolve(name).code
    except DomainError as exc:
        raise InvalidQueryError(
            str(exc), errors=[{"field": "query.analyte", "message": str(exc)}]
        ) from exc


# The panel routes' 404 for a patient (also used by trends and re-interpretation).
require_patient = patients_service.get_plain_or_raise
