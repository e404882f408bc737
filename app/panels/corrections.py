"""Corrections of a stored panel: the one path the native JSON API, FHIR and HL7 v2 share.

A panel re-sent under a stored source + accession with different content is a correction
(``correction_kind``) when its status is ``corrected`` or ``amended``; when any of its results
carries a revising status (``corrected``, ``amended``, ``entered-in-error``, ``cancelled``); or
when the stored panel is still ``preliminary`` and the new one is ``preliminary`` or ``final``
(the lab completing its results). Anything else, and any re-send naming another patient or
another specimen, is a 409 ``accession-conflict`` whose detail says how to send a correction.

A correction updates the stored results in place (result ids stay stable): a result of the same
analyte is replaced, a new analyte is added, and a stored result the correction does not
mention is kept as it was (results are never deleted; only an explicit withdrawal status
withdraws one). Before anything changes, the panel's current interpretation, with the values
and statuses it had, is kept as a superseded version with the reason (read back under
``GET /api/v1/panels/{id}/interpretations``). The panel is then re-interpreted with the same
pipeline as ingestion (``app.domain.pipeline``) against the organization's active range
set: ``has_critical`` / ``has_possible_critical`` and the ratios are recomputed without
withdrawn results. A draft or active plan resting on a result whose value changed, or that was
withdrawn, is marked as needing review (``app.plans.repository.flag_plans_resting_on``), in the
same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import new_id, utcnow
from app.core.errors import NotFoundError, UnprocessableError
from app.domain.catalog import Catalog, default_catalog
from app.domain.errors import DomainError
from app.domain.pipeline import NormalizedResult, panel_ratios
from app.domain.result_status import REVISING, ResultStatus, is_withdrawn, withdrawn_note
from app.models.panel import Panel, Result
from app.panels import repository
from app.panels.interpretation import (
    interpret,
    normalize,
    patient_facts,
    result_content,
    stored_as_normalized,
)
from app.panels.reinterpretation import keep_superseded, record_interpretation
from app.panels.repository import PanelRow
from app.panels.schemas import PanelCreate, PanelOut, ResultOut
from app.panels.service import (
    AccessionConflictError,
    IngestOutcome,
    ingest,
    payload_hash,
    stored_outcome,
)
from app.panels.views import panel_out
from app.plans.repository import RevisedResult, flag_plans_resting_on
from app.ranges import service as ranges

_CORRECTING_PANEL_STATUSES = frozenset({"corrected", "amended"})


class CorrectionRefusedError(
    UnprocessableError,
    slug="correction-refused",
    title="The correction cannot be applied to the stored panel",
): ...


def correction_kind(stored_status: str, data: PanelCreate) -> str | None:
    """What makes ``data`` a correction of a stored panel whose status is ``stored_status``
    (a short phrase kept in the panel's history), or None when it is not one."""
    if data.status in _CORRECTING_PANEL_STATUSES:
        return f"panel status {data.status}"
    revising = sorted({s for r in data.results if (s := r.status) is not None and s in REVISING})
    if stored_status == "preliminary":
        if revising:
            return f"result status {', '.join(revising)}"
        return f"{data.status} results after preliminary ones"
    # A preliminary panel never replaces a final or corrected one, whatever its results say.
    if revising and data.status != "preliminary":
        return f"result status {', '.join(revising)}"
    return None


async def ingest_or_correct(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    data: PanelCreate,
    source_format: str,
    via: str,
    catalog: Catalog | None = None,
) -> IngestOutcome:
    """``app.panels.service.ingest``, where different content under a stored source +
    accession is applied as a correction when it is one (``correction_kind``): 201 created,
    200 unchanged (identical re-send) or 200 corrected. ``via`` names the channel in the
    panel's history and in the review reason of plans it flags (``"the native API"``)."""

    async def correct(stored: Panel, patient_id: uuid.UUID) -> IngestOutcome:
        # Decided on the locked row: of two concurrent senders, the second sees the first's result.
        panel, _, _ = await _locked(session, organization_id=organization_id, panel_id=stored.id)
        if panel.payload_hash == payload_hash(data, source_format, patient_id):
            return await stored_outcome(session, organization_id=organization_id, panel_id=panel.id)
        kind = _correction_kind_or_conflict(panel, data, patient_id)
        out = await _apply_correction(
            session,
            panel=panel,
            data=data,
            reason=f"correction over {via} ({kind})",
            source_format=source_format,
            catalog=catalog or default_catalog(),
        )
        assert panel.document is not None
        return IngestOutcome(panel=out, document=panel.document, created=False, corrected=True)

    return await ingest(
        session,
        organization_id=organization_id,
        data=data,
        source_format=source_format,
        catalog=catalog,
        on_conflict=correct,
    )


def _correction_kind_or_conflict(panel: Panel, data: PanelCreate, patient_id: uuid.UUID) -> str:
    """What makes ``data`` a correction of the stored ``panel`` (``correction_kind``), or 409
    ``accession-conflict`` saying why it is not one."""
    where = f"Accession {data.accession!r} from {data.source!r}"
    if panel.patient_id != patient_id:
        raise AccessionConflictError(
            f"{where} is stored for another patient; a correction cannot move a panel to "
            "another patient. Check the patient, or send the panel under its own accession.",
            panel_id=str(panel.id),
        )
    if data.specimen.value != panel.specimen:
        raise AccessionConflictError(
            f"{where} is stored with specimen {panel.specimen}; a correction cannot change "
            "the specimen.",
            panel_id=str(panel.id),
        )
    kind = correction_kind(panel.status, data)
    if kind is None:
        raise AccessionConflictError(
            f"{where} is already stored ({panel.status}) with different content, and this "
            f"panel ({data.status}) is not a correction of it.",
            panel_id=str(panel.id),
        )
    return kind


async def correct_panel(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    panel_id: uuid.UUID,
    data: PanelCreate,
    reason: str,
    source_format: str,
    catalog: Catalog | None = None,
) -> PanelOut:
    """Apply ``data`` (the re-sent panel) to the stored panel ``panel_id`` as a correction, the
    caller having decided that it is one (``correction_kind``). A different specimen is
    refused (422 ``correction-refused``)."""
    panel, _, _ = await _locked(session, organization_id=organization_id, panel_id=panel_id)
    if data.specimen.value != panel.specimen:
        raise CorrectionRefusedError(
            f"The stored panel's specimen is {panel.specimen}; a correction cannot change it.",
            errors=[{"field": "body.specimen", "message": "differs from the stored panel"}],
        )
    return await _apply_correction(
        session,
        panel=panel,
        data=data,
        reason=reason,
        source_format=source_format,
        catalog=catalog or default_catalog(),
    )


async def _locked(
    session: AsyncSession, *, organization_id: uuid.UUID, panel_id: uuid.UUID
) -> PanelRow:
    row = await repository.get_with_results(
        session, organization_id=organization_id, panel_id=panel_id, for_update=True
    )
    if row is None:
        raise NotFoundError("No panel with this id.")
    return row


async def _apply_correction(
    session: AsyncSession,
    *,
    panel: Panel,
    data: PanelCreate,
    reason: str,
    source_format: str,
    catalog: Catalog,
) -> PanelOut:
    organization_id = panel.organization_id
    corrected = normalize(data, specimen=panel.specimen, catalog=catalog)
    patient = await repository.patient_for_panel(
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
    before = {r.id: _as_sent(r) for r in stored}
    stored_status = panel.status
    now = utcnow()
    keep_superseded(session, panel=panel, results=stored, reason=reason, now=now, with_values=True)

    merged, targets = _merge(stored, corrected, catalog, first_unsent=len(data.results))
    interpreted = interpret(
        merged,
        range_set=range_set,
        patient=patient_facts(patient, data.collected_at),
        specimen=panel.specimen,
        refuse_impossible=True,
    )
    position = max((r.position for r in stored), default=-1) + 1
    results: list[Result] = []
    for (normalized, verdict), target in zip(interpreted.pairs(), targets, strict=True):
        values = result_content(normalized, verdict)
        if target is None:
            target = Result(
                id=new_id(),
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

    panel.status = _status_after(stored_status, data)
    panel.collected_at = data.collected_at
    panel.received_at = data.received_at
    panel.performing_lab = data.performing_lab
    panel.payload_hash = payload_hash(data, source_format, panel.patient_id)
    results.sort(key=lambda r: r.position)
    out = record_interpretation(panel, results, interpreted, range_set, now=now)
    revised = [
        RevisedResult(r.id, panel.id, _revision(panel, r, before[r.id], reason))
        for r in results
        if r.id in before and before[r.id] != _as_sent(r) and _is_revision(before[r.id], r)
    ]
    await _flush_and_flag_plans(session, panel=panel, revised=revised, reason=reason)
    return out


async def _flush_and_flag_plans(
    session: AsyncSession, *, panel: Panel, revised: list[RevisedResult], reason: str
) -> None:
    """Write the revised panel, then mark the plans resting on a revised result as needing
    review (``flag_plans_resting_on``)."""
    await session.flush()
    await flag_plans_resting_on(
        session,
        organization_id=panel.organization_id,
        patient_id=panel.patient_id,
        revised=revised,
        changed_by=f"system: {reason}"[:200],
    )


def _status_after(stored_status: str, data: PanelCreate) -> str:
    """The panel's status after a correction: the one sent, except that a `final` panel that
    corrects or withdraws results of a panel already final is `corrected`."""
    revises = any(r.status in REVISING for r in data.results if r.status is not None)
    if data.status == "final" and stored_status != "preliminary" and revises:
        return "corrected"
    return data.status


@dataclass(frozen=True, slots=True)
class WithdrawOutcome:
    panel: PanelOut
    # Analytes with nothing stored to withdraw (no current result of theirs in the panel).
    nothing_to_withdraw: tuple[str, ...]


async def withdraw_results(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    panel_id: uuid.UUID,
    withdrawals: Sequence[tuple[str, ResultStatus]],
    reason: str,
) -> WithdrawOutcome:
    """Withdraw the stored current result of each ``(analyte, status)`` without re-sending its
    value (HL7 OBX-11 W / D / X with no OBX-5): it keeps its value and verdict for the record,
    takes the status (cancelled / entered-in-error), is no longer critical, and the panel's
    critical summary and ratios are recomputed without it."""
    panel, range_set_name, range_set_version = await _locked(
        session, organization_id=organization_id, panel_id=panel_id
    )
    results = sorted(panel.results, key=lambda r: r.position)
    current = {r.analyte: r for r in results if not is_withdrawn(r.status)}
    missing = tuple(analyte for analyte, _ in withdrawals if analyte not in current)
    targets = [(current[a], status) for a, status in withdrawals if a in current]
    if not targets:
        return WithdrawOutcome(
            panel=panel_out(panel, results, range_set_name, range_set_version),
            nothing_to_withdraw=missing,
        )
    now = utcnow()
    keep_superseded(session, panel=panel, results=results, reason=reason, now=now, with_values=True)
    revised: list[RevisedResult] = []
    for result, status in targets:
        result.status = status
        result.critical = False
        result.possibly_critical = False
        notes = [withdrawn_note(status), result.interpretation_note]
        result.interpretation_note = "; ".join(n for n in notes if n)
        revised.append(
            RevisedResult(result.id, panel.id, _withdrawn_sentence(panel, result, reason))
        )
    range_set = await ranges.compiled_if_any(
        session, organization_id=organization_id, range_set_id=panel.range_set_id
    )
    panel.status = "corrected"
    panel.interpretation_version += 1
    panel.interpreted_at = now
    panel.has_critical = any(r.critical for r in results)
    panel.has_possible_critical = any(r.possibly_critical for r in results)
    panel.ratios = panel_ratios(
        [stored_as_normalized(r, default_catalog()) for r in results], range_set
    )
    out = panel_out(panel, results, range_set_name, range_set_version)
    panel.document = out.model_dump_json()
    await _flush_and_flag_plans(session, panel=panel, revised=revised, reason=reason)
    return WithdrawOutcome(panel=out, nothing_to_withdraw=missing)


def results_as_sent(
    panel: PanelOut, data: PanelCreate, catalog: Catalog | None = None
) -> list[ResultOut]:
    """The stored result each of ``data.results`` became, in the order sent (after a
    correction the panel may also hold results the re-send did not mention)."""
    catalog = catalog or default_catalog()
    by_analyte = {r.analyte: r for r in panel.results}
    matched: list[ResultOut] = []
    for position, sent in enumerate(data.results):
        try:
            code = catalog.resolve(sent.analyte).code
        except DomainError:
            code = None
        found = by_analyte.get(code) if code is not None else None
        matched.append(found if found is not None else panel.results[position])
    return matched


def _as_sent(result: Result) -> tuple[str, str, str]:
    return (result.value_text, result.unit, result.status)


def _is_revision(old: tuple[str, str, str], new: Result) -> bool:
    """A changed value or unit, or a result newly withdrawn (a preliminary result becoming
    final with the same value changes nothing a plan relied on)."""
    value_changed = old[:2] != (new.value_text, new.unit)
    return value_changed or (is_withdrawn(new.status) and not is_withdrawn(old[2]))


def _label(panel: Panel, result: Result) -> str:
    return (
        f"The {result.analyte} result collected {result.collected_at.date().isoformat()} "
        f"(accession {panel.accession})"
    )


def _withdrawn_sentence(panel: Panel, result: Result, reason: str) -> str:
    return f"{_label(panel, result)} was withdrawn ({result.status}) by {reason}."


def _revision(panel: Panel, result: Result, old: tuple[str, str, str], reason: str) -> str:
    if is_withdrawn(result.status):
        return _withdrawn_sentence(panel, result, reason)
    return (
        f"{_label(panel, result)} was corrected from {old[0]} {old[1]} to "
        f"{result.value_text} {result.unit} by {reason}."
    )


def _merge(
    stored: list[Result], corrected: list[NormalizedResult], catalog: Catalog, *, first_unsent: int
) -> tuple[list[NormalizedResult], list[Result | None]]:
    """The panel's results after the correction, each with the stored row it replaces (None
    for a new analyte). Results not re-sent get positions after the message's, so an error
    about them never names one of the message's results."""
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
