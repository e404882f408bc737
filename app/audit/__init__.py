"""PHI audit trail: append-only rows linked by a SHA-256 hash chain, and its verification."""
