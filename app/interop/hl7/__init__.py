"""HL7 v2 ORU^R01 in (HTTP and MLLP), ACK out; stored through the panels ingestion service."""
