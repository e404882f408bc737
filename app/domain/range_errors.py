"""Errors raised by reference-range selection, interpretation and range-set parsing.

They are plain exceptions (no HTTP knowledge); the service layer maps them onto the application's
error tree. They live apart from ``app/domain/errors.py`` so the catalog/units errors and these
can evolve independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain.types import RangeLimits, RangeRow, ResultValue


class ReferenceRangeError(Exception):
    """Root of the errors raised by the reference-range modules."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AmbiguousRangeError(ReferenceRangeError):
    """Two or more equally specific rows match one patient: the range set is faulty."""

    def __init__(self, message: str, rows: Sequence[RangeRow]) -> None:
        super().__init__(message)
        self.rows = tuple(rows)


class ImpossibleValueError(ReferenceRangeError):
    """A value lies outside the absolute (plausibility) limits: it is never interpreted."""

    def __init__(self, message: str, value: ResultValue, limits: RangeLimits) -> None:
        super().__init__(message)
        self.value = value
        self.limits = limits


class RangeSetFormatError(ReferenceRangeError):
    """A range-set document (YAML, CSV or JSON) could not be read or failed validation.

    ``errors`` holds one dict per problem: ``loc`` (a list, e.g. ``["rows", 3, "low"]``), ``path``
    (the same as text, e.g. ``rows[3].low``), ``msg`` and, when known, ``line``.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = list(errors or [])
