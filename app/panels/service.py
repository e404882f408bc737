"""Panel ingestion, reading and re-interpretation. One transaction per call (the caller's)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import cast

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app import query_params
from app.db import utcnow
from app.domain.catalog import Analyte, Catalog, default_catalog
from app.domain.errors import DomainError
from app.domain.result_status import ResultStatus, is_withdrawn, withdrawn_note
from app.domain.types import PatientFacts, Sex
from app.domain.units import convert
from app.errors import ConflictError, NotFoundError, UnprocessableError
from app.models.panel import Panel, PanelInterpretation, Result
from app.models.patient import Patient
from app.ops import metrics
from app.pagination import encode_cursor
from app.panels import repository
from app.panels.interpretation import (
    InterpretedResult,
    NormalizedResult,
    interpret_results,
    normalize_results,
    panel_ratios,
    result_content,
    stored_as_normalized,
)
from app.panels.repository import PatientForPanel
from app.panels.schemas import (
    PanelCreate,
    PanelOut,
    RatioHistoryOut,
    RatioPointOut,
    TrendOut,
    TrendPointOut,
)
from app.panels.views import panel_out, result_snapshot
from app.patients import matching as patient_matching
from app.patients import repository as patients
from app.ranges import service as ranges
from app.ranges.compiled import CompiledRangeSet


class UnknownPatientError(UnprocessableError):
    type_slug = "unknown-patient"
    title = "The panel names a patient this organization does not have"


# Said by every accession conflict: the how-to for a sender whose re-send was refused.
CORRECTION_HOW_TO = (
    "To correct the stored panel, send it again with status `corrected` or `amended` (FHIR "
    "DiagnosticReport.status), or `final` while the stored one is `preliminary`; to correct or "
    "withdraw single results, give them the status `corrected`, `amended`, `entered-in-error` "
    "or `cancelled` (FHIR Observation.status). Results a correction leaves out are kept."
)


class AccessionConflictError(ConflictError):
    type_slug = "accession-conflict"
    title = "A different panel is stored under this accession"

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
    canonical = orjson.dumps(
        {"format": source_format, "patient": str(patient_id), "panel": content},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


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
    return patient


def patient_facts(patient: Patient | PatientForPanel, collected_at: datetime) -> PatientFacts:
    return PatientFacts(
        sex=Sex(patient.sex), birth_date=patient.birth_date, on_date=collected_at.date()
    )


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
    normalized = with_statuses(
        normalize_results(
            data.results, specimen=data.specimen.value, catalog=catalog, field="body.results"
        ),
        data,
    )
    patient = await _resolve_patient(session, organization_id=organization_id, data=data)
    digest = payload_hash(data, source_format, patient.id)
    range_set = await ranges.compiled_if_any(
        session,
        organization_id=organization_id,
        range_set_id=patient.range_set_id,
        catalog=catalog,
    )
    interpreted = interpret_with_status(
        normalized,
        range_set=range_set,
        patient=patient_facts(patient, data.collected_at),
        specimen=data.specimen.value,
        refuse_impossible=True,
        field="body.results",
    )
    now = utcnow()
    panel = Panel(
        id=uuid.uuid4(),
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
        payload_hash=digest,
        range_set_id=range_set.id if range_set else None,
        interpretation_version=1,
        interpreted_at=now,
        has_critical=any(i.critical for i in interpreted),
        has_possible_critical=any(i.possibly_critical for i in interpreted),
        ratios=panel_ratios(normalized, range_set),
        created_at=now,
    )
    rows = [
        _result_values(panel, patient.id, result, verdict)
        for result, verdict in zip(normalized, interpreted, strict=True)
    ]
    out = panel_out(
        panel,
        [Result(**row) for row in rows],
        range_set.name if range_set else None,
        _version(range_set),
    )
    panel.document = out.model_dump_json()
    panel_values = {c.key: getattr(panel, c.key) for c in Panel.__table__.columns}
    if not await repository.insert_panel_if_new(session, panel_values):
        return await _existing(
            session,
            organization_id=organization_id,
            data=data,
            digest=digest,
            patient_id=patient.id,
            on_conflict=on_conflict,
        )
    await repository.insert_results(session, rows)
    metrics.count_ingested(session, source_format=source_format, results=len(rows))
    return IngestOutcome(panel=out, document=panel.document, created=True)


def with_statuses(
    normalized: Sequence[NormalizedResult], data: PanelCreate
) -> list[NormalizedResult]:
    """Each normalized result with its status: its own, else the panel's."""
    return [replace(n, status=data.result_status(n.position)) for n in normalized]


def interpret_with_status(
    normalized: Sequence[NormalizedResult],
    *,
    range_set: CompiledRangeSet | None,
    patient: PatientFacts,
    specimen: str,
    refuse_impossible: bool,
    field: str = "results",
) -> list[InterpretedResult]:
    """``interpret_results`` for every result, in order, with withdrawn results (cancelled,
    entered-in-error) made harmless: interpreted for the record only, never critical or
    possibly critical (so never in ``has_critical``), and an impossible withdrawn value (often
    the reason it was withdrawn) does not refuse the panel."""
    current = [n for n in normalized if not is_withdrawn(n.status)]
    withdrawn = [n for n in normalized if is_withdrawn(n.status)]
    verdicts = iter(
        interpret_results(
            current,
            range_set=range_set,
            patient=patient,
            specimen=specimen,
            refuse_impossible=refuse_impossible,
            field=field,
        )
    )
    kept = iter(
        interpret_results(
            withdrawn,
            range_set=range_set,
            patient=patient,
            specimen=specimen,
            refuse_impossible=False,
            field=field,
        )
    )
    out: list[InterpretedResult] = []
    for result in normalized:
        if not is_withdrawn(result.status):
            out.append(next(verdicts))
            continue
        verdict = next(kept)
        notes = [withdrawn_note(result.status), verdict.note]
        out.append(
            replace(
                verdict,
                critical=False,
                possibly_critical=False,
                note="; ".join(n for n in notes if n),
            )
        )
    return out


def _version(range_set: CompiledRangeSet | None) -> int | None:
    return range_set.version if range_set else None


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
    document = await get_document(session, organization_id=organization_id, panel_id=stored.id)
    return IngestOutcome(
        panel=PanelOut.model_validate_json(document), document=document, created=False
    )


def _result_values(
    panel: Panel, patient_id: uuid.UUID, result: NormalizedResult, verdict: InterpretedResult
) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
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
    await _require_patient(session, organization_id=organization_id, patient_id=patient_id)
    code = _analyte_code(analyte) if analyte else None
    rows = await repository.list_for_patient(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        collected_from=collected_from,
        collected_to=collected_to,
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


async def _require_patient(
    session: AsyncSession, *, organization_id: uuid.UUID, patient_id: uuid.UUID
) -> Patient:
    patient = await patients.get_plain(
        session, organization_id=organization_id, patient_id=patient_id
    )
    if patient is None:
        raise NotFoundError("No patient with this id.")
    return patient


async def analyte_history(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    analyte: str,
    unit: str | None,
    collected_from: datetime | None,
    collected_to: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> TrendOut:
    """A patient's results for one analyte, oldest first, in the canonical or requested unit."""
    await _require_patient(session, organization_id=organization_id, patient_id=patient_id)
    catalog = default_catalog()
    try:
        spec = catalog.resolve(analyte)
    except DomainError as exc:
        message = str(exc)
        if _RATIO_CODE.fullmatch(analyte) and analyte.endswith("_molar"):
            message += (
                f" `{analyte}` looks like a ratio: its history is at "
                f"/api/v1/patients/{{patient_id}}/ratios/{analyte}/history."
            )
        raise InvalidQueryError(
            message, errors=[{"field": "path.analyte", "message": message}]
        ) from exc
    target = spec.canonical_unit
    if unit is not None:
        try:
            target = catalog.normalize_unit_for(spec, unit)
            convert(Decimal(1), analyte=spec, from_unit=spec.canonical_unit, to_unit=target)
        except DomainError as exc:
            raise InvalidQueryError(
                str(exc), errors=[{"field": "query.unit", "message": str(exc)}]
            ) from exc
    results = await repository.history_for_analyte(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        analyte=spec.code,
        collected_from=collected_from,
        collected_to=collected_to,
        limit=limit + 1,
        after=after,
    )
    # Cheap: one count on the (patient, analyte, collected_at) index.
    total = await repository.count_history_for_analyte(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        analyte=spec.code,
        collected_from=collected_from,
        collected_to=collected_to,
    )
    page = list(results[:limit])
    points = [_trend_point(r, spec, target) for r in page]
    next_cursor = (
        encode_cursor(page[-1].collected_at, page[-1].id) if len(results) > limit else None
    )
    return TrendOut(
        analyte=spec.code,
        unit=target,
        total=total,
        items=points,
        limit=limit,
        next_cursor=next_cursor,
    )


def _trend_point(result: Result, spec: Analyte, unit: str) -> TrendPointOut:
    """One chart point: the value and the limits that applied to it (the result's stored
    range snapshot, which is in the canonical unit), both in ``unit``."""
    snapshot = result.reference_range or {}
    from_unit = snapshot.get("unit") or result.canonical_unit

    def limit_of(key: str) -> Decimal | None:
        raw = snapshot.get(key)
        if raw is None:
            return None
        return convert(Decimal(str(raw)), analyte=spec, from_unit=from_unit, to_unit=unit)

    return TrendPointOut(
        result_id=result.id,
        panel_id=result.panel_id,
        collected_at=result.collected_at,
        value=convert(
            result.canonical_value, analyte=spec, from_unit=result.canonical_unit, to_unit=unit
        ),
        comparator=result.comparator,
        unit=unit,
        interpretation=result.interpretation,
        critical=result.critical,
        possibly_critical=result.possibly_critical,
        status=cast(ResultStatus, result.status),
        reference_low=limit_of("low"),
        reference_high=limit_of("high"),
        critical_low=limit_of("critical_low"),
        critical_high=limit_of("critical_high"),
    )


_RATIO_CODE = re.compile(r"[a-z0-9_]{1,50}")


async def ratio_history(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    code: str,
    collected_from: datetime | None,
    collected_to: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> RatioHistoryOut:
    """One ratio (e.g. `ca_mg_molar`) per panel of the patient that has it, newest first, with
    the ratio's reference interval that applied to that panel."""
    await _require_patient(session, organization_id=organization_id, patient_id=patient_id)
    rows = await repository.panel_ratios_of_patient(
        session,
        organization_id=organization_id,
        patient_id=patient_id,
        collected_from=collected_from,
        collected_to=collected_to,
    )
    found = [
        (panel_id, collected_at, ratio)
        for panel_id, collected_at, ratios in rows
        for ratio in ratios or []
        if ratio.get("code") == code
    ]
    display = found[0][2].get("display", code) if found else None
    if display is None:
        active = await ranges.active_compiled(session, organization_id=organization_id)
        defined = {r.code: r.display for r in active.ratios} if active else {}
        if code not in defined:
            known = ", ".join(sorted(defined)) or "none"
            raise NotFoundError(
                f"No panel of this patient has the ratio `{code}`, and the active "
                f"reference-range set does not define it (it defines: {known})."
            )
        display = defined[code]
    total = len(found)
    if after is not None:
        moment, last_id = after
        found = [f for f in found if f[1] < moment or (f[1] == moment and f[0] < last_id)]
    page = found[:limit]
    next_cursor = encode_cursor(page[-1][1], page[-1][0]) if len(found) > limit else None
    return RatioHistoryOut(
        code=code,
        display=display,
        total=total,
        items=[
            RatioPointOut(
                panel_id=panel_id,
                collected_at=collected_at,
                value=_dec(ratio.get("value")),
                interpretation=ratio.get("interpretation"),
                low=_dec(ratio.get("low")),
                high=_dec(ratio.get("high")),
                note=ratio.get("note"),
            )
            for panel_id, collected_at, ratio in page
        ],
        limit=limit,
        next_cursor=next_cursor,
    )


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


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
            organization_id=panel.organization_id,
            panel_id=panel.id,
            version=panel.interpretation_version,
            range_set_id=panel.range_set_id,
            interpreted_at=panel.interpreted_at,
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
    patient = await _require_patient(
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
    normalized = [stored_as_normalized(r, catalog) for r in results]
    interpreted = interpret_with_status(
        normalized,
        range_set=range_set,
        patient=patient_facts(patient, panel.collected_at),
        specimen=panel.specimen,
        refuse_impossible=False,
    )
    for result, verdict in zip(results, interpreted, strict=True):
        result.interpretation = verdict.code.value if verdict.code else None
        result.critical = verdict.critical
        result.possibly_critical = verdict.possibly_critical
        result.interpretation_status = verdict.status
        result.interpretation_note = verdict.note
        result.lab_disagreement = verdict.lab_disagreement
        result.reference_range = verdict.reference_range
    panel.interpretation_version += 1
    panel.interpreted_at = utcnow()
    panel.range_set_id = range_set.id if range_set else None
    panel.has_critical = any(i.critical for i in interpreted)
    panel.has_possible_critical = any(i.possibly_critical for i in interpreted)
    panel.ratios = panel_ratios(normalized, range_set)
    out = panel_out(panel, results, range_set.name if range_set else None, _version(range_set))
    panel.document = out.model_dump_json()
    await session.flush()
    return out


async def interpretation_versions(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> tuple[PanelOut, Sequence[PanelInterpretation]]:
    current = await get(session, organization_id=organization_id, panel_id=panel_id)
    older = await repository.superseded_interpretations(
        session, organization_id=organization_id, panel_id=panel_id
    )
    return current, older
