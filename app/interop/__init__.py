"""Interoperability facades (FHIR R4, HL7 v2) over the one ingestion path."""
