"""The canonical serialization behind the hash chain, without a database."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from app.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    canonical_bytes,
    checkpoint_key,
    checkpoint_signature_valid,
    event_hash,
    legacy_event_hash,
    row_key,
    sign_checkpoint,
)
from app.core.config import DEVELOPMENT_AUDIT_KEY, Settings

KEY = row_key("unit-test secret, long enough for the chain 0123")


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
    base = event_hash(_values(), GENESIS_HASH, KEY)

    assert event_hash(_values(), GENESIS_HASH, KEY) == base
    assert event_hash(_values(), "f" * 64, KEY) != base
    for name, other in (("action", "update"), ("status_code", 201), ("path", "/x")):
        assert event_hash(_values(**{name: other}), GENESIS_HASH, KEY) != base


def test_the_hash_is_keyed_so_it_cannot_be_recomputed_without_the_key() -> None:
    base = event_hash(_values(), GENESIS_HASH, KEY)

    assert event_hash(_values(), GENESIS_HASH, row_key("another secret " + "x" * 32)) != base
    assert base != hashlib.sha256(canonical_bytes(_values(), GENESIS_HASH)).hexdigest()
    assert base != legacy_event_hash(_values(), GENESIS_HASH)
    assert base == hmac.new(KEY, canonical_bytes(_values(), GENESIS_HASH), "sha256").hexdigest()


def test_row_and_checkpoint_keys_differ_and_checkpoints_verify_only_unchanged() -> None:
    secret = "s" * 16 + "0123456789abcdef"
    assert row_key(secret) != checkpoint_key(secret)
    head = {"version": 1, "last_seq": 7, "last_hash": "a" * 64, "count": 5, "created_at": "t"}
    signed = {**head, "signature": sign_checkpoint(head, checkpoint_key(secret))}

    assert checkpoint_signature_valid(signed, checkpoint_key(secret))
    assert not checkpoint_signature_valid({**signed, "count": 4}, checkpoint_key(secret))
    assert not checkpoint_signature_valid(signed, row_key(secret))
    assert not checkpoint_signature_valid(head, checkpoint_key(secret))


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical_bytes(_values(occurred_at=datetime(2026, 11, 25, 13, 0)), GENESIS_HASH)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (DEVELOPMENT_AUDIT_KEY, "development default"),
        ("short secret", "shorter than 32"),
        ("ab" * 20, "too few distinct"),
    ],
)
def test_a_weak_audit_key_is_refused_outside_development(key: str, why: str) -> None:
    for environment in ("production", "test"):
        with pytest.raises(ValidationError, match=why):
            Settings(environment=environment, audit_key=key)


def test_the_development_default_key_is_accepted_in_development_only() -> None:
    settings = Settings(environment="development", audit_key=DEVELOPMENT_AUDIT_KEY)

    assert settings.audit_key.get_secret_value() == DEVELOPMENT_AUDIT_KEY
    assert DEVELOPMENT_AUDIT_KEY not in repr(settings)  # a SecretStr: never printed
    strong = Settings(environment="production", audit_key="k3Y-" + uuid.uuid4().hex)
    assert strong.environment == "production"
