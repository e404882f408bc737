from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from app.core.db import utcnow
from app.domain.plans.facts import CONDITIONS, DIET_PATTERNS, MEDICATION_CLASSES
from app.kit.pagination import Page
from app.kit.schemas_common import EARLIEST_DATE, InputModel, JsonDecimal, OutputModel, Text100

# The vocabularies live once, in app.domain.plans.facts (the rules read them there). mypy
# cannot build a Literal from a tuple, so it sees plain strings; pydantic validates the real
# Literal at runtime and the OpenAPI document lists its values as the enum.
if TYPE_CHECKING:
    MedicationClass = str
    ConditionCode = str
    DietPattern = str
else:
    MedicationClass = Literal[MEDICATION_CLASSES]
    ConditionCode = Literal[CONDITIONS]
    DietPattern = Literal[DIET_PATTERNS]

MAX_MEDICATIONS = 30


def _past_date(value: date) -> date:
    if not EARLIEST_DATE <= value <= utcnow().date():
        raise ValueError("must be between 1900-01-01 and today")
    return value


PastDate = Annotated[date, AfterValidator(_past_date)]


def _note_text(value: str) -> str:
    # Line breaks are fine in a note; other control characters (NUL included) are not.
    if any(not (char.isprintable() or char in "\n\r\t") for char in value):
        raise ValueError("must not contain control characters")
    return value


Note = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_note_text)]


class EgfrIn(InputModel):
    value: Decimal = Field(
        ge=1,
        le=200,
        max_digits=5,
        decimal_places=2,
        description="Estimated GFR in mL/min/1.73 m2 (1-200).",
        examples=[52],
    )
    measured_on: PastDate = Field(description="Date of the measurement (not in the future).")


class MedicationIn(InputModel):
    code: MedicationClass = Field(description="The medication class the plan rules know.")
    name: Text100 | None = Field(
        default=None, description="Free text, e.g. the brand or substance as the patient says."
    )
    since: PastDate | None = Field(default=None, description="Taken since (not in the future).")


class ConditionIn(InputModel):
    code: ConditionCode = Field(description="The condition the plan rules know.")
    since: PastDate | None = Field(default=None, description="Known since (not in the future).")


def _distinct_codes(entries: list[MedicationIn] | list[ConditionIn]) -> None:
    codes = [entry.code for entry in entries]
    if len(set(codes)) != len(codes):
        raise ValueError("each code may appear once")


class PatientContextWrite(InputModel):
    """The whole context as it stands now. Every write records a new version; fields left out
    are recorded as unknown (null) or none (empty list)."""

    pregnant: bool | None = Field(default=None, description="Null when unknown.")
    lactating: bool | None = Field(default=None, description="Breastfeeding; null when unknown.")
    egfr: EgfrIn | None = Field(default=None, description="The latest estimated GFR.")
    medications: list[MedicationIn] = Field(
        default_factory=list,
        max_length=MAX_MEDICATIONS,
        description="Relevant medication classes, each at most once.",
    )
    conditions: list[ConditionIn] = Field(
        default_factory=list,
        max_length=len(CONDITIONS),
        description="Relevant conditions, each at most once.",
    )
    diet: DietPattern | None = Field(default=None, description="Diet pattern; null when unknown.")
    caffeine_servings_per_day: int | None = Field(default=None, ge=0, le=30)
    alcohol_drinks_per_week: int | None = Field(default=None, ge=0, le=100)
    note: Note | None = Field(default=None, description="Free-text remark for clinicians.")

    @field_validator("medications")
    @classmethod
    def _distinct_medications(cls, value: list[MedicationIn]) -> list[MedicationIn]:
        _distinct_codes(value)
        return value

    @field_validator("conditions")
    @classmethod
    def _distinct_conditions(cls, value: list[ConditionIn]) -> list[ConditionIn]:
        _distinct_codes(value)
        return value


class CodingOut(OutputModel):
    system: str = Field(description="Code system URI (WHO ATC, SNOMED CT, LOINC).")
    code: str
    display: str


class CodedOut(OutputModel):
    code: str = Field(description="Our code, as sent.")
    display: str
    coding: list[CodingOut] = Field(description="The same concept in standard code systems.")


class MedicationOut(CodedOut):
    name: str | None
    since: date | None


class ConditionOut(CodedOut):
    since: date | None


class EgfrOut(OutputModel):
    value: JsonDecimal
    unit: str = Field(description="UCUM: mL/min/{1.73_m2}.")
    measured_on: date
    coding: list[CodingOut] = Field(description="LOINC codes for eGFR (CKD-EPI 2021 first).")


class PatientContextOut(OutputModel):
    id: uuid.UUID = Field(description="Id of this version.")
    patient_id: uuid.UUID
    version: int = Field(description="1 for the first write, +1 for each later one.")
    pregnant: bool | None
    lactating: bool | None
    egfr: EgfrOut | None
    medications: list[MedicationOut]
    conditions: list[ConditionOut]
    diet: CodedOut | None
    caffeine_servings_per_day: int | None
    alcohol_drinks_per_week: int | None
    note: str | None
    recorded_at: datetime
    recorded_by: str = Field(description="The principal that recorded this version.")


class PatientContextPage(Page[PatientContextOut]):
    pass


CONTEXT_EXAMPLE = {
    "pregnant": False,
    "lactating": False,
    "egfr": {"value": 52, "measured_on": "2026-10-02"},
    "medications": [
        {"code": "levothyroxine", "name": "Euthyrox", "since": "2019-03-01"},
        {"code": "proton-pump-inhibitor", "name": "omeprazole"},
    ],
    "conditions": [{"code": "chronic-kidney-disease", "since": "2024-05-01"}],
    "diet": "vegetarian",
    "caffeine_servings_per_day": 3,
    "alcohol_drinks_per_week": 2,
    "note": "Takes levothyroxine at 06:00 on an empty stomach.",
}
