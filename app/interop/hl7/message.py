"""An ORU^R01 message as plain dataclasses: the header, and the PID → OBR → OBX groups."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

# Narrative (TX / FT) and coded (CE / CWE) values: kept as the lab's comment, not as a number
# (a CE / CWE whose code or text is a number is a numeric result, as ST is).
NARRATIVE_TYPES = ("TX", "FT")
CODED_TYPES = ("CE", "CWE")
NUMERIC = re.compile(r"^\s*(<=|>=|<|>)?\s*\d+(\.\d+)?\s*$")


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
        return self.value_type in CODED_TYPES and not NUMERIC.match(self.value)


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
