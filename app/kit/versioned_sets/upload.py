"""One reader for uploaded set documents: JSON, YAML and whatever else a domain parses.

The domain gives its parsers by media type and how to list a validation error's entries; the
reader maps every failure onto the same problems: 400 for JSON that does not parse, 415 for
a media type without a parser, and the domain's 422 (with one entry per problem) for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.core.errors import UnprocessableError, validation_errors
from app.kit import uploads

D = TypeVar("D")
M = TypeVar("M", bound=BaseModel)

Parser = Callable[[bytes, str], D]
"""(raw body, its UTF-8 text) -> the document."""


class FormatError(Protocol):
    """What the domain's format errors carry (RangeSetFormatError, RuleSetFormatError)."""

    message: str
    errors: list[dict[str, Any]]


@dataclass(frozen=True)
class UploadReader(Generic[D]):
    """`parsers` by media type ("" is a request without Content-Type); `accepted` names them
    in the 415 message; `format_errors` are the domain's exception types for a document that
    could not be read; `validation_entries` lists pydantic's errors as problem entries (field
    paths and messages by default)."""

    noun: str
    invalid: type[UnprocessableError]
    parsers: Mapping[str, Parser[D]]
    accepted: str
    format_errors: tuple[type[Exception], ...]
    validation_entries: Callable[[ValidationError], list[dict[str, Any]]] = field(
        default=lambda exc: validation_errors(exc.errors())
    )

    async def read(self, request: Request, extra: Mapping[str, Parser[D]] | None = None) -> D:
        """The document in the body; `extra` adds parsers that need the request's parameters
        (a CSV's name and source)."""
        media_type = uploads.media_type(request)
        raw, text = await uploads.body_text(request)  # a body that is not UTF-8: 422 first
        parser = {**self.parsers, **(extra or {})}.get(media_type)
        if parser is None:
            raise uploads.UnsupportedMediaTypeError(f"Send {self.accepted}, not {media_type!r}.")
        try:
            return parser(raw, text)
        except ValidationError as exc:
            if any(error["type"] == "json_invalid" for error in exc.errors()):
                raise uploads.MalformedJsonError("The request body is not valid JSON.") from exc
            raise self.invalid(
                f"The {self.noun} failed validation; see 'errors'.",
                errors=self.validation_entries(exc),
            ) from exc
        except self.format_errors as exc:
            failure: FormatError = exc  # type: ignore[assignment]
            raise self.invalid(
                failure.message,
                errors=[uploads.format_error_entry(error) for error in failure.errors],
            ) from exc


def json_and_yaml(model: type[M], yaml: Callable[[str], M]) -> dict[str, Parser[M]]:
    """The parsers every set accepts: JSON into `model` (also without a Content-Type) and
    YAML with the domain's reader (which keeps decimals exact and names lines)."""

    def from_json(raw: bytes, _: str) -> M:
        return model.model_validate_json(raw)

    def from_yaml(_: bytes, text: str) -> M:
        return yaml(text)

    return {
        "application/json": from_json,
        "": from_json,
        **dict.fromkeys(uploads.YAML_TYPES, from_yaml),
    }
