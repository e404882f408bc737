"""The canonical serialization behind the hash chain, without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.audit.chain import GENESIS_HASH, HASHED_FIELDS, canonical_bytes, event_hash


def _values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(HASHED_FIELDS)
    values.update(
        id=uuid.UUID("6f1c1e1a-8d2b-4c4e-9a57-0d7f4bb0a001"),
        occurred_at=datetime(2026, 11, 25, 13, 0, tzinfo=UTC),
        action="read",
        resource_type="patient",
        outcome="success",
        status_code=200,
    )
    values.update(overrides)
    return values


def test_the_same_instant_in_any_offset_serializes_identically() -> None:
    utc = _values(occurred_at=datetime(2026, 11, 25, 13, 0, tzinfo=UTC))
    offset = _values(occurred_at=datetime(2026, 11, 25, 14, 0, tzinfo=timezone(timedelta(hours=1))))

    assert canonical_bytes(utc, GENESIS_HASH) == canonical_bytes(offset, GENESIS_HASH)
    assert b'"occurred_at":"2026-11-25T13:00:00.000000Z"' in canonical_bytes(utc, GENESIS_HASH)


def test_a_uuid_serializes_as_its_lowercase_hyphenated_text() -> None:
    as_object = _values(patient_id=uuid.UUID("ABCDEF00-0000-4000-8000-000000000001"))

    assert b'"patient_id":"abcdef00-0000-4000-8000-000000000001"' in canonical_bytes(
        as_object, GENESIS_HASH
    )


def test_the_hash_covers_every_field_and_the_previous_hash() -> None:
    base = event_hash(_values(), GENESIS_HASH)

    assert event_hash(_values(), GENESIS_HASH) == base
    assert event_hash(_values(), "f" * 64) != base
    for name, other in (("action", "update"), ("status_code", 201), ("path", "/x")):
        assert event_hash(_values(**{name: other}), GENESIS_HASH) != base


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical_bytes(_values(occurred_at=datetime(2026, 11, 25, 13, 0)), GENESIS_HASH)
