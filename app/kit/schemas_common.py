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
