"""Receiving ORU^R01 messages: parse, map, store through the panels ingestion, answer an ACK.

Shared by the HTTP route and the MLLP listener. Each message runs in its own SAVEPOINT inside
the caller's transaction: a refused message (AE / AR) leaves nothing stored, and in a batch it
never undoes the messages before or after it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.code_maps.service import code_maps_for
from app.db import utcnow
from app.errors import AppError
from app.interop.hl7 import repository
from app.interop.hl7.ack import build_ack
from app.interop.hl7.code_maps import CodeMaps, default_code_maps
from app.interop.hl7.corrections import SOURCE_FORMAT, correct_panel
from app.interop.hl7.errors import AckCode, ErrorCode, Issue, Location, MessageError, ParseError
from app.interop.hl7.mapping import PanelDraft, issue_location, panel_drafts
from app.interop.hl7.parser import (
    MessageHeader,
    normalize_segment_separators,
    parse_oru,
    read_header,
    split_messages,
)
from app.models.hl7_message import Hl7Message
from app.panels import repository as panels
from app.panels import service as panels_service
from app.panels.service import AccessionConflictError, payload_hash
from app.patients import repository as patients
from app.patients import service as patients_service
from app.schemas_common import IdentifierIn

log = logging.getLogger("app.interop.hl7")

PanelChange = Literal["created", "corrected", "unchanged"]


@dataclass(frozen=True, slots=True)
class StoredPanel:
    panel_id: uuid.UUID
    patient_id: uuid.UUID
    change: PanelChange


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """What became of one message, and its ACK in ER7."""

    header: MessageHeader | None
    ack_code: AckCode
    issues: tuple[Issue, ...]
    panels: tuple[StoredPanel, ...]
    ack: str


async def receive(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    text: str,
    code_maps: CodeMaps | None = None,
) -> list[MessageOutcome]:
    """Every message of ``text`` (one message, several MSH, or a FHS/BHS batch), in order."""
    try:
        messages = split_messages(text)
    except ParseError as exc:
        return [_refused(None, exc)]
    return [
        await receive_message(
            session, organization_id=organization_id, text=message, code_maps=code_maps
        )
        for message in messages
    ]


def ack_of(outcomes: Sequence[MessageOutcome]) -> str:
    """The answer to a body: the ACK of each message, in order, concatenated."""
    return "".join(outcome.ack for outcome in outcomes)


async def receive_message(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    text: str,
    code_maps: CodeMaps | None = None,
) -> MessageOutcome:
    try:
        header = read_header(text)
    except ParseError as exc:
        return _refused(None, exc)
    try:
        message = parse_oru(text)
        digest = message_digest(text)
        async with session.begin_nested():
            seen = await repository.get_message(
                session, organization_id=organization_id, header=header
            )
            if seen is not None:
                return _resent(header, seen, digest)
            # The organization's code-map entries for this facility: one query per message.
            maps = await code_maps_for(
                session,
                organization_id=organization_id,
                sending_facility=header.sending_facility,
                base=code_maps or default_code_maps(),
            )
            drafts = panel_drafts(message, code_maps=maps)
            stored = [
                await _store_draft(
                    session, organization_id=organization_id, draft=draft, header=header
                )
                for draft in drafts
            ]
            await repository.add_message(
                session,
                Hl7Message(
                    id=uuid.uuid4(),
                    organization_id=organization_id,
                    sending_application=header.sending_application,
                    sending_facility=header.sending_facility,
                    control_id=header.control_id,
                    payload_hash=digest,
                    panel_ids=[
                        {"panel_id": str(p.panel_id), "patient_id": str(p.patient_id)}
                        for p in stored
                    ],
                    received_at=utcnow(),
                ),
            )
    except MessageError as exc:
        return _refused(header, exc)
    except IntegrityError:
        # The same control id was accepted concurrently (the other copy won the unique key).
        seen = await repository.get_message(session, organization_id=organization_id, header=header)
        if seen is not None:
            return _resent(header, seen, digest)
        return _internal_error(header)
    except Exception:
        # A defect or a database failure: nothing of this message is kept (its savepoint
        # rolled back). AR tells the sending interface to resend it later.
        log.exception("HL7 message %s could not be stored", header.control_id)
        return _internal_error(header)
    return MessageOutcome(
        header=header, ack_code="AA", issues=(), panels=tuple(stored), ack=build_ack(header, "AA")
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
    )


async def _store_draft(
    session: AsyncSession, *, organization_id: uuid.UUID, draft: PanelDraft, header: MessageHeader
) -> StoredPanel:
    try:
        return await _store(session, organization_id=organization_id, draft=draft, header=header)
    except AppError as exc:
        raise _message_error(exc, draft) from exc


async def _store(
    session: AsyncSession, *, organization_id: uuid.UUID, draft: PanelDraft, header: MessageHeader
) -> StoredPanel:
    patient_id, identifier = await _patient(session, organization_id=organization_id, draft=draft)
    data = draft.with_patient(identifier)
    stored = await panels.get_by_natural_key(
        session, organization_id=organization_id, source=data.source, accession=data.accession
    )
    is_update = (
        stored is not None
        and stored.payload_hash != payload_hash(data, SOURCE_FORMAT, patient_id)
        and (draft.corrects or stored.status == "preliminary")
    )
    if stored is not None and is_update:
        if stored.patient_id != patient_id:
            raise MessageError(
                [
                    Issue(
                        ErrorCode.DUPLICATE_KEY,
                        f"accession {data.accession!r} is stored for another patient",
                        draft.order_location,
                    )
                ]
            )
        panel = await correct_panel(
            session,
            organization_id=organization_id,
            panel_id=stored.id,
            data=data,
            reason=f"HL7 v2 {'correction' if draft.corrects else 'update'} "
            f"(message {header.control_id})",
        )
        return StoredPanel(panel.id, panel.patient_id, "corrected")
    outcome = await panels_service.ingest(
        session, organization_id=organization_id, data=data, source_format=SOURCE_FORMAT
    )
    return StoredPanel(
        outcome.panel.id, outcome.panel.patient_id, "created" if outcome.created else "unchanged"
    )


async def _patient(
    session: AsyncSession, *, organization_id: uuid.UUID, draft: PanelDraft
) -> tuple[uuid.UUID, IdentifierIn]:
    """The patient one of PID-3's identifiers names; created from PID when none does."""
    found = await _patient_by_identifiers(session, organization_id=organization_id, draft=draft)
    if found is not None:
        return found
    try:
        created = await patients_service.create(
            session, organization_id=organization_id, data=draft.patient
        )
    except patients_service.IdentifierInUseError:
        # Another message registered this patient at the same moment (its create won the
        # unique key): use that patient.
        found = await _patient_by_identifiers(session, organization_id=organization_id, draft=draft)
        if found is None:
            raise
        return found
    return created.id, draft.identifiers[0]


async def _patient_by_identifiers(
    session: AsyncSession, *, organization_id: uuid.UUID, draft: PanelDraft
) -> tuple[uuid.UUID, IdentifierIn] | None:
    for identifier in draft.identifiers:
        found = await patients.get_by_identifier(
            session,
            organization_id=organization_id,
            system=identifier.system,
            value=identifier.value,
        )
        if found is not None:
            return found.id, identifier
    return None


_CODES_BY_FIELD = {
    "analyte": ErrorCode.TABLE_VALUE_NOT_FOUND,
    "unit": ErrorCode.TABLE_VALUE_NOT_FOUND,
}
_FIELD_NAME = re.compile(r"\.(\w+)$")


def _message_error(exc: AppError, draft: PanelDraft) -> MessageError:
    """An ingestion refusal in HL7 terms, each problem located at the segment it came from."""
    if isinstance(exc, AccessionConflictError):
        return MessageError(
            [
                Issue(
                    ErrorCode.DUPLICATE_KEY,
                    f"{exc.detail} Send changed results as a correction (OBX-11 C).",
                    Location("OBR", draft.order_location.sequence, 3),
                )
            ]
        )
    if isinstance(exc, patients_service.IdentifierInUseError):
        return MessageError([Issue(ErrorCode.DUPLICATE_KEY, exc.detail, Location("PID", 1, 3))])
    errors = exc.extensions.get("errors") or []
    issues = []
    for error in errors:
        field = str(error.get("field", ""))
        match = _FIELD_NAME.search(field)
        code = _CODES_BY_FIELD.get(match.group(1) if match else "", ErrorCode.DATA_TYPE)
        location = issue_location(field, draft.order_location, draft.result_locations)
        issues.append(Issue(code, str(error.get("message", exc.detail)), location))
    if not issues:
        status = ErrorCode.DUPLICATE_KEY if exc.status == 409 else ErrorCode.DATA_TYPE
        issues.append(Issue(status, exc.detail, draft.order_location))
    return MessageError(issues)
