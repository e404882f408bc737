"""Test fixtures: every API test runs against SQLite and against PostgreSQL.

Each backend gets a scratch database migrated with Alembic (``upgrade head``), so tests never
share the development database and parallel runs never collide. PostgreSQL is required: when
it cannot be reached the PostgreSQL-backed tests fail (they are never skipped), because a run
that silently skips a backend proves nothing about it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

import app.models  # noqa: F401  (registers every table on Base.metadata)
from app.core.config import Settings, to_async_url
from app.core.db import Base, transaction
from app.main import create_app
from app.models.organization import DEFAULT_ORGANIZATION_ID
from app.plan_rules import service as rule_set_service
from app.ranges import service as range_service

ROOT = Path(__file__).resolve().parent.parent
# The audit chain's HMAC key for every Settings() of the test run (and the CLI subprocesses it
# starts): the "test" environment refuses the development default, as production does.
TEST_AUDIT_KEY = "test-only audit key 5b0f3c1e9a7d4f26b8e1c0a9d3f7e2b4"
os.environ.setdefault("MINERAL_AUDIT_KEY", TEST_AUDIT_KEY)
POSTGRES_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
BACKENDS = [b.strip() for b in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",")]

# Tables that outlive a test: the organizations and the API keys the session's fixtures issued
# (every test authenticates with them), and the audit trail, which the database refuses to
# delete from (append-only; tests read it through ids and time windows instead).
# alembic_version is not on the metadata at all.
KEPT_TABLES = frozenset({"organization", "api_key", "audit_event"})
# Wiped before each test like the data tables, but left out of `counts()`: a refusal stores
# one, and the "nothing stored" checks compare counts around refusals.
UNCOUNTED_TABLES = frozenset({"refused_input"})
# Tables holding data a test creates, children first (the reverse of the foreign-key order), so
# a new model is reset and counted without being listed here.
DATA_TABLES = tuple(
    table.name
    for table in reversed(Base.metadata.sorted_tables)
    if table.name not in KEPT_TABLES | UNCOUNTED_TABLES
)


T = TypeVar("T")


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


async def _admin(sql: str) -> None:
    engine = create_async_engine(to_async_url(POSTGRES_SERVER_URL), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def scratch_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """Creates (and at the end drops) one empty database per backend; returns its URL."""
    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        name = f"mineral_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        created.append(name)
        base = POSTGRES_SERVER_URL.rsplit("/", 1)[0]
        return f"{base}/{name}"

    yield make
    for name in created:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(scope="session")
def database_url(backend: str, scratch_database: Callable[[str], str]) -> str:
    url = scratch_database(backend)
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        environment="test",
        max_body_bytes=256 * 1024,  # the shipped plan rule set is ~70 KB as JSON
        # Tests revoke and expire keys between requests: always read the key from the database.
        api_key_cache_seconds=0,
        # One audit chain, so a test's appends link one after another and every warm hot
        # request is one statement from the first (with the default 64 each of a process's 8
        # lanes learns its tail on its first append). The striped trail, lanes and processes
        # sharing stripes have their own tests (tests/audit: chain_turns, shared_chain, lanes,
        # checkpoint), and the benchmarks and outage tests run the default.
        audit_chains=1,
    )


class RoleAuth(httpx.Auth):
    """Sends the API key of the role an operation needs, so tests read like a real caller's.

    Admin for range-set, plan-rule-set and code-map changes, API keys and the audit trail;
    clinician for re-interpretation, treatment plans, patient context, sleep scores and reading
    plan rule sets; integration (which posts and reads patients and panels) for the rest. Pass
    ``auth=None`` to send no credentials, or ``headers={"X-API-Key": ...}`` to choose a key
    explicitly.
    """

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    @staticmethod
    def role_for(method: str, path: str) -> str:
        if path.startswith(("/api/v1/api-keys", "/api/v1/audit-events")):
            return "admin"
        if (
            path.startswith(("/api/v1/range-sets", "/api/v1/code-maps", "/api/v1/plan-rule-sets"))
            and method != "GET"
        ):
            return "admin"
        if path.startswith(("/api/v1/plans", "/api/v1/plan-rule-sets", "/fhir/R4/CarePlan")) or (
            path.startswith("/api/v1/patients/") and path.endswith("/plans")
        ):
            return "clinician"
        if path.startswith("/api/v1/patients/") and any(
            part in path for part in ("/context", "/sleep-assessments", "/timeline", "/series")
        ):
            return "clinician"
        if path.endswith("/reinterpret"):
            return "clinician"
        return "integration"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "x-api-key" not in request.headers and "authorization" not in request.headers:
            request.headers["X-API-Key"] = self.keys[
                self.role_for(request.method, request.url.path)
            ]
        yield request


DEFAULT_ORGANIZATION = "default"
OTHER_ORGANIZATION = "other-clinic"


@pytest.fixture(scope="session")
def api_keys(settings: Settings) -> dict[str, dict[str, str]]:
    """One key per role in the default organization and in a second one: {org: {role: key}}."""
    from app.auth.cli import create_api_key_command

    return {
        org: {
            role: create_api_key_command(settings, org=org, role=role, name=f"test {role}")
            .splitlines()[-1]
            .strip()
            for role in ("integration", "clinician", "admin")
        }
        for org in (DEFAULT_ORGANIZATION, OTHER_ORGANIZATION)
    }


@pytest.fixture(scope="session")
def session_client(settings: Settings, api_keys: dict[str, dict[str, str]]) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.auth = RoleAuth(api_keys[DEFAULT_ORGANIZATION])
        yield client


class Database:
    """Direct access to the app's database from tests (counts, service calls)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.app: Any = client.app
        self._tables: tuple[str, ...] | None = None

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        portal = self.client.portal
        assert portal is not None
        return portal.call(fn, *args)

    def in_session(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async def go() -> T:
            async with transaction(self.app.state.sessionmaker) as session:
                return await fn(session)

        return self.run(go)

    def organization_id(self, name: str) -> uuid.UUID:
        """The id of the organization named `name` (the session's fixtures made it)."""

        async def go(session: Any) -> uuid.UUID:
            found = await session.scalar(
                text("SELECT id FROM organization WHERE name = :name"), {"name": name}
            )
            assert found is not None, f"no organization named {name}"
            return uuid.UUID(str(found))

        return self.in_session(go)

    def count(self, table: str) -> int:
        async def go(session: Any) -> int:
            return int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar())

        return self.in_session(go)

    def tables(self) -> tuple[str, ...]:
        """DATA_TABLES that the migrated database has. A model whose migration is not written
        yet is tests/test_migrations.py's to report (`alembic check`), not every test's."""
        if self._tables is None:

            async def go(session: Any) -> set[str]:
                connection = await session.connection()
                return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))

            present = self.in_session(go)
            self._tables = tuple(table for table in DATA_TABLES if table in present)
        return self._tables

    def counts(self) -> dict[str, int]:
        return {table: self.count(table) for table in self.tables()}

    def reset(self) -> None:
        tables = self.tables()

        async def go(session: Any) -> None:
            # Plans name the plan they replace: unlink them so any delete order works.
            await session.execute(text("UPDATE treatment_plan SET replaces_plan_id = NULL"))
            for table in (*UNCOUNTED_TABLES, *tables):
                await session.execute(text(f"DELETE FROM {table}"))
            await range_service.ensure_default(session, organization_id=DEFAULT_ORGANIZATION_ID)
            await rule_set_service.ensure_default(session, organization_id=DEFAULT_ORGANIZATION_ID)
            other = await session.scalar(
                text("SELECT id FROM organization WHERE name = :name"),
                {"name": OTHER_ORGANIZATION},
            )
            if other is not None:
                await range_service.ensure_default(session, organization_id=uuid.UUID(str(other)))
                await rule_set_service.ensure_default(
                    session, organization_id=uuid.UUID(str(other))
                )

        self.in_session(go)


@pytest.fixture
def db(session_client: TestClient) -> Database:
    database = Database(session_client)
    database.reset()
    return database


@pytest.fixture
def client(session_client: TestClient, db: Database) -> TestClient:
    """An HTTP client for the app on a freshly reset database (default ranges active)."""
    return session_client
