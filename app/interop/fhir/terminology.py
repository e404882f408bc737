"""Code systems and extension URLs used by the FHIR facade."""

from __future__ import annotations

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
REFERENCE_RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"

# Our own definitions; the base is the problem-type base of the native API.
BASE = "https://mineral-labs.example/fhir"
# The value in the analyte's canonical unit (valueQuantity is the value as reported).
CANONICAL_VALUE_EXTENSION = f"{BASE}/StructureDefinition/canonical-value"
INTERPRETED_BY_EXTENSION = f"{BASE}/StructureDefinition/interpretation-source"
ANALYTE_SYSTEM = f"{BASE}/CodeSystem/analyte"

# The v3 ObservationInterpretation codes a lab may send as a flag (HL7 v2 OBX-8 style).
INTERPRETATION_CODES = frozenset(
    {"L", "LL", "H", "HH", "N", "A", "AA", "IND", "<", ">", "LU", "HU", "U", "D", "B", "W"}
)
PLAN_CATEGORY_SYSTEM = f"{BASE}/CodeSystem/plan-item-category"
PLAN_RULE_SYSTEM = f"{BASE}/CodeSystem/plan-rule"
