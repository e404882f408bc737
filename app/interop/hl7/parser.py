"""Reading HL7 v2 ORU^R01 messages (ER7, versions 2.3 to 2.5.1) into plain dataclasses.

The ``hl7`` package splits the text by the message's own separators; this module walks the
segments in order (PID → OBR → OBX groups), unescapes every value (``\\F\\ \\S\\ \\T\\ \\R\\
\\E\\``), ignores segments it does not need (ORC, NTE, PV1, Z-segments, ...) and refuses
anything malformed or truncated with a :class:`ParseError` naming the segment and field.
Nothing here knows about analytes, units or the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import hl7

from app.domain.result_status import HL7_OBX11, HL7_WITHDRAWING
from app.interop.hl7.errors import ErrorCode, Location, ParseError

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
VALUE_TYPES = ("NM", "SN", "ST", "TX", "FT", "CE", "CWE")
# Narrative (TX / FT) and coded (CE / CWE) values: kept as the lab's comment, not as a number
# (a CE / CWE whose code or text is a number is a numeric result, as ST is).
NARRATIVE_TYPES = ("TX", "FT")
CODED_TYPES = ("CE", "CWE")
_NUMERIC = re.compile(r"^\s*(<=|>=|<|>)?\s*\d+(\.\d+)?\s*$")
# OBX-11, HL7 table 0085: what each code is stored as, in app.domain.result_status.
RESULT_STATUSES = tuple(HL7_OBX11)
# Segments that wrap messages in a batch or file; never part of a message.
ENVELOPE_SEGMENTS = ("FHS", "BHS", "BTS", "FTS")

_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_TS = re.compile(
    r"^(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})"
    r"(?:(?P<hour>\d{2})(?:(?P<minute>\d{2})(?:(?P<second>\d{2})(?:\.(?P<fraction>\d{1,4}))?)?)?)?"
    r"(?P<offset>[+-]\d{4})?$"
)
_SEX = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """MSH: who sent the message, its control id and version."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    message_type: str
    version: str
    processing_id: str
    # MSH-15 / MSH-16, HL7 table 0155 (AL, NE, ER, SU); empty when not sent.
    accept_ack_type: str = ""
    application_ack_type: str = ""

    @property
    def trigger_event(self) -> str:
        """MSH-9.2, echoed in the ACK's MSH-9."""
        return self.message_type.partition("^")[2]


@dataclass(frozen=True, slots=True)
class CodedElement:
    """A CE / CWE: the code, its text and coding system, and the alternate triplet."""

    code: str
    text: str
    system: str
    alternate_code: str = ""
    alternate_text: str = ""
    alternate_system: str = ""


@dataclass(frozen=True, slots=True)
class ExtendedId:
    """A PID-3 CX repetition: the id and the authority that assigned it."""

    value: str
    authority_namespace: str
    authority_universal_id: str
    authority_universal_id_type: str
    type_code: str


@dataclass(slots=True)
class Observation:
    """One OBX. ``value`` is the text as sent, an SN's comparator folded in (``<0.5``)."""

    sequence: int
    value_type: str
    code: CodedElement
    value: str
    units: str
    reference_range: str
    abnormal_flags: list[str]
    status: str
    # NTE-3 comments after this OBX, in order.
    comments: list[str] = field(default_factory=list)

    @property
    def is_note(self) -> bool:
        """A narrative (TX / FT) or non-numeric coded (CE / CWE) value: the lab's comment."""
        if self.value_type in NARRATIVE_TYPES:
            return True
        return self.value_type in CODED_TYPES and not _NUMERIC.match(self.value)


@dataclass(slots=True)
class ObservationRequest:
    """One OBR with its OBX."""

    sequence: int
    placer_order_number: str
    filler_order_number: str
    collected_at: datetime
    specimen: str
    observations: list[Observation] = field(default_factory=list)
    # SPM-4 (2.5+), which takes precedence over OBR-15 when sent; the SPM's set number.
    specimen_type: CodedElement | None = None
    specimen_sequence: int = 0
    # NTE-3 comments after the OBR (before its first OBX), in order.
    comments: list[str] = field(default_factory=list)

    @property
    def accession(self) -> str:
        return self.filler_order_number or self.placer_order_number


@dataclass(slots=True)
class PatientIdentification:
    """One PID with the orders reported for that patient."""

    sequence: int
    identifiers: list[ExtendedId]
    birth_date: date | None
    sex: str
    orders: list[ObservationRequest] = field(default_factory=list)
    # PID-5 (XPN), first repetition: family name (XPN-1, its surname), given and middle names.
    family_name: str = ""
    given_names: tuple[str, ...] = ()


@dataclass(slots=True)
class OruMessage:
    header: MessageHeader
    patients: list[PatientIdentification]


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

    def fields(name: str) -> _Segment | None:
        line = envelope.get(name)
        if line is None or len(line) < 8:
            return None
        try:
            # Read as an MSH (same layout: field separator, encoding characters, 3-6, 11).
            parsed = hl7.parse("MSH" + line[3:])
        except Exception:
            return None
        return _Segment(parsed[0], parsed, name, 1)

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


class _Segment:
    """One segment's fields as unescaped text, addressed by HL7's 1-based positions."""

    def __init__(self, raw: Any, message: Any, name: str, sequence: int) -> None:
        self._raw = raw
        self._message = message
        self.name = name
        self.sequence = sequence

    def location(self, field: int | None = None, component: int | None = None) -> Location:
        return Location(self.name, self.sequence, field, component)

    def repetitions(self, field: int) -> list[list[list[str]]]:
        """Field ``field`` as repetitions → components → subcomponents, unescaped."""
        if field >= len(self._raw):
            return []
        out: list[list[list[str]]] = []
        for repetition in self._raw[field]:
            if isinstance(repetition, str):
                components: list[list[str]] = [[repetition]]
            else:
                components = [
                    [component] if isinstance(component, str) else list(component)
                    for component in repetition
                ]
            out.append([[self._text(sub) for sub in component] for component in components])
        return out

    def get(
        self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str:
        repetitions = self.repetitions(field)
        try:
            return repetitions[repetition - 1][component - 1][subcomponent - 1]
        except IndexError:
            return ""

    def components(self, field: int, repetition: int = 1) -> list[str]:
        """The first subcomponent of each component of one repetition."""
        repetitions = self.repetitions(field)
        if len(repetitions) < repetition:
            return []
        return [component[0] if component else "" for component in repetitions[repetition - 1]]

    def require(self, field: int, what: str, component: int = 1) -> str:
        value = self.get(field, component)
        if not value:
            raise ParseError(
                f"{what} is required",
                self.location(field, component if component > 1 else None),
                code=ErrorCode.REQUIRED_FIELD_MISSING,
            )
        return value

    def _text(self, raw: str) -> str:
        if raw == '""':  # HL7's explicit null
            return ""
        text: str = self._message.unescape(raw)
        return text.strip()


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
    msh = _Segment(parsed[0], parsed, "MSH", 1)
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
        name = str(raw[0][0]) if raw and raw[0] else ""
        if not _SEGMENT_NAME.match(name):
            raise ParseError(
                f"malformed segment {name[:10]!r}: a segment starts with a 3-character id",
                Location(name[:3] or "?", counts.get(name, 0) + 1),
                code=ErrorCode.SEGMENT_SEQUENCE,
            )
        counts[name] = counts.get(name, 0) + 1
        segment = _Segment(raw, message, name, counts[name])
        if name == "MSH":
            raise ParseError(
                "a second MSH inside one message",
                segment.location(),
                code=ErrorCode.SEGMENT_SEQUENCE,
            )
        if name == "PID":
            patients.append(_patient(segment))
        elif name == "OBR":
            if not patients:
                raise _out_of_order(segment, "OBR comes before any PID")
            patients[-1].orders.append(_order(segment))
        elif name == "OBX":
            if not patients or not patients[-1].orders:
                raise _out_of_order(segment, "OBX comes before any OBR")
            patients[-1].orders[-1].observations.append(_observation(segment))
        elif name == "SPM" and patients and patients[-1].orders:
            code = CodedElement(*(_at(segment.components(4), i) for i in range(6)))
            if code.code or code.alternate_code or code.text:
                patients[-1].orders[-1].specimen_type = code
                patients[-1].orders[-1].specimen_sequence = segment.sequence
        elif name == "NTE" and patients and patients[-1].orders:
            comment = " ".join(
                " ".join(c for c in segment.components(3, r) if c)
                for r in range(1, len(segment.repetitions(3)) + 1)
            ).strip()
            order = patients[-1].orders[-1]
            if comment and order.observations:
                order.observations[-1].comments.append(comment)
            elif comment:
                order.comments.append(comment)
        # Every other segment (ORC, PV1, Z-segments, ...) carries nothing we store.
    _check_complete(patients)
    return OruMessage(header=header, patients=patients)


def _out_of_order(segment: _Segment, text: str) -> ParseError:
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


def _patient(segment: _Segment) -> PatientIdentification:
    identifiers: list[ExtendedId] = []
    for repetition in segment.repetitions(3):
        components = [component[0] if component else "" for component in repetition]
        value = components[0] if components else ""
        if not value:
            continue
        authority = repetition[3] if len(repetition) > 3 else []
        identifiers.append(
            ExtendedId(
                value=value,
                authority_namespace=_at(authority, 0),
                authority_universal_id=_at(authority, 1),
                authority_universal_id_type=_at(authority, 2),
                type_code=_at(components, 4),
            )
        )
    if not identifiers:
        raise ParseError(
            "PID-3 (patient identifier list) is required",
            segment.location(3),
            code=ErrorCode.REQUIRED_FIELD_MISSING,
        )
    birth = segment.get(7)
    birth_date = parse_timestamp(birth, segment.location(7)).date() if birth else None
    sex_code = segment.get(8).upper()
    if sex_code and sex_code not in _SEX:
        raise ParseError(
            f"administrative sex {sex_code!r} is not one of F, M, O, U, A, N",
            segment.location(8),
            code=ErrorCode.TABLE_VALUE_NOT_FOUND,
        )
    return PatientIdentification(
        sequence=segment.sequence,
        identifiers=identifiers,
        birth_date=birth_date,
        sex=_SEX.get(sex_code, "unknown"),
        family_name=segment.get(5, 1),
        given_names=tuple(name for name in (segment.get(5, 2), segment.get(5, 3)) if name),
    )


def _order(segment: _Segment) -> ObservationRequest:
    placer, filler = segment.get(2), segment.get(3)
    if not placer and not filler:
        raise ParseError(
            "OBR-3 (filler order number) or OBR-2 (placer order number) is required as the "
            "accession",
            segment.location(3),
            code=ErrorCode.REQUIRED_FIELD_MISSING,
        )
    collected = segment.require(7, "OBR-7 (observation date/time, the collection time)")
    return ObservationRequest(
        sequence=segment.sequence,
        placer_order_number=placer,
        filler_order_number=filler,
        collected_at=parse_timestamp(collected, segment.location(7)),
        specimen=segment.get(15),
    )


def _observation(segment: _Segment) -> Observation:
    value_type = segment.get(2).upper()
    code = CodedElement(*(_at(segment.components(3), i) for i in range(6)))
    if not code.code and not code.alternate_code:
        raise ParseError(
            "OBX-3 (observation identifier) is required",
            segment.location(3),
            code=ErrorCode.REQUIRED_FIELD_MISSING,
        )
    status = segment.get(11).upper()
    if status in HL7_WITHDRAWING and not segment.get(5) and not segment.get(5, 2):
        # W / D / X without a value: withdraws the result stored for this analyte (if any).
        return Observation(
            sequence=segment.sequence,
            value_type=value_type,
            code=code,
            value="",
            units=segment.get(6) or segment.get(6, 2),
            reference_range=segment.get(7),
            abnormal_flags=[],
            status=status,
        )
    if not value_type:
        raise ParseError(
            "OBX-2 (value type) is required",
            segment.location(2),
            code=ErrorCode.REQUIRED_FIELD_MISSING,
        )
    if value_type not in VALUE_TYPES:
        raise ParseError(
            f"value type {value_type} is not supported; send one of {', '.join(VALUE_TYPES)}",
            segment.location(2),
            code=ErrorCode.DATA_TYPE,
        )
    value = _value(segment, value_type)
    units = segment.get(6) or segment.get(6, 2)
    numeric = value_type not in NARRATIVE_TYPES + CODED_TYPES or bool(_NUMERIC.match(value))
    if not units and numeric:
        raise ParseError(
            "OBX-6 (units) is required for a numeric result",
            segment.location(6),
            code=ErrorCode.REQUIRED_FIELD_MISSING,
        )
    status = segment.require(11, "OBX-11 (observation result status)").upper()
    if status not in RESULT_STATUSES:
        raise ParseError(
            f"result status {status} is not supported; send one of "
            f"{', '.join(RESULT_STATUSES)} (I, O, N and U carry no result to store)",
            segment.location(11),
            code=ErrorCode.TABLE_VALUE_NOT_FOUND,
        )
    flags = [rep[0][0] for rep in segment.repetitions(8) if rep and rep[0] and rep[0][0]]
    return Observation(
        sequence=segment.sequence,
        value_type=value_type,
        code=code,
        value=value,
        units=units,
        reference_range=segment.get(7),
        abnormal_flags=flags,
        status=status,
    )


def _value(segment: _Segment, value_type: str) -> str:
    if value_type == "SN":
        comparator, number, separator, second = (_at(segment.components(5), i) for i in range(4))
        if separator or second:
            raise ParseError(
                "a structured numeric range or ratio (e.g. ^1^-^2) is not a single result value",
                segment.location(5),
                code=ErrorCode.DATA_TYPE,
            )
        value = f"{comparator}{number}" if number else ""
    elif value_type in NARRATIVE_TYPES:
        # Every repetition is a line of the text (FT formatting commands are left as sent).
        value = " ".join(
            segment.get(5, repetition=r) for r in range(1, len(segment.repetitions(5)) + 1)
        )
        value = value.strip()
    elif value_type in CODED_TYPES:
        code, text, system = (_at(segment.components(5), i) for i in range(3))
        if _NUMERIC.match(code):
            value = code
        elif _NUMERIC.match(text):
            value = text
        else:
            value = f"{text or code} ({system}: {code})" if code and system else (text or code)
    else:
        value = segment.get(5)
    if not value:
        raise ParseError(
            "OBX-5 (observation value) is required",
            segment.location(5),
            code=ErrorCode.REQUIRED_FIELD_MISSING,
        )
    return value


def parse_timestamp(text: str, location: Location) -> datetime:
    """An HL7 TS/DTM (``YYYYMMDD[HH[MM[SS[.S]]]][+/-ZZZZ]``, at least a date). Naive when the
    sender gave no offset: the caller decides which time zone the sender meant."""
    match = _TS.match(text.strip())
    if match is None:
        raise ParseError(
            f"{text!r} is not an HL7 timestamp (YYYYMMDD[HHMM[SS]][+/-ZZZZ])",
            location,
            code=ErrorCode.DATA_TYPE,
        )
    parts = match.groupdict()
    fraction = parts["fraction"] or ""
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError as exc:
        raise ParseError(
            f"{text!r} is not a valid date or time", location, code=ErrorCode.DATA_TYPE
        ) from exc
    offset = parts["offset"]
    if offset:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            raise ParseError(
                f"{offset} is not a valid UTC offset", location, code=ErrorCode.DATA_TYPE
            )
        delta = timedelta(hours=hours, minutes=minutes) * sign
        moment = moment.replace(tzinfo=UTC if not delta else timezone(delta))
    return moment


def _at(items: list[str], index: int) -> str:
    return items[index] if index < len(items) else ""
