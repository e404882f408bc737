"""One HL7 v2 segment as unescaped text, and the readers of the segments an ORU^R01 stores
(PID, OBR, OBX); each refuses what is malformed with a ParseError naming its field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from app.domain.result_status import HL7_OBX11, HL7_WITHDRAWING
from app.interop.hl7.errors import ErrorCode, Location, ParseError
from app.interop.hl7.message import (
    CODED_TYPES,
    NARRATIVE_TYPES,
    NUMERIC,
    CodedElement,
    ExtendedId,
    Observation,
    ObservationRequest,
    PatientIdentification,
)

VALUE_TYPES = ("NM", "SN", "ST", "TX", "FT", "CE", "CWE")
# OBX-11, HL7 table 0085: what each code is stored as, in app.domain.result_status.
RESULT_STATUSES = tuple(HL7_OBX11)
_TS = re.compile(
    r"^(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})"
    r"(?:(?P<hour>\d{2})(?:(?P<minute>\d{2})(?:(?P<second>\d{2})(?:\.(?P<fraction>\d{1,4}))?)?)?)?"
    r"(?P<offset>[+-]\d{4})?$"
)
_SEX = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}


class Segment:
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


def patient_segment(segment: Segment) -> PatientIdentification:
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
                authority_namespace=at(authority, 0),
                authority_universal_id=at(authority, 1),
                authority_universal_id_type=at(authority, 2),
                type_code=at(components, 4),
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


def order_segment(segment: Segment) -> ObservationRequest:
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


def observation_segment(segment: Segment) -> Observation:
    value_type = segment.get(2).upper()
    code = CodedElement(*(at(segment.components(3), i) for i in range(6)))
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
    numeric = value_type not in NARRATIVE_TYPES + CODED_TYPES or bool(NUMERIC.match(value))
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


def _value(segment: Segment, value_type: str) -> str:
    if value_type == "SN":
        comparator, number, separator, second = (at(segment.components(5), i) for i in range(4))
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
        code, text, system = (at(segment.components(5), i) for i in range(3))
        if NUMERIC.match(code):
            value = code
        elif NUMERIC.match(text):
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


def at(items: list[str], index: int) -> str:
    return items[index] if index < len(items) else ""
