"""The keyed hash chain over audit rows: a canonical serialization and the HMAC-SHA256 that
links rows; and checkpoints (the signed heads of every chain, exported) and what a walk of the
trail must find for one to hold.

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

import dataclasses
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
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
        utc = value.astimezone(UTC)
        if utc.year < 1000:  # strftime's %Y does not pad years to four digits, isoformat does
            return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool):  # bool is an int subclass; no audit column is boolean
        raise TypeError(f"audit field {name!r} has an unexpected boolean")
    if isinstance(value, int | str):
        return value
    raise TypeError(f"audit field {name!r} has an unsupported type {type(value).__name__}")


# The canonical document's keys in json.dumps(sort_keys=True) order, each with its rendered
# '"key":' prefix: canonical_bytes writes the same bytes as json.dumps without building and
# sorting a dict per row (it is on every audited request's path). tests/audit/test_chain.py
# compares the two over many varied rows.
_SORTED_KEYS = tuple(sorted((*HASHED_FIELDS, "prev_hash", "v")))
_PREFIXES = tuple((name, ("," if i else "{") + f'"{name}":') for i, name in enumerate(_SORTED_KEYS))


def _json(value: str | int | None) -> str:
    """``json.dumps(value, ensure_ascii=True)`` for the three kinds a canonical value takes."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    return int.__repr__(value)  # as json.dumps renders ints (an IntEnum too)


def _uuid_json(value: uuid.UUID) -> str:
    return f'"{value}"'


# The JSON of a canonical value by its exact type, for the common ones (anything else, a
# subclass included, goes through _canonical_value's checks).
_FAST_JSON: dict[type, Any] = {
    str: encode_basestring_ascii,
    type(None): lambda _value: "null",
    uuid.UUID: _uuid_json,
    int: int.__repr__,
}


def canonical_bytes(
    values: Mapping[str, Any], prev_hash: str, *, version: int = CHAIN_VERSION
) -> bytes:
    """Sorted-key, whitespace-free JSON (ASCII-escaped) of the hashed fields and prev_hash:
    byte for byte ``json.dumps(document, sort_keys=True, separators=(",", ":"),
    ensure_ascii=True)``."""
    parts = []
    fast = _FAST_JSON.get
    for name, prefix in _PREFIXES:
        if name == "prev_hash":
            text = _json(prev_hash)
        elif name == "v":
            text = _json(version)
        else:
            value = values[name]
            render = fast(type(value))
            text = render(value) if render is not None else _json(_canonical_value(name, value))
        parts.append(prefix + text)
    parts.append("}")
    return "".join(parts).encode("ascii")


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
    return hmac.digest(key, canonical_bytes(values, prev_hash), "sha256").hex()


def legacy_event_hash(values: Mapping[str, Any], prev_hash: str) -> str:
    """The unkeyed SHA-256 of chain version 1 (rows written before the chain was keyed)."""
    return hashlib.sha256(
        canonical_bytes(values, prev_hash, version=LEGACY_CHAIN_VERSION)
    ).hexdigest()


# --- checkpoints ----------------------------------------------------------------------------------
#
# A checkpoint is a signed statement of the trail at one moment, kept outside the database.
# Version 1 recorded only the trail's newest row and the row count up to it. With a striped
# trail that pins one chain only: the newest rows of every other chain could be removed (and
# the count made up with a later row moved under the checkpoint's seq: seq and chain are not
# hashed) without it noticing. Version 2 also records every chain's head: its newest row and
# how many rows the chain had, so each chain is pinned as tightly as a single chain was.

CHECKPOINT_VERSION = 2

# What a checkpoint states, all signed, by version.
CHECKPOINT_FIELDS: dict[int, tuple[str, ...]] = {
    1: ("version", "last_seq", "last_hash", "count", "created_at"),
    2: ("version", "last_seq", "last_hash", "count", "created_at", "chains"),
}
_CHAIN_HEAD_FIELDS = ("chain", "last_seq", "last_hash", "count")
_HASH_TEXT = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ChainHead:
    """One chain at a checkpoint: its newest row (seq and hash) and its number of rows."""

    chain: int
    last_seq: int
    last_hash: str
    count: int


@dataclass(frozen=True)
class Checkpoint:
    """The trail's newest row (`last_seq`, `last_hash`), its row count and, from version 2,
    the head of every chain that had rows, signed with the checkpoint key."""

    last_seq: int
    last_hash: str
    count: int
    created_at: str
    signature: str
    version: int = CHECKPOINT_VERSION
    chains: tuple[ChainHead, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["chains"] = [dataclasses.asdict(head) for head in self.chains]
        if self.version == 1:
            del document["chains"]
        return document

    @classmethod
    def signed(cls, *, heads: Sequence[ChainHead], created_at: str, key: bytes) -> Checkpoint:
        """A version 2 checkpoint of these chain heads (none: an empty trail)."""
        newest = max(heads, key=lambda head: head.last_seq, default=None)
        fields: dict[str, Any] = {
            "version": CHECKPOINT_VERSION,
            "last_seq": newest.last_seq if newest is not None else 0,
            "last_hash": newest.last_hash if newest is not None else GENESIS_HASH,
            "count": sum(head.count for head in heads),
            "created_at": created_at,
            "chains": tuple(sorted(heads, key=lambda head: head.chain)),
        }
        return cls(**fields, signature=sign_checkpoint(_plain(fields), key))

    @classmethod
    def load(cls, document: Any, key: bytes) -> Checkpoint:
        """A checkpoint read back (from JSON), after checking its signature and shape; raises
        CheckpointError saying why it cannot be trusted."""
        problem = _document_problem(document, key)
        if problem is not None:
            raise CheckpointError(problem)
        return cls(
            last_seq=document["last_seq"],
            last_hash=document["last_hash"],
            count=document["count"],
            created_at=document["created_at"],
            signature=document["signature"],
            version=document["version"],
            chains=tuple(
                ChainHead(**{name: head[name] for name in _CHAIN_HEAD_FIELDS})
                for head in document.get("chains", ())
            ),
        )


class CheckpointError(ValueError):
    """A checkpoint document that cannot be trusted (edited, signed with another key, or not
    a checkpoint)."""


def _plain(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Checkpoint fields as the JSON they are signed as (chain heads as objects)."""
    return {
        name: [dataclasses.asdict(head) for head in value] if name == "chains" else value
        for name, value in fields.items()
    }


def _checkpoint_bytes(head: Mapping[str, Any]) -> bytes:
    fields = {name: head[name] for name in CHECKPOINT_FIELDS[head["version"]]}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_checkpoint(head: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _checkpoint_bytes(head), hashlib.sha256).hexdigest()


def _fields_of(version: Any) -> tuple[str, ...] | None:
    # `type(...) is int`: JSON `true` is no version (True == 1 in Python).
    return CHECKPOINT_FIELDS.get(version) if type(version) is int else None


def checkpoint_signature_valid(checkpoint: Mapping[str, Any], key: bytes) -> bool:
    signature = checkpoint.get("signature")
    fields = _fields_of(checkpoint.get("version"))
    if not isinstance(signature, str) or fields is None or any(n not in checkpoint for n in fields):
        return False
    return hmac.compare_digest(sign_checkpoint(checkpoint, key), signature)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _document_problem(document: Any, key: bytes) -> str | None:
    if not isinstance(document, dict) or _fields_of(document.get("version")) is None:
        return "not a version 1 or 2 audit checkpoint"
    if not checkpoint_signature_valid(document, key):
        return "its signature does not match (edited, or signed with another key)"
    if not (_count(document["last_seq"]) and _count(document["count"])):
        return "last_seq and count must be integers"
    if not isinstance(document["last_hash"], str) or not isinstance(document["created_at"], str):
        return "last_hash and created_at must be text"
    return None if document["version"] == 1 else _heads_problem(document)


def _head_valid(head: Any) -> bool:
    """One {chain, last_seq, last_hash, count} entry of a version 2 checkpoint."""
    return (
        isinstance(head, dict)
        and set(head) == set(_CHAIN_HEAD_FIELDS)
        and _count(head["chain"])
        and _count(head["last_seq"])
        and _count(head["count"])
        and head["count"] > 0
        and isinstance(head["last_hash"], str)
        and _HASH_TEXT.match(head["last_hash"]) is not None
    )


def _heads_problem(document: dict[str, Any]) -> str | None:
    """Why a version 2 checkpoint's chain heads cannot hold, or None."""
    heads = document["chains"]
    if not isinstance(heads, list) or not all(_head_valid(head) for head in heads):
        return "chains must be a list of {chain, last_seq, last_hash, count} heads"
    if len({head["chain"] for head in heads}) != len(heads):
        return "a chain is listed twice"
    newest = max((head["last_seq"] for head in heads), default=0)
    if newest != document["last_seq"] or sum(h["count"] for h in heads) != document["count"]:
        return "its chains do not add up to its last_seq and count"
    return None


class CheckpointTally:
    """What a walk of the trail (every row, in seq order, after its link and hash checked)
    must find for `checkpoint` to hold. `row` answers the problem with that row, `missing`
    what was never found; both name the chain."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.heads = {head.chain: head for head in checkpoint.chains}
        self.seen: dict[int, int] = {}
        # Version 1: the trail's newest row and the rows up to it, whatever their chain.
        self.through = 0
        self.head_found = checkpoint.last_seq == 0

    def row(self, seq: int, chain: int, digest: str) -> str | None:
        checkpoint = self.checkpoint
        position = self.seen[chain] = self.seen.get(chain, 0) + 1
        if seq <= checkpoint.last_seq:
            self.through += 1
        if checkpoint.version == 1:
            if seq == checkpoint.last_seq:
                self.head_found = True
                if digest != checkpoint.last_hash:
                    return f"row {seq} is not the row the checkpoint recorded"
            return None
        head = self.heads.get(chain)
        if head is not None and position == head.count:
            if seq != head.last_seq or digest != head.last_hash:
                return (
                    f"chain {chain}: row {seq} is not the row the checkpoint recorded as the "
                    f"chain's newest (seq {head.last_seq}, row {head.count} of the chain)"
                )
        elif seq <= checkpoint.last_seq and (head is None or position > head.count):
            return (
                f"chain {chain}: row {seq} is older than the checkpoint, which recorded "
                + (f"{head.count} rows of the chain" if head else "no row of the chain")
                + " (rows were moved or inserted)"
            )
        return None

    def missing(self) -> tuple[int | None, str] | None:
        """The chain (None for a version 1 checkpoint) and why rows are missing, or None."""
        checkpoint = self.checkpoint
        if checkpoint.version == 1:
            if self.head_found and self.through == checkpoint.count:
                return None
            return None, (
                f"rows are missing: the checkpoint of {checkpoint.created_at} recorded "
                f"{checkpoint.count} rows through seq {checkpoint.last_seq}, the trail has "
                f"{self.through} (the newest rows were deleted?)"
            )
        for chain, head in sorted(self.heads.items()):
            found = self.seen.get(chain, 0)
            if found < head.count:
                return chain, (
                    f"chain {chain} is missing rows: the checkpoint of {checkpoint.created_at} "
                    f"recorded {head.count} rows through seq {head.last_seq}, the chain has "
                    f"{found} (its newest rows were deleted?)"
                )
        return None
