"""API keys and organizations in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import keys, service
from app.auth.oidc import OidcIdentity
from app.auth.principal import ROLE_SCOPES, Principal, Rejection, Role
from app.core.errors import NotFoundError, UnprocessableError
from app.models.api_key import ApiKey
from app.models.organization import Organization
from tests.conftest import Database

T0 = datetime.fromisoformat("2026-11-26T09:00:00+00:00")


def org_name() -> str:
    return f"clinic-{uuid.uuid4().hex[:10]}"


def make_organization(db: Database, *, name: str | None = None) -> Organization:
    async def go(session: AsyncSession) -> Organization:
        return await service.get_or_create_organization(session, name=name or org_name())

    return db.in_session(go)


def make_api_key(
    db: Database,
    *,
    organization_id: uuid.UUID,
    role: Role = Role.INTEGRATION,
    now: datetime = T0,
    **changes: Any,
) -> tuple[ApiKey, str]:
    async def go(session: AsyncSession) -> tuple[ApiKey, str]:
        return await service.create_api_key(
            session,
            organization_id=organization_id,
            role=role,
            name=changes.pop("name", "LIS interface"),
            now=now,
            **changes,
        )

    return db.in_session(go)


def authenticate(
    db: Database, token: str, *, now: datetime, touch_interval: float = 60
) -> Principal | None:
    async def go(session: AsyncSession) -> Principal | None:
        return await service.authenticate_api_key(
            session, token=token, now=now, touch_interval=touch_interval
        )

    return db.in_session(go)


def load_key(db: Database, key_id: uuid.UUID) -> ApiKey:
    async def go(session: AsyncSession) -> ApiKey:
        api_key = await session.get(ApiKey, key_id)
        assert api_key is not None
        return api_key

    return db.in_session(go)


def revoke(db: Database, *, organization_id: uuid.UUID, key_id: uuid.UUID, now: datetime) -> ApiKey:
    async def go(session: AsyncSession) -> ApiKey:
        return await service.revoke_api_key(
            session, organization_id=organization_id, key_id=key_id, now=now
        )

    return db.in_session(go)


def test_get_or_create_organization_returns_the_existing_one(db: Database) -> None:
    name = org_name()
    first = make_organization(db, name=name)
    again = make_organization(db, name=name)

    assert again.id == first.id
    assert make_organization(db).id != first.id


def test_created_key_authenticates_as_its_organization_and_role(db: Database) -> None:
    organization = make_organization(db)
    api_key, full_key = make_api_key(db, organization_id=organization.id, role=Role.CLINICIAN)

    principal = authenticate(db, full_key, now=T0 + timedelta(seconds=1))

    assert principal == Principal(
        id=f"key:{api_key.id}",
        organization_id=organization.id,
        role=Role.CLINICIAN,
        kind="api_key",
        scopes=ROLE_SCOPES[Role.CLINICIAN],
        display=f"LIS interface (mlk_{api_key.prefix})",
        display_name="LIS interface",
    )


def test_only_the_hash_of_the_secret_is_stored(db: Database) -> None:
    organization = make_organization(db)
    api_key, full_key = make_api_key(db, organization_id=organization.id)
    parsed = keys.parse_key(full_key)
    assert parsed is not None
    prefix, secret = parsed

    stored = load_key(db, api_key.id)

    assert stored.prefix == prefix
    assert stored.secret_hash == keys.hash_secret(secret)
    assert secret not in stored.secret_hash


def test_wrong_secret_unknown_prefix_and_junk_do_not_authenticate(db: Database) -> None:
    organization = make_organization(db)
    _, full_key = make_api_key(db, organization_id=organization.id)
    other_full_key, _, _ = keys.generate_key()
    later = T0 + timedelta(seconds=1)

    assert (
        authenticate(db, full_key[:-1] + ("A" if full_key[-1] != "A" else "B"), now=later) is None
    )
    assert authenticate(db, other_full_key, now=later) is None
    assert authenticate(db, "mlk_nonsense", now=later) is None


def test_revoked_key_does_not_authenticate(db: Database) -> None:
    organization = make_organization(db)
    api_key, full_key = make_api_key(db, organization_id=organization.id)

    revoke(db, organization_id=organization.id, key_id=api_key.id, now=T0 + timedelta(hours=1))

    assert authenticate(db, full_key, now=T0 + timedelta(hours=2)) is None


def test_revoking_twice_keeps_the_first_revocation_time(db: Database) -> None:
    organization = make_organization(db)
    api_key, _ = make_api_key(db, organization_id=organization.id)
    first_time = T0 + timedelta(hours=1)

    first = revoke(db, organization_id=organization.id, key_id=api_key.id, now=first_time)
    again = revoke(db, organization_id=organization.id, key_id=api_key.id, now=T0 + timedelta(2))

    assert first.revoked_at == first_time
    assert again.revoked_at == first_time
    assert load_key(db, api_key.id).revoked_at == first_time


def test_another_organizations_key_cannot_be_revoked(db: Database) -> None:
    own = make_organization(db)
    other = make_organization(db)
    api_key, full_key = make_api_key(db, organization_id=other.id)

    with pytest.raises(NotFoundError):
        revoke(db, organization_id=own.id, key_id=api_key.id, now=T0 + timedelta(hours=1))
    assert authenticate(db, full_key, now=T0 + timedelta(hours=2)) is not None


def test_key_stops_working_when_it_expires(db: Database) -> None:
    organization = make_organization(db)
    expires_at = T0 + timedelta(days=30)
    _, full_key = make_api_key(db, organization_id=organization.id, expires_at=expires_at)

    assert authenticate(db, full_key, now=expires_at - timedelta(seconds=1)) is not None
    assert authenticate(db, full_key, now=expires_at) is None


def test_key_cannot_be_created_already_expired(db: Database) -> None:
    organization = make_organization(db)
    with pytest.raises(UnprocessableError):
        make_api_key(db, organization_id=organization.id, expires_at=T0 - timedelta(seconds=1))


def test_last_used_time_is_written_at_most_once_per_interval(db: Database) -> None:
    organization = make_organization(db)
    api_key, full_key = make_api_key(db, organization_id=organization.id)
    first_use = T0 + timedelta(minutes=5)

    authenticate(db, full_key, now=first_use, touch_interval=60)
    assert load_key(db, api_key.id).last_used_at == first_use

    authenticate(db, full_key, now=first_use + timedelta(seconds=59), touch_interval=60)
    assert load_key(db, api_key.id).last_used_at == first_use

    later = first_use + timedelta(seconds=61)
    authenticate(db, full_key, now=later, touch_interval=60)
    assert load_key(db, api_key.id).last_used_at == later


def test_conditional_touch_writes_nothing_when_recent(db: Database) -> None:
    organization = make_organization(db)
    api_key, _ = make_api_key(db, organization_id=organization.id)

    async def touch(session: AsyncSession, now: datetime) -> bool:
        return await service.touch_api_key(session, key_id=api_key.id, now=now, touch_interval=60)

    assert db.in_session(lambda s: touch(s, T0 + timedelta(minutes=1))) is True
    assert db.in_session(lambda s: touch(s, T0 + timedelta(minutes=1, seconds=30))) is False


def test_keys_are_listed_newest_first_in_pages(db: Database) -> None:
    organization = make_organization(db)
    created = [
        make_api_key(db, organization_id=organization.id, name=f"key {i}", now=T0 + timedelta(i))[0]
        for i in range(3)
    ]
    make_api_key(db, organization_id=make_organization(db).id)  # another organization's

    async def page(
        session: AsyncSession, after: tuple[datetime, uuid.UUID] | None
    ) -> list[uuid.UUID]:
        listed = await service.list_api_keys(
            session, organization_id=organization.id, limit=2, after=after
        )
        return [api_key.id for api_key in listed]

    first = db.in_session(lambda s: page(s, None))
    second = db.in_session(lambda s: page(s, (created[1].created_at, created[1].id)))

    assert first == [created[2].id, created[1].id]
    assert second == [created[0].id]


def test_operator_revokes_by_id_prefix_or_full_key(db: Database) -> None:
    organization = make_organization(db)
    by_id, _ = make_api_key(db, organization_id=organization.id)
    by_prefix, _ = make_api_key(db, organization_id=organization.id)
    by_full_key, full_key = make_api_key(db, organization_id=organization.id)

    for reference in (str(by_id.id), f"mlk_{by_prefix.prefix}", full_key):

        async def go(session: AsyncSession, reference: str = reference) -> ApiKey:
            return await service.revoke_api_key_by_reference(session, reference=reference)

        db.in_session(go)

    for api_key in (by_id, by_prefix, by_full_key):
        assert load_key(db, api_key.id).revoked_at is not None


def test_oidc_identity_resolves_to_an_existing_organization_only(db: Database) -> None:
    organization = make_organization(db)
    identity = OidcIdentity(
        issuer="https://idp.example.test",
        subject="user-1",
        organization_name=organization.name,
        role=Role.CLINICIAN,
        display="dr.who",
    )

    async def resolve(session: AsyncSession, identity: OidcIdentity) -> Principal | Rejection:
        return await service.principal_for_oidc(session, identity=identity)

    principal = db.in_session(lambda s: resolve(s, identity))
    unknown = dataclasses.replace(identity, organization_name=org_name())
    missing = db.in_session(lambda s: resolve(s, unknown))

    assert isinstance(principal, Principal)
    assert principal.id == "oidc:https://idp.example.test|user-1"
    assert principal.organization_id == organization.id
    assert principal.kind == "oidc"
    assert isinstance(missing, Rejection)


def test_a_key_records_who_revoked_it_and_the_first_revoker_stays(db: Database) -> None:
    organization = make_organization(db)
    api_key, _ = make_api_key(db, organization_id=organization.id)

    async def revoke_as(session: AsyncSession, who: str) -> ApiKey:
        return await service.revoke_api_key(
            session, organization_id=organization.id, key_id=api_key.id, revoked_by=who
        )

    db.in_session(lambda session: revoke_as(session, "key:first-admin"))
    db.in_session(lambda session: revoke_as(session, "key:second-admin"))

    assert load_key(db, api_key.id).revoked_by == "key:first-admin"


def test_the_operator_command_line_is_named_as_the_revoker(db: Database) -> None:
    organization = make_organization(db)
    api_key, _ = make_api_key(db, organization_id=organization.id)

    db.in_session(
        lambda session: service.revoke_api_key_by_reference(session, reference=str(api_key.id))
    )

    assert load_key(db, api_key.id).revoked_by == "cli"
