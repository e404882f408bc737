"""canonical_bytes and event_hash write exactly the bytes (and so the hashes) that every
stored audit row was sealed with: the json.dumps(sort_keys=True, ensure_ascii=True) document
of chain versions 1 and 2, kept here as the reference. Any difference would make every
existing chain fail `audit-verify`."""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    canonical_bytes,
    event_hash,
    legacy_event_hash,
    row_key,
)

KEY = row_key("a test secret for the canonical bytes " + "x" * 16)


def _reference_value(name: str, value: Any) -> str | int | None:
    """The canonical value as the first keyed chain computed it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"audit field {name!r} is a naive datetime")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool):
        raise TypeError(f"audit field {name!r} has an unexpected boolean")
    if isinstance(value, int | str):
        return value
    raise TypeError(f"audit field {name!r} has an unsupported type {type(value).__name__}")


def _reference_bytes(values: dict[str, Any], prev_hash: str, version: int = 2) -> bytes:
    document: dict[str, Any] = {
        name: _reference_value(name, values[name]) for name in HASHED_FIELDS
    }
    document["prev_hash"] = prev_hash
    document["v"] = version
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
        "ascii"
    )


class _Status(enum.IntEnum):
    OK = 200
    NOT_FOUND = 404


class _Outcome(enum.StrEnum):
    SUCCESS = "success"
    DENIED = "denied"


class _SubUUID(uuid.UUID):
    """As asyncpg hands ids back: a UUID subclass."""


_TEXT = st.text(
    alphabet=st.characters(
        codec=None, exclude_categories=()
    ),  # any code point, lone surrogates too
    max_size=40,
)
_TRICKY = st.sampled_from(
    ['"', "\\", '\\"', "\x00", "\x1f", "\x7f", "\u2028", "é", "日本", "😀", "\ud800", "/", "</"]
)
_STRINGS = st.one_of(_TEXT, _TRICKY, st.lists(_TRICKY, max_size=6).map("".join))
_IDS = st.one_of(
    st.uuids(), st.uuids().map(lambda value: _SubUUID(int=value.int)), st.uuids().map(str)
)
_ZONES = st.one_of(
    st.just(UTC),
    st.integers(min_value=-23 * 60, max_value=23 * 60).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)
_TIMES = st.builds(
    lambda moment, micros, zone: moment.replace(microsecond=micros, tzinfo=UTC).astimezone(zone),
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.one_of(st.just(0), st.integers(min_value=0, max_value=999_999)),
    _ZONES,
)
_INTS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from(list(_Status)))
_ANY = st.one_of(st.none(), _STRINGS, _INTS, _IDS, _TIMES, st.sampled_from(list(_Outcome)))


@st.composite
def _rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {name: draw(_ANY) for name in HASHED_FIELDS}
    # The usual shapes too, so most rows look like real ones.
    if draw(st.booleans()):
        row.update(
            id=draw(_IDS),
            occurred_at=draw(_TIMES),
            organization_id=draw(st.one_of(st.none(), _IDS)),
            patient_id=draw(st.one_of(st.none(), _IDS)),
            status_code=draw(st.one_of(st.none(), _INTS)),
        )
    return row


_PREV = st.one_of(
    st.just(GENESIS_HASH), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
)


@settings(max_examples=1500, deadline=None)
@given(row=_rows(), prev=_PREV, version=st.sampled_from([1, 2]))
def test_canonical_bytes_are_the_json_dumps_document_byte_for_byte(
    row: dict[str, Any], prev: str, version: int
) -> None:
    assert canonical_bytes(row, prev, version=version) == _reference_bytes(row, prev, version)


@settings(max_examples=300, deadline=None)
@given(row=_rows(), prev=_PREV)
def test_row_hashes_are_the_hmac_and_sha256_of_those_bytes(row: dict[str, Any], prev: str) -> None:
    expected = hmac.new(KEY, _reference_bytes(row, prev), hashlib.sha256).hexdigest()
    assert event_hash(row, prev, KEY) == expected
    legacy = hashlib.sha256(_reference_bytes(row, prev, version=1)).hexdigest()
    assert legacy_event_hash(row, prev) == legacy


def test_a_typical_row_is_written_as_before() -> None:
    row = dict.fromkeys(HASHED_FIELDS)
    row.update(
        id=uuid.UUID("abcdef00-0000-4000-8000-000000000001"),
        occurred_at=datetime(2026, 11, 25, 13, 0, tzinfo=UTC),
        action="read",
        resource_type="panel",
        outcome="success",
        status_code=200,
        path='/api/v1/panels/"x"\\ü',
    )
    assert canonical_bytes(row, GENESIS_HASH) == _reference_bytes(row, GENESIS_HASH)
    assert b'"occurred_at":"2026-11-25T13:00:00.000000Z"' in canonical_bytes(row, GENESIS_HASH)
    assert b'"path":"/api/v1/panels/\\"x\\"\\\\\\u00fc"' in canonical_bytes(row, GENESIS_HASH)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("occurred_at", datetime(2026, 1, 1), ValueError),  # naive
        ("status_code", True, TypeError),
        ("status_code", 1.5, TypeError),
        ("resource_id", b"bytes", TypeError),
    ],
)
def test_values_no_audit_column_holds_are_refused_as_before(
    name: str, value: Any, error: type[Exception]
) -> None:
    row: dict[str, Any] = dict.fromkeys(HASHED_FIELDS)
    row[name] = value
    with pytest.raises(error):
        _reference_bytes(row, GENESIS_HASH)
    with pytest.raises(error):
        canonical_bytes(row, GENESIS_HASH)
