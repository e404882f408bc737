"""The hash chain over audit rows: a canonical serialization and the SHA-256 that links rows.

Pure functions, no database: the same bytes must come out of a row written on PostgreSQL or
SQLite and of the same row read back later, so every value is formatted explicitly here rather
than left to a driver (SQLite hands datetimes back naive, PostgreSQL aware; UUIDs may come back
as objects or text).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# prev_hash of the first row ever written.
GENESIS_HASH = "0" * 64

# Bump (and keep the old serializer for old rows) if the hashed fields ever change.
CHAIN_VERSION = 1

# Every stored column except `seq` (the database assigns it; the prev_hash links already fix
# the order) and `hash` itself. `prev_hash` is added by canonical_bytes.
HASHED_FIELDS = (
    "id",
    "occurred_at",
    "organization_id",
    "principal_id",
    "principal_kind",
    "role",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "outcome",
    "status_code",
    "method",
    "path",
    "request_id",
    "client_address",
)


def _canonical_value(name: str, value: Any) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"audit field {name!r} is a naive datetime")
        # Microseconds always present: both backends store exactly microsecond precision.
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool):  # bool is an int subclass; no audit column is boolean
        raise TypeError(f"audit field {name!r} has an unexpected boolean")
    if isinstance(value, int | str):
        return value
    raise TypeError(f"audit field {name!r} has an unsupported type {type(value).__name__}")


def canonical_bytes(values: Mapping[str, Any], prev_hash: str) -> bytes:
    """Sorted-key, whitespace-free JSON (ASCII-escaped) of the hashed fields and prev_hash."""
    document: dict[str, Any] = {
        name: _canonical_value(name, values[name]) for name in HASHED_FIELDS
    }
    document["prev_hash"] = prev_hash
    document["v"] = CHAIN_VERSION
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def event_hash(values: Mapping[str, Any], prev_hash: str) -> str:
    return hashlib.sha256(canonical_bytes(values, prev_hash)).hexdigest()


_SLOT = "<<prev-hash>>"


def canonical_parts(values: Mapping[str, Any]) -> tuple[str, str]:
    """The canonical text before and after the prev_hash value, for a database that fills the
    slot itself: ``before + prev_hash + after == canonical_bytes(values, prev_hash)``."""
    before, after = canonical_bytes(values, _SLOT).decode("ascii").split(_SLOT)
    return before, after
