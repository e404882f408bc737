"""Per-organization HL7 v2 code maps: a sender's local test codes → our analytes."""
