from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import Field, field_validator, model_validator

from app.core.db import utcnow
from app.domain.identifier_systems import is_absolute_uri
from app.domain.types import Sex
from app.kit.pagination import Page
from app.kit.schemas_common import (
    EARLIEST_DATE,
    IdentifierIn,
    IdentifierOut,
    InputModel,
    OutputModel,
    Text255,
)


class HumanNameIn(InputModel):
    """The patient's name in the shape of FHIR's HumanName (one name: the one to show and
    search; FHIR messages with several names give their `official` or first one)."""

    family: Text255 | None = Field(default=None, description="Family name (surname).")
    given: list[Text255] = Field(
        default_factory=list, max_length=5, description="Given names, in order."
    )
    text: Text255 | None = Field(
        default=None,
        description="The full name as it should be shown, when it is not simply the given "
        "names followed by the family name.",
    )

    @model_validator(mode="after")
    def _something(self) -> HumanNameIn:
        if self.family is None and not self.given and self.text is None:
            raise ValueError("a name needs a family name, a given name or a text")
        return self


class HumanNameOut(OutputModel):
    family: str | None
    given: list[str]
    text: str = Field(
        description="The name as sent, or else the given names followed by the family name."
    )


class PatientCreate(InputModel):
    identifiers: list[IdentifierIn] = Field(
        min_length=1,
        max_length=10,
        description="External identifiers; each (system, value) is unique in the organization.",
    )
    sex: Sex = Field(
        description="Used to pick sex-specific reference ranges; `other` and `unknown` use "
        "the sex-independent range."
    )
    birth_date: date | None = Field(
        default=None,
        description="Used to pick age-banded reference ranges. Without it only ranges without "
        "an age band apply.",
    )
    name: HumanNameIn | None = Field(
        default=None, description="The patient's name (shown on the printable plan, searchable)."
    )

    @field_validator("birth_date")
    @classmethod
    def _plausible_birth_date(cls, value: date | None) -> date | None:
        if value is not None and not (EARLIEST_DATE <= value <= utcnow().date()):
            raise ValueError("birth_date must be between 1900-01-01 and today")
        return value

    @field_validator("identifiers", mode="before")
    @classmethod
    def _uri_systems(cls, identifiers: Any) -> Any:
        """New patients name their identifiers' systems by absolute URI (FHIR Identifier.system
        is a uri): a bare name is refused here rather than turned into one silently."""
        for index, identifier in enumerate(identifiers if isinstance(identifiers, list) else []):
            system = identifier.get("system") if isinstance(identifier, dict) else None
            if isinstance(system, str) and system and not is_absolute_uri(system):
                raise ValueError(
                    f"identifiers[{index}].system {system[:60]!r} is not an absolute URI: use "
                    "the issuer's URI, e.g. urn:oid:2.16.840.1.113883.19.5 or "
                    "https://hospital.example/mrn"
                )
        return identifiers

    @field_validator("identifiers")
    @classmethod
    def _distinct(cls, value: list[IdentifierIn]) -> list[IdentifierIn]:
        if len({(i.system, i.value) for i in value}) != len(value):
            raise ValueError("identifiers must be distinct")
        return value


class PatientUpdate(InputModel):
    """The fields a clinic may correct. Identifiers are fixed once registered."""

    sex: Sex | None = Field(default=None, description="Corrected sex.")
    birth_date: date | None = Field(default=None, description="Corrected birth date.")
    name: HumanNameIn | None = Field(
        default=None, description="The corrected name (replaces the whole name; null removes it)."
    )

    @field_validator("birth_date")
    @classmethod
    def _plausible_birth_date(cls, value: date | None) -> date | None:
        return PatientCreate._plausible_birth_date(value)


class PatientOut(OutputModel):
    id: uuid.UUID
    identifiers: list[IdentifierOut]
    sex: Sex
    birth_date: date | None
    name: HumanNameOut | None = Field(description="Null when no name was recorded.")
    version: int
    created_at: datetime
    updated_at: datetime


class PatientPage(Page[PatientOut]):
    pass


PATIENT_EXAMPLE = {
    "identifiers": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-0042"}],
    "sex": "female",
    "birth_date": "1981-04-12",
    "name": {"family": "Smith", "given": ["Anna", "Maria"]},
}
