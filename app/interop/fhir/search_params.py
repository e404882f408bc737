"""FHIR search requests: which parameters each resource supports, and what a request asked.

One table (``RESOURCE_PARAMS``) drives both the parsing here and the CapabilityStatement, so
the statement lists exactly what is applied. Handling follows FHIR's rules
(https://hl7.org/fhir/R4/search.html#errors): by default (lenient) an unknown or unsupported
parameter is ignored and left out of the Bundle's ``self`` link, so the link shows what was
really applied; with ``Prefer: handling=strict`` it is a 400 OperationOutcome naming it.
A supported parameter with a malformed value is always a 400.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from app.interop.fhir.outcome import FhirError, Issue
from app.interop.fhir.search import bad_parameter

MAX_COUNT = 200
DEFAULT_COUNT = 50


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str  # FHIR search parameter type: token, reference, date, number, string
    documentation: str


_ID = ParamSpec("_id", "token", "Logical ids, comma-separated (OR).")
_PATIENT_REF = "Patient/<id>, <id> or this server's absolute Patient URL; comma-separated (OR)."

# Results (Observation, DiagnosticReport) by id and by patient, in any reference form.
_RESULT_PARAMS = (
    _ID,
    ParamSpec("patient", "reference", _PATIENT_REF),
    ParamSpec("subject", "reference", _PATIENT_REF + " (`subject:Patient` too)."),
    ParamSpec("patient._id", "token", "The patient's logical id (chained)."),
)
_COLLECTED = ParamSpec(
    "date", "date", "Collection time; prefixes eq, ge, gt, le, lt; repeat to AND."
)

RESOURCE_PARAMS: dict[str, tuple[ParamSpec, ...]] = {
    "Patient": (
        _ID,
        ParamSpec("identifier", "token", "system|value, system| or value."),
        ParamSpec("gender", "token", "male, female, other, unknown; comma-separated (OR)."),
        ParamSpec("birthdate", "date", "Prefixes eq, ge, gt, le, lt; repeat to AND."),
    ),
    "Observation": (
        *_RESULT_PARAMS,
        ParamSpec(
            "code",
            "token",
            "LOINC (http://loinc.org|code or code) or the code the lab sent; comma-separated "
            "(OR). Any LOINC code of an analyte finds all its results.",
        ),
        _COLLECTED,
        ParamSpec(
            "status",
            "token",
            "preliminary, final, amended, corrected, cancelled, entered-in-error (OR).",
        ),
    ),
    "DiagnosticReport": (
        *_RESULT_PARAMS,
        _COLLECTED,
        ParamSpec("status", "token", "preliminary, final, corrected, cancelled (OR)."),
    ),
    "CarePlan": (
        _ID,
        ParamSpec("patient", "reference", _PATIENT_REF),
        ParamSpec("subject", "reference", _PATIENT_REF + " (`subject:Patient` too)."),
        ParamSpec(
            "status",
            "token",
            "draft, active, completed, revoked, entered-in-error; comma-separated (OR).",
        ),
    ),
    "ObservationDefinition": (),
}
# Result parameters (https://hl7.org/fhir/R4/search.html#return) every search type takes.
CONTROL_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("_count", "number", f"Page size 0-{MAX_COUNT} (default {DEFAULT_COUNT}); 0: total."),
    ParamSpec("_summary", "token", "count: the total only, no entries."),
    ParamSpec("_total", "token", "none, estimate or accurate; the total is always accurate."),
)
SORTABLE: dict[str, tuple[str, ...]] = {"Observation": ("date",), "DiagnosticReport": ("date",)}
INCLUDES: dict[str, tuple[str, ...]] = {
    "Observation": ("Observation:patient", "Observation:subject"),
    "DiagnosticReport": ("DiagnosticReport:patient", "DiagnosticReport:subject"),
}
# Parameters this server sets in its own links (the paging cursor) or that pick a format.
_SERVER_PARAMS = ("_cursor", "_format")
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})


@dataclass
class Search:
    """A parsed search: the applied parameters (in the order sent) and the result options."""

    resource_type: str
    applied: list[tuple[str, str]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    cursor: str | None = None
    count_only: bool = False
    descending: bool = True
    includes: tuple[str, ...] = ()
    # Lenient handling: what was sent but not applied (named in a warning entry of the Bundle).
    ignored: tuple[str, ...] = ()

    def values(self, name: str) -> list[str]:
        """Every value given for ``name``; comma-separated lists are split (OR)."""
        out: list[str] = []
        for key, value in self.applied:
            if key == name:
                out += [part.strip() for part in value.split(",") if part.strip()]
        return out

    def raw(self, name: str) -> list[str]:
        """Each occurrence of ``name`` as sent (for parameters that repeat to AND)."""
        return [value for key, value in self.applied if key == name]

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.applied)

    def self_url(self, url: str) -> str:
        return _with_query(url, self.applied)

    def next_url(self, url: str, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        kept = [(k, v) for k, v in self.applied if k != "_cursor"]
        return _with_query(url, [*kept, ("_cursor", cursor)])


def _with_query(url: str, items: Sequence[tuple[str, str]]) -> str:
    base = url.split("?", 1)[0]
    return f"{base}?{urlencode(list(items))}" if items else base


def is_strict(prefer: str | None) -> bool:
    """``Prefer: handling=strict`` (RFC 7240 preferences, comma- or semicolon-separated)."""
    if not prefer:
        return False
    parts = [p.strip().lower().replace(" ", "") for p in prefer.replace(";", ",").split(",")]
    return "handling=strict" in parts


def check_format(accept: str | None, formats: Sequence[str]) -> None:
    """406 for a format this server does not produce (XML, Turtle): JSON only."""
    for requested in formats:
        if requested.strip().lower() not in _JSON_FORMATS:
            raise FhirError(
                406,
                [
                    Issue(
                        f"_format {requested!r} is not served; this server answers "
                        "application/fhir+json only.",
                        "not-supported",
                    )
                ],
            )
    if not accept:
        return
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(t in ("*/*", "application/*") or "json" in t for t in types if t):
        return
    raise FhirError(
        406,
        [
            Issue(
                f"Accept {accept!r} cannot be served; this server answers application/fhir+json.",
                "not-supported",
            )
        ],
    )


def parse_search(resource_type: str, items: Sequence[tuple[str, str]], *, strict: bool) -> Search:
    """The search ``items`` (query and/or form pairs) ask for, per the resource's table."""
    known = {spec.name for spec in RESOURCE_PARAMS[resource_type]}
    search = Search(resource_type=resource_type)
    ignored: list[str] = []

    def unsupported(name: str, why: str) -> None:
        if strict:
            raise FhirError(
                400,
                [
                    Issue(
                        f"Search parameter {name!r} {why} (Prefer: handling=strict). "
                        f"Supported for {resource_type}: {_supported_list(resource_type)}.",
                        "not-supported",
                    )
                ],
            )
        ignored.append(name)

    for name, value in items:
        if name == "_format":
            continue
        if name == "subject:Patient":
            name = "subject"
        if name in known:
            search.applied.append((name, value))
        elif name == "_cursor":
            search.cursor = value
            search.applied.append((name, value))
        elif name == "_count":
            search.count = _count(value)
            search.count_only = search.count_only or search.count == 0
            search.applied.append((name, value))
        elif name == "_summary":
            if value == "count":
                search.count_only = True
                search.applied.append((name, value))
            elif value != "false":
                unsupported(f"_summary={value}", "is not supported (use count or false)")
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise bad_parameter(name, "use none, estimate or accurate.")
            search.applied.append((name, value))
        elif name == "_sort":
            if _sort(search, value, SORTABLE.get(resource_type, ())):
                search.applied.append((name, value))
            else:
                unsupported(f"_sort={value}", "is not supported")
        elif name == "_include":
            if value in INCLUDES.get(resource_type, ()):
                search.includes = (*search.includes, value)
                search.applied.append((name, value))
            else:
                unsupported(f"_include={value}", "is not supported")
        else:
            unsupported(name, "is not supported")
    search.ignored = tuple(ignored)
    return search


def _supported_list(resource_type: str) -> str:
    names = [spec.name for spec in RESOURCE_PARAMS[resource_type]]
    names += [spec.name for spec in CONTROL_PARAMS]
    if resource_type in SORTABLE:
        names.append("_sort=" + "|".join(SORTABLE[resource_type]))
    if resource_type in INCLUDES:
        names.append("_include=" + "|".join(INCLUDES[resource_type]))
    return ", ".join(names)


def _count(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 0 <= int(value) <= MAX_COUNT:
        raise bad_parameter("_count", f"expected a whole number from 0 to {MAX_COUNT}.")
    return int(value)


def _sort(search: Search, value: str, sortable: Sequence[str]) -> bool:
    keys = [key.strip() for key in value.split(",") if key.strip()]
    if len(keys) != 1 or keys[0].lstrip("-") not in sortable:
        return False
    search.descending = keys[0].startswith("-")
    return True


def reference_ids(name: str, values: Sequence[str], resource_type: str, base_url: str) -> set[str]:
    """Logical ids named by reference values: ``Type/<id>``, ``<id>`` or this server's absolute
    URL. An absolute URL of another server names nothing here (it matches no record)."""
    ids: set[str] = set()
    ours = urlsplit(base_url)
    for value in values:
        if "://" in value:
            parts = urlsplit(value)
            path = parts.path.rstrip("/")
            prefix = ours.path.rstrip("/") + f"/{resource_type}/"
            if (parts.scheme, parts.netloc) != (ours.scheme, ours.netloc) or not path.startswith(
                prefix
            ):
                ids.add("")  # names a record elsewhere: matches nothing here
                continue
            value = path.removeprefix(prefix)
        elif "/" in value:
            kind, _, value = value.partition("/")
            if kind != resource_type:
                raise bad_parameter(name, f"expected a {resource_type} reference, not {kind}.")
        ids.add(value)
    return ids


def as_uuids(ids: set[str]) -> tuple[uuid.UUID, ...]:
    """Ids as UUIDs; an id that is not one names no record (so it matches nothing)."""
    out: list[uuid.UUID] = []
    for value in ids:
        try:
            out.append(uuid.UUID(value))
        except ValueError:
            continue
    return tuple(out)
