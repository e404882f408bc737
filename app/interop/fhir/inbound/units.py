"""The units of work a posted Bundle becomes, and where each native field came from.

A ``PatientUnit`` is one Patient entry; a ``ReportUnit`` is one DiagnosticReport entry with the
Observation entries its ``result`` references (ONE ``PanelCreate``). Each unit records, as it is
built, the FHIRPath of every result (``ResultSource``), so an error the ingestion service raises
later about ``body.results[2].unit`` is answered at ``Bundle.entry[5].resource.valueQuantity.code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from app.interop.fhir.outcome import FhirError, Issue
from app.panels.schemas import PanelCreate, PatientRef
from app.patients.schemas import PatientCreate


@dataclass(frozen=True)
class IdentifierToken:
    """A FHIR token search value: ``system|value``, ``|value``, ``system|`` or ``value``.
    ``system`` None means any system; ``value`` None means any value."""

    system: str | None
    value: str | None


def parse_token(text: str) -> IdentifierToken:
    if "|" not in text:
        return IdentifierToken(system=None, value=text or None)
    system, _, value = text.partition("|")
    return IdentifierToken(system=system, value=value or None)


@dataclass(frozen=True)
class Conditions:
    """A conditional create's criteria (``ifNoneExist``, or the query of a conditional update
    ``PUT Patient?...``), ANDed: every identifier must name the patient, and birthdate /
    gender, when given, must be the patient's. ``where`` is the FHIRPath of the criteria."""

    identifiers: tuple[IdentifierToken, ...]
    where: str
    birthdate: date | None = None
    gender: str | None = None
    update: bool = False  # PUT Patient?...: create if none, else match (no overwrite)


@dataclass
class PatientUnit:
    index: int
    full_url: str | None
    data: PatientCreate
    if_none_exist: Conditions | None
    # Identifier.type as an HL7 table 0203 code (v2-0203 coding), by position in data.identifiers.
    identifier_types: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class ResultSource:
    """Where one native result came from: an Observation entry, or one of its components."""

    entry: int
    path: str  # "" for the Observation itself, ".component[2]" for a component
    value_path: str  # ".valueQuantity.value" or ".valueString"
    unit_path: str  # ".valueQuantity.code", ".valueString" or ".referenceRange[0].low.code"


@dataclass
class ReportUnit:
    index: int
    full_url: str | None
    observation_indexes: list[int]
    subject_entry: str | None  # fullUrl of a Patient entry of this Bundle
    subject: PatientRef | None  # a patient already stored (by id or identifier)
    fields: dict[str, Any]  # PanelCreate without `patient`
    # One per fields["results"] (a component panel gives several; an Observation with
    # dataAbsentReason none), and information/warning issues for entries, by entry index.
    sources: list[ResultSource] = field(default_factory=list)
    notes: dict[int, list[Issue]] = field(default_factory=dict)

    def panel(self, patient: PatientRef) -> PanelCreate:
        try:
            return PanelCreate.model_validate({**self.fields, "patient": patient})
        except ValidationError as exc:
            raise FhirError(422, self.issues_for_validation(exc)) from exc

    def issues_for_validation(self, exc: ValidationError) -> list[Issue]:
        return [
            Issue(
                diagnostics=str(err["msg"]),
                code="invalid",
                expression=(self.expression_at(err["loc"]),),
            )
            for err in exc.errors()
        ]

    def expression_at(self, loc: Sequence[int | str]) -> str:
        """Where a native field, as a pydantic error location (``("results", 2, "unit")``),
        came from in the Bundle."""
        return self.expression_for(".".join(str(part) for part in loc))

    def expression_for(self, field_path: str) -> str:
        """Where a native field (``body.results[2].unit`` or ``results.2.unit``, as the
        ingestion service names it) came from in the Bundle."""
        path = field_path.removeprefix("body.")
        parts = path.replace("[", ".").replace("]", "").split(".")
        if parts[0] == "results" and len(parts) > 1 and parts[1].isdecimal():
            return self._result_expression(int(parts[1]), parts[2] if len(parts) > 2 else "")
        return f"Bundle.entry[{self.index}].resource" + _PANEL_FIELDS.get(path.split(".")[0], "")

    def _result_expression(self, position: int, name: str) -> str:
        if position >= len(self.sources):
            return f"Bundle.entry[{self.index}].resource"
        source = self.sources[position]
        where = f"Bundle.entry[{source.entry}].resource{source.path}"
        if name == "value":
            return where + source.value_path
        if name == "unit":
            return where + source.unit_path
        return where + _RESULT_FIELDS.get(name, "")


_RESULT_FIELDS = {
    "analyte": ".code",
    "value": ".valueQuantity.value",
    "unit": ".valueQuantity.code",
    "reference_range": ".referenceRange[0]",
    "flag": ".interpretation[0]",
    "status": ".status",
}
_PANEL_FIELDS = {
    "patient": ".subject",
    "source": ".identifier[0].system",
    "accession": ".identifier[0].value",
    "collected_at": ".effectiveDateTime",
    "status": ".status",
    "performing_lab": ".performer[0]",
    "specimen": ".specimen",
}


@dataclass
class ParsedBundle:
    kind: str  # "transaction" | "batch"
    size: int
    patients: list[PatientUnit] = field(default_factory=list)
    reports: list[ReportUnit] = field(default_factory=list)
    failures: dict[int, FhirError] = field(default_factory=dict)


def entry_error(index: int, path: str, message: str, code: str = "invalid") -> FhirError:
    """A 422 for one entry, at ``Bundle.entry[index].resource.<path>``."""
    where = f"Bundle.entry[{index}].resource" + (f".{path}" if path else "")
    return FhirError(422, [Issue(message, code, "error", (where,))])


@dataclass(frozen=True)
class BundleIndex:
    """A Bundle's entries, their resources and the entry each ``fullUrl`` names."""

    bundle: Bundle
    entries: list[BundleEntry]
    resources: list[Resource | None]
    by_url: dict[str, int]

    def resolve(self, reference: str) -> int | None:
        if reference in self.by_url:
            return self.by_url[reference]
        for url, index in self.by_url.items():  # a relative reference to an absolute fullUrl
            if not reference.startswith("urn:") and url.endswith("/" + reference):
                return index
        return None

    def url_of(self, index: int) -> str:
        return next(url for url, i in self.by_url.items() if i == index)
