"""The canonical serialization behind the hash chain, without a database."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from app.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    ChainHead,
    Checkpoint,
    CheckpointError,
    CheckpointTally,
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


SECRET = "checkpoint unit-test secret 0123456789abcdef"
HEADS = (
    ChainHead(chain=0, last_seq=9, last_hash="a" * 64, count=5),
    ChainHead(chain=3, last_seq=7, last_hash="b" * 64, count=4),
)


def _signed() -> Checkpoint:
    return Checkpoint.signed(heads=HEADS, created_at="t", key=checkpoint_key(SECRET))


def test_a_checkpoint_signs_every_chain_head_and_reads_back_equal() -> None:
    checkpoint = _signed()
    document = json.loads(json.dumps(checkpoint.as_dict()))

    assert (checkpoint.version, checkpoint.last_seq, checkpoint.count) == (2, 9, 9)
    assert checkpoint.last_hash == "a" * 64
    assert Checkpoint.load(document, checkpoint_key(SECRET)) == checkpoint
    edited = {**document, "chains": [{**document["chains"][1], "count": 3}, document["chains"][0]]}
    for tampered in (
        {**document, "chains": document["chains"][:1]},  # a chain left out
        edited,
        {**document, "version": True},
    ):
        with pytest.raises(CheckpointError):
            Checkpoint.load(tampered, checkpoint_key(SECRET))
    with pytest.raises(CheckpointError, match="signature"):
        Checkpoint.load(document, checkpoint_key("another secret " + "y" * 32))


def test_an_empty_trail_has_a_checkpoint_of_no_chains() -> None:
    empty = Checkpoint.signed(heads=[], created_at="t", key=checkpoint_key(SECRET))

    assert (empty.last_seq, empty.count, empty.chains) == (0, 0, ())
    assert Checkpoint.load(empty.as_dict(), checkpoint_key(SECRET)) == empty


def test_a_checkpoint_whose_chains_do_not_add_up_is_refused_even_when_signed() -> None:
    key = checkpoint_key(SECRET)
    fields = {**_signed().as_dict(), "count": 10}
    del fields["signature"]

    with pytest.raises(CheckpointError, match="add up"):
        Checkpoint.load({**fields, "signature": sign_checkpoint(fields, key)}, key)


def test_a_version_1_checkpoint_still_loads_with_one_head() -> None:
    key = checkpoint_key(SECRET)
    head = {"version": 1, "last_seq": 7, "last_hash": "a" * 64, "count": 5, "created_at": "t"}
    checkpoint = Checkpoint.load({**head, "signature": sign_checkpoint(head, key)}, key)

    assert (checkpoint.version, checkpoint.chains) == (1, ())
    assert checkpoint.as_dict() == {**head, "signature": checkpoint.signature}


def _walk(checkpoint: Checkpoint, rows: list[tuple[int, int, str]]) -> list[object]:
    """The problems a walk over (seq, chain, hash) rows finds, then what it found missing."""
    tally = CheckpointTally(checkpoint)
    problems = [tally.row(seq, chain, digest) for seq, chain, digest in rows]
    return [*[problem for problem in problems if problem is not None], tally.missing()]


# The trail HEADS describes (chain 0: 5 rows up to seq 9; chain 3: 4 up to seq 7), then two
# rows written after the checkpoint.
TRAIL = sorted(
    [(seq, 0, "x") for seq in (1, 2, 4, 8)]
    + [(9, 0, "a" * 64)]
    + [(seq, 3, "y") for seq in (3, 5, 6)]
    + [(7, 3, "b" * 64), (10, 5, "z"), (11, 3, "w")]
)


def test_the_tally_finds_every_recorded_chain_whole() -> None:
    assert _walk(_signed(), TRAIL) == [None]


def test_the_tally_names_a_chain_cut_short() -> None:
    truncated = [row for row in TRAIL if not (row[1] == 3 and row[0] >= 7)]

    assert _walk(_signed(), truncated) == [
        (
            3,
            "chain 3 is missing rows: the checkpoint of t recorded 4 rows through seq 7, "
            "the chain has 3 (its newest rows were deleted?)",
        )
    ]


def test_the_tally_names_a_chain_whose_recorded_head_is_another_row() -> None:
    without_head = [row for row in TRAIL if row[0] != 7]

    problem, missing = _walk(_signed(), without_head)

    assert isinstance(problem, str)
    assert problem.startswith("chain 3: row 11 is not the row the checkpoint recorded")
    assert missing is None


def test_the_tally_names_a_row_moved_under_the_checkpoint_from_another_chain() -> None:
    moved = [(8, 5, "z") if row[0] == 8 else row for row in TRAIL]

    problem, missing = _walk(_signed(), moved)

    assert isinstance(problem, str)
    assert problem.startswith("chain 5: row 8 is older than the checkpoint")
    assert missing == (
        0,
        "chain 0 is missing rows: the checkpoint of t recorded 5 rows through seq 9, "
        "the chain has 4 (its newest rows were deleted?)",
    )


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
