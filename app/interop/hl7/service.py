"""Receiving ORU^R01 messages: parse, map, store through the panels ingestion, answer an ACK.

Shared by the HTTP route and the MLLP listener. Each message runs in its own SAVEPOINT inside
the caller's transaction: a refused message (AE / AR) leaves nothing stored, and in a batch it
never undoes the messages before or after it. A large batch commits in chunks of messages
(``app.interop.chunks``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.code_maps.service import code_maps_for
from app.core.errors import AppError, is_database_unavailable
from app.interop.chunks import Chunks, unchunked
from app.interop.hl7 import repository
from app.interop.hl7.ack import answer_body, build_ack
from app.interop.hl7.code_maps import CodeMaps, default_code_maps
from app.interop.hl7.corrections import SOURCE_FORMAT, correct_panel, is_update, withdraw_results
from app.interop.hl7.errors import AckCode, ErrorCode, Issue, Location, MessageError, ParseError
from app.interop.hl7.mapping import PanelDraft, panel_drafts
from app.interop.hl7.parser import (
    MessageHeader,
    normalize_segment_separators,
    parse_oru,
    read_header,
    split_messages,
)
from app.interop.hl7.refusals import PatientMatchRefusedError, match_refused, message_error
from app.models.hl7_message import Hl7Message
from app.panels import repository as panels
from app.panels import service as panels_service
from app.panels.schemas import PatientRef
from app.patients import matching

log = logging.getLogger("app.interop.hl7")

PanelChange = Literal["created", "corrected", "unchanged"]
_T = TypeVar("_T")


class Offload(Protocol):
    """Runs pure CPU work (parsing, mapping) somewhere other than the event loop, e.g. in a
    worker thread (the MLLP listener does so for large messages); the database work stays on
    the loop."""

    def __call__(self, work: Callable[[], _T], /) -> Awaitable[_T]: ...


async def _inline(work: Callable[[], _T], /) -> _T:
    return work()


@dataclass(frozen=True, slots=True)
class StoredPanel:
    panel_id: uuid.UUID
    patient_id: uuid.UUID
    change: PanelChange


@dataclass(frozen=True, slots=True)
class DraftOutcome:
    """One OBR group stored: its panel (None when it only withdrew results and found none),
    and informational notes for the ACK (an accepted message may carry them: AA)."""

    panel: StoredPanel | None
    notes: tuple[Issue, ...]


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """What became of one message, and its ACK in ER7."""

    header: MessageHeader | None
    ack_code: AckCode
    issues: tuple[Issue, ...]
    panels: tuple[StoredPanel, ...]
    ack: str
    # The registered patient a refused message named when it contradicted that patient: the
    # audit row records the attempt against them.
    refused_patient_id: uuid.UUID | None = None
    # The message's own ER7 text (set by ``receive``): a refused one is kept for re-processing
    # (app.refused_inputs).
    text: str = ""


async def receive(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    text: str,
    code_maps: CodeMaps | None = None,
    offload: Offload | None = None,
    chunks: Chunks[MessageOutcome] | None = None,
) -> list[MessageOutcome]:
    """Every message of ``text`` (one message, several MSH, or a FHS/BHS batch), in order.

    With ``chunks``, a large batch commits every ``chunks.size`` messages
    (``app.interop.chunks``), each chunk with what ``chunks.keep`` writes for its outcomes; the
    outcomes of the last chunk are left in ``chunks.pending`` for the caller's commit."""
    units = chunks if chunks is not None else unchunked(session)
    try:
        messages = split_messages(text)
    except ParseError as exc:
        refused = _refused(None, exc)
        units.add(refused)
        return [refused]
    receiver = _Receiver(session, organization_id, code_maps, offload or _inline)
    outcomes = []
    for message in messages:
        await units.start_unit()
        outcome = dataclasses.replace(await receiver.receive(message), text=message)
        outcomes.append(outcome)
        units.add(outcome)
    return outcomes


def ack_of(outcomes: Sequence[MessageOutcome], text: str = "") -> str:
    """The answer to a body: the ACK of each message, in order, concatenated; wrapped in
    FHS / BHS ... BTS / FTS when ``text`` (the body received) was a batch."""
    return answer_body([outcome.ack for outcome in outcomes], text)


@dataclass(frozen=True, slots=True)
class _Receiver:
    """Receives one message at a time into ``session`` for ``organization_id``."""

    session: AsyncSession
    organization_id: uuid.UUID
    code_maps: CodeMaps | None
    run: Offload

    async def receive(self, text: str) -> MessageOutcome:
        try:
            header = read_header(text)
        except ParseError as exc:
            return _refused(None, exc)
        session = self.session
        try:
            message = await self.run(lambda: parse_oru(text))
            digest = message_digest(text)
            async with session.begin_nested():
                seen = await repository.get_message(
                    session, organization_id=self.organization_id, header=header
                )
                if seen is not None:
                    return _resent(header, seen, digest)
                # The organization's code-map entries for this facility: one query per message.
                maps = await code_maps_for(
                    session,
                    organization_id=self.organization_id,
                    sending_facility=header.sending_facility,
                    base=self.code_maps or default_code_maps(),
                )
                drafts = await self.run(lambda: panel_drafts(message, code_maps=maps))
                filing = _Filing(session, self.organization_id, header)
                done = [await filing.store_draft(draft) for draft in drafts]
                stored = [d.panel for d in done if d.panel is not None]
                notes = tuple(note for d in done for note in d.notes)
                await repository.add_message(
                    session,
                    organization_id=self.organization_id,
                    header=header,
                    payload_hash=digest,
                    panels=[(p.panel_id, p.patient_id) for p in stored],
                )
        except MessageError as exc:
            return _refused(header, exc)
        except IntegrityError:
            # The same control id was accepted concurrently (the other copy won the unique key).
            seen = await repository.get_message(
                session, organization_id=self.organization_id, header=header
            )
            if seen is not None:
                return _resent(header, seen, digest)
            return _internal_error(header)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise  # the whole request fails: 503 + AR over HTTP (app.interop.hl7.router)
            # A defect: nothing of this message is kept (its savepoint rolled back). AR tells
            # the sending interface to resend it later.
            log.exception("HL7 message %s could not be stored", header.control_id)
            return _internal_error(header)
        return MessageOutcome(
            header=header,
            ack_code="AA",
            issues=notes,
            panels=tuple(stored),
            ack=build_ack(header, "AA", notes),
        )


def message_digest(text: str) -> str:
    """SHA-256 of the message with its segment separators normalised (CR, LF or CRLF)."""
    return hashlib.sha256(normalize_segment_separators(text).strip().encode()).hexdigest()


def _resent(header: MessageHeader, seen: Hl7Message, digest: str) -> MessageOutcome:
    """A control id already accepted: the same message again is acknowledged as before and
    changes nothing; other content under the same id is refused."""
    if seen.payload_hash != digest:
        return _refused(
            header,
            MessageError(
                [
                    Issue(
                        ErrorCode.DUPLICATE_KEY,
                        f"message control id {header.control_id!r} from "
                        f"{header.sending_application}/{header.sending_facility} was already "
                        "accepted for a different message; give every message its own MSH-10",
                        Location("MSH", field=10),
                    )
                ]
            ),
        )
    panels = tuple(
        StoredPanel(uuid.UUID(p["panel_id"]), uuid.UUID(p["patient_id"]), "unchanged")
        for p in seen.panel_ids
    )
    return MessageOutcome(
        header=header, ack_code="AA", issues=(), panels=panels, ack=build_ack(header, "AA")
    )


def _internal_error(header: MessageHeader) -> MessageOutcome:
    return _refused(
        header,
        MessageError(
            [Issue(ErrorCode.INTERNAL_ERROR, "the message could not be stored; resend it")],
            ack_code="AR",
        ),
    )


def _refused(header: MessageHeader | None, error: MessageError) -> MessageOutcome:
    return MessageOutcome(
        header=header,
        ack_code=error.ack_code,
        issues=error.issues,
        panels=(),
        ack=build_ack(header, error.ack_code, error.issues),
        refused_patient_id=error.patient_id
        if isinstance(error, PatientMatchRefusedError)
        else None,
    )


@dataclass(frozen=True, slots=True)
class _Filing:
    """Stores the OBR groups of one message (``header``) for ``organization_id``."""

    session: AsyncSession
    organization_id: uuid.UUID
    header: MessageHeader

    async def store_draft(self, draft: PanelDraft) -> DraftOutcome:
        try:
            return await self._store(draft)
        except matching.MatchError as exc:
            raise match_refused(exc, draft) from exc
        except AppError as exc:
            raise message_error(exc, draft) from exc

    async def _store(self, draft: PanelDraft) -> DraftOutcome:
        patient_id = await self._patient(draft)
        stored = None
        if draft.content is not None:
            stored = await self._store_panel(draft, patient_id)
        if not draft.withdrawals:
            return DraftOutcome(stored, ())
        return await self._withdraw(draft, patient_id, stored)

    async def _withdraw(
        self, draft: PanelDraft, patient_id: uuid.UUID, stored: StoredPanel | None
    ) -> DraftOutcome:
        """OBX-11 W / D / X without a value: withdraw the stored result of that analyte in
        the panel with this accession. Nothing stored to withdraw is a note in the ACK (still
        AA): the message withdrew nothing, and there is nothing unsafe left to act on."""
        panel_id = stored.panel_id if stored is not None else None
        if panel_id is None:
            found = await panels.get_by_natural_key(
                self.session,
                organization_id=self.organization_id,
                source=draft.source,
                accession=draft.accession,
            )
            if found is not None and found.patient_id != patient_id:
                raise _stored_for_another_patient(draft, draft.accession)
            panel_id = found.id if found is not None else None
        missing: tuple[str, ...] = tuple(w.analyte for w in draft.withdrawals)
        if panel_id is not None:
            outcome = await withdraw_results(
                self.session,
                organization_id=self.organization_id,
                panel_id=panel_id,
                withdrawals=[(w.analyte, w.status) for w in draft.withdrawals],
                reason=f"HL7 v2 withdrawal (message {self.header.control_id})",
            )
            missing = outcome.nothing_to_withdraw
            if stored is None and len(missing) < len(draft.withdrawals):
                stored = StoredPanel(outcome.panel.id, outcome.panel.patient_id, "corrected")
        notes = tuple(
            Issue(
                ErrorCode.UNKNOWN_KEY,
                f"nothing to withdraw: no current {w.analyte} result is stored under accession "
                f"{draft.accession!r}; nothing was changed for it",
                Location("OBX", w.location.sequence, 11),
                severity="I",
            )
            for w in draft.withdrawals
            if w.analyte in missing
        )
        return DraftOutcome(stored, notes)

    async def _store_panel(self, draft: PanelDraft, patient_id: uuid.UUID) -> StoredPanel:
        data = draft.with_patient(PatientRef(id=patient_id))
        stored = await panels.get_by_natural_key(
            self.session,
            organization_id=self.organization_id,
            source=data.source,
            accession=data.accession,
        )
        if stored is not None and is_update(stored, data, patient_id):
            if stored.patient_id != patient_id:
                raise _stored_for_another_patient(draft, data.accession)
            panel = await correct_panel(
                self.session,
                organization_id=self.organization_id,
                panel_id=stored.id,
                data=data,
                reason=f"HL7 v2 {'correction' if draft.corrects else 'update'} "
                f"(message {self.header.control_id})",
                source_format=SOURCE_FORMAT,
            )
            return StoredPanel(panel.id, panel.patient_id, "corrected")
        outcome = await panels_service.ingest(
            self.session,
            organization_id=self.organization_id,
            data=data,
            source_format=SOURCE_FORMAT,
        )
        return StoredPanel(
            outcome.panel.id,
            outcome.panel.patient_id,
            "created" if outcome.created else "unchanged",
        )

    async def _patient(self, draft: PanelDraft) -> uuid.UUID:
        """The patient PID names by its matching keys (HL7 table 0203 types such as MR, see
        ``app/data/patient_matching.yaml``); registered from PID when no key names one. Other
        PID-3 identifiers (SS, placeholders, untyped) are neither matched on nor stored."""
        claim = matching.claim_of(
            draft.typed_identifiers,
            sex=draft.patient.sex,
            birth_date=draft.patient.birth_date,
            channel="hl7v2",
            facility=self.header.sending_facility,
            name=draft.patient.name,
        )
        patient, _ = await matching.find_or_create(
            self.session, organization_id=self.organization_id, claim=claim
        )
        return patient.id


def _stored_for_another_patient(draft: PanelDraft, accession: str) -> MessageError:
    return MessageError(
        [
            Issue(
                ErrorCode.DUPLICATE_KEY,
                f"accession {accession!r} is stored for another patient",
                draft.order_location,
            )
        ]
    )
