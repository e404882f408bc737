"""Bulk ingestion: NDJSON panel batches (``POST /api/v1/panel-batches``) and ``import FILE``."""
