"""The keyed hash chain over audit rows: a canonical serialization and the HMAC-SHA256 that
links rows, and the signature of an exported head checkpoint.

Each row's `hash` is HMAC-SHA256, under a key derived from the settings' secret
(``MINERAL_AUDIT_KEY``, never stored in the database), over the row's canonical bytes, which
include the previous row's hash. Whoever can write the table but lacks the key (a database
administrator, a stolen backup) cannot recompute a valid chain after changing or removing a row.

Pure functions, no database: the same bytes must come out of a row written on PostgreSQL or
SQLite and of the same row read back later, so every value is formatted explicitly here rather
than left to a driver (SQLite hands datetimes back naive, PostgreSQL aware; UUIDs may come back
as objects or text).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# prev_hash of the first row ever written.
GENESIS_HASH = "0" * 64

# Bump (and keep the old serializer for old rows) if the hashed fields ever change.
# 1: unkeyed SHA-256 (until migration 2026-12-03-1000 re-sealed the chain); 2: HMAC-SHA256.
CHAIN_VERSION = 2
LEGACY_CHAIN_VERSION = 1

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


def canonical_bytes(
    values: Mapping[str, Any], prev_hash: str, *, version: int = CHAIN_VERSION
) -> bytes:
    """Sorted-key, whitespace-free JSON (ASCII-escaped) of the hashed fields and prev_hash."""
    document: dict[str, Any] = {
        name: _canonical_value(name, values[name]) for name in HASHED_FIELDS
    }
    document["prev_hash"] = prev_hash
    document["v"] = version
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


def _derive(secret: str, purpose: bytes) -> bytes:
    # Separate keys per use, so a row hash can never pass as a checkpoint signature.
    return hmac.new(
        secret.encode("utf-8"), b"mineral-labs audit " + purpose, hashlib.sha256
    ).digest()


def row_key(secret: str) -> bytes:
    """The key that links rows, derived from the settings' secret."""
    return _derive(secret, b"chain v2")


def checkpoint_key(secret: str) -> bytes:
    """The key that signs exported head checkpoints."""
    return _derive(secret, b"checkpoint v1")


def event_hash(values: Mapping[str, Any], prev_hash: str, key: bytes) -> str:
    """HMAC-SHA256 of the row's canonical bytes (which include prev_hash) under `key`."""
    return hmac.new(key, canonical_bytes(values, prev_hash), hashlib.sha256).hexdigest()


def legacy_event_hash(values: Mapping[str, Any], prev_hash: str) -> str:
    """The unkeyed SHA-256 of chain version 1 (rows written before the chain was keyed)."""
    return hashlib.sha256(
        canonical_bytes(values, prev_hash, version=LEGACY_CHAIN_VERSION)
    ).hexdigest()


def _checkpoint_bytes(head: Mapping[str, Any]) -> bytes:
    fields = {name: head[name] for name in CHECKPOINT_FIELDS}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# What a checkpoint states about the chain's head, all signed.
CHECKPOINT_FIELDS = ("version", "last_seq", "last_hash", "count", "created_at")


def sign_checkpoint(head: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _checkpoint_bytes(head), hashlib.sha256).hexdigest()


def checkpoint_signature_valid(checkpoint: Mapping[str, Any], key: bytes) -> bool:
    signature = checkpoint.get("signature")
    if not isinstance(signature, str) or any(n not in checkpoint for n in CHECKPOINT_FIELDS):
        return False
    return hmac.compare_digest(sign_checkpoint(checkpoint, key), signature)
