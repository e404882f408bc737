"""The store of refused inputs: HL7 messages, FHIR Bundles and JSON panels we answered with a
refusal, kept (PHI, audited, time-limited) so they can be re-processed after a fix."""
