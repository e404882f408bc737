"""Value types shared by the pure clinical modules.

No I/O, no FastAPI, no SQLAlchemy: these are plain frozen dataclasses so the clinical logic can
be tested exhaustively and reused by every ingestion path (JSON, FHIR, HL7 v2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from app.domain.frozen import slot_init


class Comparator(StrEnum):
    """How a reported value relates to the true value (FHIR Quantity.comparator)."""

    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Specimen(StrEnum):
    SERUM = "serum"
    PLASMA = "plasma"
    WHOLE_BLOOD = "whole-blood"
    RBC = "rbc"


class InterpretationCode(StrEnum):
    """HL7 v3 ObservationInterpretation codes used by this service."""

    LOW = "L"
    NORMAL = "N"
    HIGH = "H"
    CRITICAL_LOW = "LL"
    CRITICAL_HIGH = "HH"
    INDETERMINATE = "IND"


@slot_init
@dataclass(frozen=True, slots=True)
class ResultValue:
    """A reported value: the decimal as sent, an optional comparator, and the original text."""

    value: Decimal
    comparator: Comparator | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class RangeLimits:
    """The limits of one reference-range row, all in the same unit (the analyte's canonical one)."""

    low: Decimal | None = None
    high: Decimal | None = None
    critical_low: Decimal | None = None
    critical_high: Decimal | None = None
    absolute_low: Decimal | None = None
    absolute_high: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RangeRow:
    """One row of a reference-range set, already converted to the analyte's canonical unit.

    ``sex`` None means sex-independent; ``age_min_years`` / ``age_max_years`` form the half-open
    band ``[min, max)`` and None means unbounded on that side. ``specimen`` None means any.
    """

    analyte: str
    unit: str
    limits: RangeLimits
    specimen: str | None = None
    sex: Sex | None = None
    age_min_years: Decimal | None = None
    age_max_years: Decimal | None = None
    source: str = ""
    row_id: str | None = None


@slot_init
@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What range selection needs to know about the patient at collection time."""

    sex: Sex
    birth_date: date | None
    on_date: date
