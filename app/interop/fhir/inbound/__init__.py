"""FHIR Bundle in: validate with fhir.resources, then map to the native input models.

Pure mapping (no I/O). A Bundle becomes units of work (``units``): each Patient entry is one
unit (``patient``); each DiagnosticReport entry with the Observation entries its ``result``
references is one unit (``report``, ``observations``), which becomes ONE ``PanelCreate`` for
``app.panels.service.ingest``. ``bundle`` checks the Bundle and its entries and ties them
together. Every problem names the entry it came from as a FHIRPath expression
(``Bundle.entry[3].resource.valueQuantity.code``), written where the problem is found.

EHR shapes accepted: ``valueString`` numbers (``<0.5``, ``0.62 mmol/L``), ``component`` panels
(one result per component), ``dataAbsentReason`` (not stored: a warning in the entry's
response; the other results are stored), ``effectivePeriod.start``, a report without
identifier (natural key, ``report._natural_key``), a referenceRange in another unit (converted),
and conditional create / update criteria with several parameters (``Conditions``).
"""

from app.interop.fhir.inbound.bundle import SUPPORTED, parse_bundle
from app.interop.fhir.inbound.report import DEFAULT_SOURCE
from app.interop.fhir.inbound.units import (
    Conditions,
    IdentifierToken,
    ParsedBundle,
    PatientUnit,
    ReportUnit,
    ResultSource,
    parse_token,
)

__all__ = [
    "DEFAULT_SOURCE",
    "SUPPORTED",
    "Conditions",
    "IdentifierToken",
    "ParsedBundle",
    "PatientUnit",
    "ReportUnit",
    "ResultSource",
    "parse_bundle",
    "parse_token",
]
