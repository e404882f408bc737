"""Pydantic building blocks shared by several domains' schemas."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

# Decimals leave the API as JSON numbers (clinician front-ends chart them); the digits a lab
# sent are kept separately as text.
JsonDecimal = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]

EARLIEST_DATE = date(1900, 1, 1)


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


class IdentifierIn(InputModel):
    system: Text255 = Field(
        description="Namespace of the identifier, e.g. the EHR's MRN system URI.",
        examples=["urn:oid:2.16.840.1.113883.19.5"],
    )
    value: Text255 = Field(description="The identifier within that system.", examples=["MRN-0042"])


class IdentifierOut(OutputModel):
    system: str
    value: str
