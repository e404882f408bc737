"""FHIR R4 facade: the same ingestion, interpretation, tenancy and audit as the native API.

Resources are validated and built with ``fhir.resources.R4B`` (R4B equals R4 for every
resource used here: Bundle, Patient, Observation, DiagnosticReport, ObservationDefinition,
CapabilityStatement, OperationOutcome); the server announces FHIR 4.0.1.
"""
