"""Idempotency-Key semantics, one transaction at a time."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import utcnow
from app.idempotency.cli import purge_idempotency_command
from app.idempotency.errors import (
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
)
from app.idempotency.service import StoredResponse, fingerprint, purge_expired
from tests.conftest import Database
from tests.idempotency.builders import (
    Producer,
    idempotent,
    new_principal,
    records_of,
    store_record,
)

BODY = b'{"accession": "ACC-1"}'


def test_the_first_request_produces_and_stores_its_response(db: Database) -> None:
    principal_id, produce = new_principal(), Producer()

    response, replayed = db.in_session(
        idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=produce)
    )

    assert (produce.calls, replayed) == (1, False)
    (record,) = db.in_session(lambda session: records_of(session, principal_id))
    assert record["status"] == "completed"
    assert record["fingerprint"] == fingerprint("POST", "/api/v1/panels", BODY)
    assert record["response_status"] == response.status == 201
    assert record["response_headers"] == response.headers
    assert record["response_body"] == response.body
    assert record["expires_at"] - record["created_at"] == timedelta(hours=24)


def test_a_retry_with_the_same_body_replays_the_stored_bytes(db: Database) -> None:
    principal_id, produce = new_principal(), Producer()
    call = idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=produce)

    first, first_replayed = db.in_session(call)
    again, replayed = db.in_session(call)

    assert produce.calls == 1
    assert (first_replayed, replayed) == (False, True)
    assert again == first
    assert again.body == first.body


def test_a_key_reused_in_another_organization_is_refused_not_replayed(db: Database) -> None:
    """An OIDC user can act for two organizations under one principal id: the response stored
    for one organization must never be replayed in the other (it would disclose its data)."""
    principal_id, produce = "oidc:https://idp.example|alice", Producer()
    first_org, second_org = uuid.uuid4(), uuid.uuid4()
    db.in_session(
        idempotent(
            key="k-1",
            principal_id=principal_id,
            body=BODY,
            produce=produce,
            organization_id=first_org,
        )
    )

    with pytest.raises(IdempotencyKeyReusedError):
        db.in_session(
            idempotent(
                key="k-1",
                principal_id=principal_id,
                body=BODY,
                produce=produce,
                organization_id=second_org,
            )
        )
    assert produce.calls == 1


def test_the_same_key_with_a_different_body_or_path_is_refused(db: Database) -> None:
    principal_id, produce = new_principal(), Producer()
    db.in_session(idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=produce))
    stored = db.in_session(lambda session: records_of(session, principal_id))

    for body, path in ((b'{"accession": "ACC-2"}', "/api/v1/panels"), (BODY, "/api/v1/patients")):
        with pytest.raises(IdempotencyKeyReusedError) as refused:
            db.in_session(
                idempotent(
                    key="k-1", principal_id=principal_id, body=body, path=path, produce=produce
                )
            )
        assert refused.value.status == 422
        assert refused.value.type_slug == "idempotency-key-reused"

    assert produce.calls == 1
    assert db.in_session(lambda session: records_of(session, principal_id)) == stored


def test_without_a_key_every_request_produces_and_nothing_is_stored(db: Database) -> None:
    principal_id, produce = new_principal(), Producer()
    call = idempotent(key=None, principal_id=principal_id, body=BODY, produce=produce)

    first, first_replayed = db.in_session(call)
    second, second_replayed = db.in_session(call)

    assert produce.calls == 2
    assert first != second
    assert not first_replayed
    assert not second_replayed
    assert db.in_session(lambda session: records_of(session, principal_id)) == []


def test_keys_are_scoped_per_principal(db: Database) -> None:
    produce = Producer()

    for principal_id in (new_principal(), new_principal()):
        _, replayed = db.in_session(
            idempotent(key="shared", principal_id=principal_id, body=BODY, produce=produce)
        )
        assert not replayed

    assert produce.calls == 2


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "caf\u00e9", "tab\there", "line\nbreak", "\x7f"], ids=repr
)
def test_a_malformed_key_is_a_bad_request(db: Database, key: str) -> None:
    produce = Producer()

    with pytest.raises(InvalidIdempotencyKeyError) as refused:
        db.in_session(idempotent(key=key, principal_id=new_principal(), body=BODY, produce=produce))

    assert refused.value.status == 400
    assert produce.calls == 0


def test_the_longest_and_oddest_printable_keys_are_accepted(db: Database) -> None:
    for key in ("x" * 255, ' !"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'):
        _, replayed = db.in_session(
            idempotent(key=key, principal_id=new_principal(), body=BODY, produce=Producer())
        )
        assert not replayed


def test_a_response_that_is_not_2xx_is_not_stored(db: Database) -> None:
    principal_id = new_principal()
    refused, succeeds = Producer(status=409), Producer()

    first, _ = db.in_session(
        idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=refused)
    )
    assert first.status == 409
    assert db.in_session(lambda session: records_of(session, principal_id)) == []

    second, replayed = db.in_session(
        idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=succeeds)
    )
    assert (second.status, replayed, succeeds.calls) == (201, False, 1)


def test_a_failed_first_attempt_leaves_the_key_free(db: Database) -> None:
    principal_id = new_principal()

    async def fail() -> StoredResponse:
        raise RuntimeError("the panel could not be stored")

    with pytest.raises(RuntimeError):
        db.in_session(idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=fail))
    assert db.in_session(lambda session: records_of(session, principal_id)) == []

    produce = Producer()
    _, replayed = db.in_session(
        idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=produce)
    )
    assert (produce.calls, replayed) == (1, False)


def test_an_expired_record_is_replaced_by_the_new_request(db: Database) -> None:
    principal_id, produce = new_principal(), Producer()
    db.in_session(
        lambda session: store_record(
            session,
            principal_id=principal_id,
            key="k-1",
            body=b"an older, different request",
            expires_at=utcnow() - timedelta(seconds=1),
        )
    )

    response, replayed = db.in_session(
        idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=produce)
    )

    assert (produce.calls, replayed) == (1, False)
    (record,) = db.in_session(lambda session: records_of(session, principal_id))
    assert record["fingerprint"] == fingerprint("POST", "/api/v1/panels", BODY)
    assert record["response_body"] == response.body
    assert record["expires_at"] > utcnow()


def test_a_record_within_retention_is_replayed_not_replaced(db: Database) -> None:
    principal_id, produce = new_principal(), Producer()
    db.in_session(
        lambda session: store_record(
            session,
            principal_id=principal_id,
            key="k-1",
            body=BODY,
            expires_at=utcnow() + timedelta(minutes=1),
        )
    )

    response, replayed = db.in_session(
        idempotent(key="k-1", principal_id=principal_id, body=BODY, produce=produce)
    )

    assert (produce.calls, replayed, response.body) == (0, True, b'{"old": true}')


def test_purge_deletes_only_expired_records(db: Database) -> None:
    principal_id = new_principal()
    now = utcnow()

    async def setup(session: AsyncSession) -> None:
        for key, expires_at in (
            ("expired-1", now - timedelta(hours=1)),
            ("expired-2", now - timedelta(seconds=1)),
            ("live", now + timedelta(seconds=1)),
        ):
            await store_record(
                session, principal_id=principal_id, key=key, body=BODY, expires_at=expires_at
            )

    db.in_session(setup)

    purged = db.in_session(lambda session: purge_expired(session, now=now))

    assert purged >= 2
    remaining = db.in_session(lambda session: records_of(session, principal_id))
    assert [record["key"] for record in remaining] == ["live"]


def test_the_purge_command_reports_what_it_deleted(db: Database, settings: Settings) -> None:
    principal_id = new_principal()
    db.in_session(
        lambda session: store_record(
            session,
            principal_id=principal_id,
            key=str(uuid.uuid4()),
            body=BODY,
            expires_at=utcnow() - timedelta(minutes=5),
        )
    )

    message = purge_idempotency_command(settings)

    assert message.startswith("purged ")
    assert int(message.split()[1]) >= 1
    assert db.in_session(lambda session: records_of(session, principal_id)) == []
