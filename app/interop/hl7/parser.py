"""Reading HL7 v2 ORU^R01 messages (ER7, versions 2.3 to 2.5.1) into plain dataclasses.

The ``hl7`` package splits the text by the message's own separators; this module walks the
segments in order (PID → OBR → OBX groups; the readers of each are in ``segments``), unescapes
every value (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``), ignores segments it does not need (ORC, PV1,
Z-segments, ...) and refuses anything malformed or truncated with a :class:`ParseError` naming
the segment and field. Nothing here knows about analytes, units or the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hl7

from app.interop.hl7.errors import ErrorCode, Location, ParseError
from app.interop.hl7.message import CodedElement, MessageHeader, OruMessage, PatientIdentification
from app.interop.hl7.segments import (
    RESULT_STATUSES,
    VALUE_TYPES,
    Segment,
    at,
    observation_segment,
    order_segment,
    parse_timestamp,
    patient_segment,
)

__all__ = [
    "RESULT_STATUSES",
    "SUPPORTED_VERSIONS",
    "VALUE_TYPES",
    "BatchHeader",
    "CodedElement",
    "MessageHeader",
    "OruMessage",
    "PatientIdentification",
    "batch_header",
    "check_header",
    "normalize_segment_separators",
    "parse_oru",
    "parse_timestamp",
    "read_header",
    "split_messages",
]

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
# Segments that wrap messages in a batch or file; never part of a message.
ENVELOPE_SEGMENTS = ("FHS", "BHS", "BTS", "FTS")

_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")


def normalize_segment_separators(text: str) -> str:
    """ER7 separates segments with CR; files and HTTP clients often use LF or CRLF."""
    return text.replace("\r\n", "\r").replace("\n", "\r")


def split_messages(text: str) -> list[str]:
    """The messages of a body: one message, several MSH in a row, or a FHS/BHS batch.

    Raises ParseError when the body holds no message or a segment comes before the first MSH
    (other than a batch or file header)."""
    lines = [line.strip() for line in normalize_segment_separators(text).split("\r")]
    lines = [line for line in lines if line]
    if not lines:
        raise ParseError(
            "the body holds no HL7 message", code=ErrorCode.SEGMENT_SEQUENCE, ack_code="AR"
        )
    for line in lines:
        if line.startswith("MSH"):
            break
        if line[:3] not in ENVELOPE_SEGMENTS:
            raise ParseError(
                f"segment {line[:3]!r} comes before the first MSH",
                Location(line[:3] or "MSH"),
                code=ErrorCode.SEGMENT_SEQUENCE,
                ack_code="AR",
            )
    messages: list[str] = hl7.split_file("\r".join(lines))
    if not messages:
        raise ParseError(
            "the body holds no MSH segment", code=ErrorCode.SEGMENT_SEQUENCE, ack_code="AR"
        )
    return messages


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The FHS / BHS of a batch that was received, to answer it with a batch of ACKs."""

    file_control_id: str | None  # FHS-11, None when the batch had no FHS
    batch_control_id: str  # BHS-11
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str


def batch_header(text: str) -> BatchHeader | None:
    """The batch a body is, when it starts with FHS or BHS (None for plain messages)."""
    lines = [line.strip() for line in normalize_segment_separators(text).split("\r")]
    envelope: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        if line[:3] not in ("FHS", "BHS"):
            break
        envelope.setdefault(line[:3], line)
    if "BHS" not in envelope and "FHS" not in envelope:
        return None

    def fields(name: str) -> Segment | None:
        line = envelope.get(name)
        if line is None or len(line) < 8:
            return None
        try:
            # Read as an MSH (same layout: field separator, encoding characters, 3-6, 11).
            parsed = hl7.parse("MSH" + line[3:])
        except Exception:
            return None
        return Segment(parsed[0], parsed, name, 1)

    bhs, fhs = fields("BHS"), fields("FHS")
    first = bhs or fhs
    return BatchHeader(
        file_control_id=(fhs.get(11) if fhs else "") if "FHS" in envelope else None,
        batch_control_id=bhs.get(11) if bhs else "",
        sending_application=first.get(3) if first else "",
        sending_facility=first.get(4) if first else "",
        receiving_application=first.get(5) if first else "",
        receiving_facility=first.get(6) if first else "",
    )


def read_header(text: str) -> MessageHeader:
    """MSH of one message, checked: an ORU^R01 of a supported version with a control id.

    Used before anything else so even a refused message is answered with a proper ACK."""
    first = normalize_segment_separators(text).strip().split("\r", 1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        raise ParseError(
            "the message does not start with a complete MSH segment",
            Location("MSH"),
            code=ErrorCode.SEGMENT_SEQUENCE,
            ack_code="AR",
        )
    try:
        parsed = hl7.parse(first)
    except Exception as exc:  # the library raises plain exceptions on garbled separators
        raise ParseError(
            "the MSH segment cannot be parsed", Location("MSH", field=2), ack_code="AR"
        ) from exc
    msh = Segment(parsed[0], parsed, "MSH", 1)
    header = MessageHeader(
        sending_application=msh.get(3),
        sending_facility=msh.get(4),
        receiving_application=msh.get(5),
        receiving_facility=msh.get(6),
        control_id=msh.get(10),
        message_type="^".join(c for c in msh.components(9)[:2]),
        version=msh.get(12),
        processing_id=msh.get(11),
        accept_ack_type=msh.get(15).upper(),
        application_ack_type=msh.get(16).upper(),
    )
    return header


# Longer sender names or control ids are refused: they are stored to recognise re-sent messages.
MAX_HEADER_FIELD = 200


def check_header(header: MessageHeader) -> None:
    """Refuse (AR) what this receiver does not take at all."""
    if not header.control_id:
        raise ParseError(
            "MSH-10 (message control id) is required",
            Location("MSH", field=10),
            code=ErrorCode.REQUIRED_FIELD_MISSING,
            ack_code="AR",
        )
    for name, value, number in (
        ("MSH-3 (sending application)", header.sending_application, 3),
        ("MSH-4 (sending facility)", header.sending_facility, 4),
        ("MSH-10 (message control id)", header.control_id, 10),
    ):
        if len(value) > MAX_HEADER_FIELD:
            raise ParseError(
                f"{name} is longer than {MAX_HEADER_FIELD} characters",
                Location("MSH", field=number),
                code=ErrorCode.DATA_TYPE,
                ack_code="AR",
            )
    if header.version not in SUPPORTED_VERSIONS:
        raise ParseError(
            f"version {header.version or '(empty)'} is not supported; send one of "
            + ", ".join(SUPPORTED_VERSIONS),
            Location("MSH", field=12),
            code=ErrorCode.UNSUPPORTED_VERSION,
            ack_code="AR",
        )
    kind, _, event = header.message_type.partition("^")
    if kind != "ORU":
        raise ParseError(
            f"message type {kind or '(empty)'} is not supported; only ORU^R01 is accepted",
            Location("MSH", field=9),
            code=ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            ack_code="AR",
        )
    if event != "R01":
        raise ParseError(
            f"event {event or '(empty)'} is not supported; only ORU^R01 is accepted",
            Location("MSH", field=9, component=2),
            code=ErrorCode.UNSUPPORTED_EVENT,
            ack_code="AR",
        )
    if header.processing_id and header.processing_id[0] not in ("P", "T", "D"):
        raise ParseError(
            f"processing id {header.processing_id} is not P, T or D",
            Location("MSH", field=11),
            code=ErrorCode.UNSUPPORTED_PROCESSING_ID,
            ack_code="AR",
        )


def parse_oru(text: str) -> OruMessage:
    """One ORU^R01 message → :class:`OruMessage`, or ParseError (AR for the header, AE for the
    content)."""
    text = normalize_segment_separators(text).strip()
    header = read_header(text)
    check_header(header)
    try:
        message = hl7.parse(text)
    except Exception as exc:
        raise ParseError("the message cannot be split into segments", Location("MSH")) from exc
    counts: dict[str, int] = {}
    patients: list[PatientIdentification] = []
    for raw in list(message)[1:]:
        segment = _segment(raw, message, counts)
        # Every other segment (ORC, PV1, Z-segments, ...) carries nothing we store.
        reader = _READERS.get(segment.name)
        if reader is not None:
            reader(segment, patients)
    _check_complete(patients)
    return OruMessage(header=header, patients=patients)


def _segment(raw: Any, message: Any, counts: dict[str, int]) -> Segment:
    """The next segment of the message, numbered within its kind (the second OBX is OBX 2)."""
    name = str(raw[0][0]) if raw and raw[0] else ""
    if not _SEGMENT_NAME.match(name):
        raise ParseError(
            f"malformed segment {name[:10]!r}: a segment starts with a 3-character id",
            Location(name[:3] or "?", counts.get(name, 0) + 1),
            code=ErrorCode.SEGMENT_SEQUENCE,
        )
    counts[name] = counts.get(name, 0) + 1
    segment = Segment(raw, message, name, counts[name])
    if name == "MSH":
        raise ParseError(
            "a second MSH inside one message",
            segment.location(),
            code=ErrorCode.SEGMENT_SEQUENCE,
        )
    return segment


def _read_pid(segment: Segment, patients: list[PatientIdentification]) -> None:
    patients.append(patient_segment(segment))


def _read_obr(segment: Segment, patients: list[PatientIdentification]) -> None:
    if not patients:
        raise _out_of_order(segment, "OBR comes before any PID")
    patients[-1].orders.append(order_segment(segment))


def _read_obx(segment: Segment, patients: list[PatientIdentification]) -> None:
    if not patients or not patients[-1].orders:
        raise _out_of_order(segment, "OBX comes before any OBR")
    patients[-1].orders[-1].observations.append(observation_segment(segment))


def _read_spm(segment: Segment, patients: list[PatientIdentification]) -> None:
    """SPM-4 (specimen type) of the current order; an SPM before any order is ignored."""
    if not patients or not patients[-1].orders:
        return
    code = CodedElement(*(at(segment.components(4), i) for i in range(6)))
    if code.code or code.alternate_code or code.text:
        patients[-1].orders[-1].specimen_type = code
        patients[-1].orders[-1].specimen_sequence = segment.sequence


def _read_nte(segment: Segment, patients: list[PatientIdentification]) -> None:
    """A comment on the last observation of the current order, else on the order itself."""
    if not patients or not patients[-1].orders:
        return
    comment = " ".join(
        " ".join(c for c in segment.components(3, r) if c)
        for r in range(1, len(segment.repetitions(3)) + 1)
    ).strip()
    order = patients[-1].orders[-1]
    if comment and order.observations:
        order.observations[-1].comments.append(comment)
    elif comment:
        order.comments.append(comment)


_READERS: dict[str, Callable[[Segment, list[PatientIdentification]], None]] = {
    "PID": _read_pid,
    "OBR": _read_obr,
    "OBX": _read_obx,
    "SPM": _read_spm,
    "NTE": _read_nte,
}


def _out_of_order(segment: Segment, text: str) -> ParseError:
    return ParseError(text, segment.location(), code=ErrorCode.SEGMENT_SEQUENCE)


def _check_complete(patients: list[PatientIdentification]) -> None:
    if not patients:
        raise ParseError(
            "the message has no PID segment", Location("PID"), code=ErrorCode.SEGMENT_SEQUENCE
        )
    for patient in patients:
        if not patient.orders:
            raise ParseError(
                "the patient has no OBR segment",
                Location("PID", patient.sequence),
                code=ErrorCode.SEGMENT_SEQUENCE,
            )
        for order in patient.orders:
            if not order.observations:
                raise ParseError(
                    "the order has no OBX segment (truncated message?)",
                    Location("OBR", order.sequence),
                    code=ErrorCode.SEGMENT_SEQUENCE,
                )
