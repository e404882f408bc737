"""Pydantic building blocks shared by several domains' schemas."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

# Decimals leave the API as JSON numbers (clinician front-ends chart them); the digits a lab
# sent are kept separately as text.
JsonDecimal = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]

EARLIEST_DATE = date(1900, 1, 1)

# What a time must be once read in UTC: Python's datetime (and so every column) covers years
# 1 to 9999, and an offset can push a time at either end outside them.
UTC_RANGE = "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"


def representable_in_utc(value: datetime) -> bool:
    """Whether `value` (with an offset) still has a date once read in UTC."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _in_utc_range(value: datetime) -> datetime:
    if not representable_in_utc(value):
        raise ValueError(f"must lie {UTC_RANGE} once read in UTC")
    return value


# Every time a client sends (body or query): an offset required, and a moment every column
# and comparison can hold (``0001-01-01T00:01:00+01:00`` is a valid RFC 3339 time before year
# 1 in UTC). Kept with the offset it was sent with.
Instant = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


class InputModel(BaseModel):
    """Every request body: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


Text100 = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable)]
Text255 = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_printable)]


def _system_uri(value: str) -> str:
    # Imported here: app.identifier_systems reads the settings, which import this module.
    from app.identifier_systems import system_uri

    return system_uri(value)


class IdentifierIn(InputModel):
    system: Annotated[Text255, AfterValidator(_system_uri)] = Field(
        description="Namespace of the identifier: an absolute URI (`urn:oid:...`, `https://...`). "
        "A name that is not one (a legacy system such as `acme-lab`) is read as its URI in the "
        "default scheme `urn:mineral-labs:system:<name>`; new patients need a URI.",
        examples=["urn:oid:2.16.840.1.113883.19.5"],
    )
    value: Text255 = Field(description="The identifier within that system.", examples=["MRN-0042"])


class IdentifierOut(OutputModel):
    system: str
    value: str
