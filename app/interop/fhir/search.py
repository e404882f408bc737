"""FHIR search parameters: reference, token and date values, parsed into repository filters."""

from __future__ import annotations

import re
from calendar import isleap, monthrange
from datetime import UTC, datetime, timedelta

from app.domain.catalog import Catalog
from app.domain.errors import DomainError
from app.interop.fhir.inbound import parse_token
from app.interop.fhir.outcome import FhirError, Issue
from app.interop.fhir.terminology import ANALYTE_SYSTEM, LOINC

_DATE = re.compile(r"^(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?(?P<value>\d{4}.*)$")
_SUPPORTED_PREFIXES = ("eq", "gt", "lt", "ge", "le")


def bad_parameter(name: str, message: str) -> FhirError:
    return FhirError(400, [Issue(f"Search parameter {name}: {message}", "invalid")])


def analyte_codes(value: str, catalog: Catalog) -> tuple[str, ...]:
    """Analytes named by a token list (``http://loinc.org|19123-9,2601-3``), OR-ed.

    Any LOINC code of an analyte finds all its results (a mass-unit code also finds results
    sent in moles: results are stored per analyte). Unknown codes match nothing."""
    found: list[str] = []
    for item in value.split(","):
        token = parse_token(item.strip())
        if token.value is None:
            continue
        try:
            if token.system == ANALYTE_SYSTEM:
                found.append(catalog.get(token.value).code)
            elif token.system in (LOINC, None):
                found.append(catalog.by_loinc(token.value).code)
        except DomainError:
            continue
    return tuple(dict.fromkeys(found))


# A day's margin either side in UTC: a date column's bound is the day after an instant's
# (``_date_end``), and every bound is compared in UTC.
_SEARCHABLE = "periods within 0001-01-02 and 9999-12-30, in UTC"
_DAY = timedelta(days=1)


def _period(name: str, text: str) -> tuple[datetime, datetime]:
    """The [start, end) a date value covers at its precision; no offset means UTC."""
    try:
        if len(text) == 4:
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            length = timedelta(days=366 if isleap(start.year) else 365)
        elif len(text) == 7:
            start = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
            length = timedelta(days=monthrange(start.year, start.month)[1])
        elif len(text) == 10:
            start = datetime.fromisoformat(text).replace(tzinfo=UTC)
            length = _DAY
        else:
            start = datetime.fromisoformat(text)
            if start.tzinfo is None:
                start = start.replace(tzinfo=UTC)
            length = timedelta(seconds=1)
    except ValueError:
        raise bad_parameter(name, f"{text!r} is not a FHIR date or dateTime.") from None
    try:
        in_utc = start.astimezone(UTC)
        in_utc - _DAY, in_utc + length + _DAY  # noqa: B018  (each may overflow)
    except OverflowError:
        raise bad_parameter(
            name, f"{text!r} lies outside the times searched ({_SEARCHABLE})."
        ) from None
    return start, start + length


def date_bounds(name: str, values: list[str]) -> tuple[tuple[datetime, ...], tuple[datetime, ...]]:
    """(lower bounds t >= x, upper bounds t < x) for ``date`` parameters, all ANDed."""
    starts: list[datetime] = []
    ends: list[datetime] = []
    for raw in values:
        match = _DATE.match(raw.strip())
        if match is None:
            raise bad_parameter(name, f"{raw!r} is not a FHIR date or dateTime.")
        prefix = match.group("prefix") or "eq"
        if prefix not in _SUPPORTED_PREFIXES:
            raise FhirError(
                400,
                [
                    Issue(
                        f"Search parameter {name}: prefix {prefix!r} is not supported "
                        f"(use {', '.join(_SUPPORTED_PREFIXES)}).",
                        "not-supported",
                    )
                ],
            )
        start, end = _period(name, match.group("value"))
        if prefix in ("eq", "ge"):
            starts.append(start)
        if prefix == "gt":
            starts.append(end)
        if prefix in ("eq", "le"):
            ends.append(end)
        if prefix == "lt":
            ends.append(start)
    return tuple(starts), tuple(ends)
