"""Errors raised by the pure clinical modules.

Each carries a human-readable message (safe to show an integrator: no PHI, no stack) and the
structured attributes a handler needs to build an RFC 9457 problem. ``code`` is a stable,
machine-readable slug so the HTTP layer can map errors without parsing messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class DomainError(ValueError):
    """Root of every error the domain layer raises on bad input."""

    code: ClassVar[str] = "domain-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _listing(items: Iterable[str]) -> str:
    joined = ", ".join(items)
    return joined if joined else "(none)"


class UnknownAnalyteError(DomainError):
    """A name, code or LOINC code that matches no analyte in the catalog."""

    code: ClassVar[str] = "unknown-analyte"

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        self.known: tuple[str, ...] = tuple(known)
        super().__init__(f"Unknown analyte {name!r}; known analytes: {_listing(self.known)}")


class UnknownUnitError(DomainError):
    """A unit string that is neither a supported UCUM code nor a known alias."""

    code: ClassVar[str] = "unknown-unit"

    def __init__(self, unit: str, accepted: Iterable[str] = ()) -> None:
        self.unit = unit
        self.accepted: tuple[str, ...] = tuple(accepted)
        super().__init__(f"Unknown unit {unit!r}; accepted units: {_listing(self.accepted)}")


class UnitNotApplicableError(DomainError):
    """A real unit that makes no sense for this analyte (e.g. meq/L for zinc)."""

    code: ClassVar[str] = "unit-not-applicable"

    def __init__(self, unit: str, analyte_code: str, accepted: Iterable[str] = ()) -> None:
        self.unit = unit
        self.analyte_code = analyte_code
        self.accepted: tuple[str, ...] = tuple(accepted)
        super().__init__(
            f"Unit {unit!r} does not apply to analyte {analyte_code!r}; "
            f"accepted units: {_listing(self.accepted)}"
        )


class InvalidValueError(DomainError):
    """A reported result value that is not a finite, non-negative decimal."""

    code: ClassVar[str] = "invalid-value"

    def __init__(self, message: str, *, raw: str | None = None) -> None:
        self.raw = raw
        super().__init__(message)
