"""Idempotency-Key for POSTs that create: claim, store and replay the first response."""
