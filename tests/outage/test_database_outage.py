"""A database outage answers 503 + Retry-After on every route family, and recovery is clean.

The app runs as a real server process (uvicorn, `python -m app serve`) on a PostgreSQL server
the test owns (tests/outage/conftest.py). Traffic flows on the native JSON API (a write and a
read), the FHIR facade and the HL7 HTTP route while the database is stopped and started again:

* within 2 s of the stop every route family answers 503 with `Retry-After` in its own
  language (problem+json, an OperationOutcome, an HL7 `AR` ACK), and no request hangs;
* within 10 s of the start every family succeeds again, with no 500 at any point (pooled
  connections that died with the server are checked before use, never handed to a request);
* every write that got 503 is retried unchanged (the same Idempotency-Key, Bundle or MSH-10)
  and stored exactly once, and every stored panel is complete: a write cut off mid-commit is
  safe to retry.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth.cli import create_api_key_command
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker, transaction
from app.models.organization import DEFAULT_ORGANIZATION_ID
from app.ranges import service as range_service
from tests.conftest import ROOT, alembic_config
from tests.interop.fhir.builders import MINERAL_PANEL, panel_bundle
from tests.interop.hl7.messages import acks, magnesium_mmol, oru, segment
from tests.outage.conftest import PrivateServer, free_port

pytestmark = pytest.mark.postgres

HL7_HEADERS = {"Content-Type": "x-application/hl7-v2+er7"}
FHIR_HEADERS = {"Content-Type": "application/fhir+json"}
FAMILIES = ("native-write", "native-read", "fhir", "hl7")


@dataclass
class Sent:
    family: str
    method: str
    path: str
    body: dict[str, Any] | str | None
    headers: dict[str, str]
    accession: str | None
    sent_at: float = 0.0
    answered_at: float = 0.0
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def succeeded(self) -> bool:
        if self.family == "hl7":
            return self.status == 200 and segment(acks(self.text)[0], "MSA")[1] == "AA"
        return self.status == {"native-write": 201}.get(self.family, 200)


@dataclass
class App:
    base_url: str
    key: str
    patient_id: str
    process: subprocess.Popen[bytes]
    log: Path


async def _ensure_default_ranges(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            await range_service.ensure_default(session, organization_id=DEFAULT_ORGANIZATION_ID)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def app_server(
    private_postgres: PrivateServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    url = private_postgres.url
    command.upgrade(alembic_config(url), "head")
    settings = Settings(database_url=url, environment="test")
    asyncio.run(_ensure_default_ranges(settings))
    key = create_api_key_command(settings, org="default", role="integration", name="outage")
    key = key.splitlines()[-1].strip()
    port = free_port()
    log = tmp_path_factory.mktemp("outage") / "server.log"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "MINERAL_ENVIRONMENT": "test",
        "MINERAL_LOG_LEVEL": "WARNING",
        "MINERAL_DATABASE_POOL_SIZE": "4",
        "MINERAL_DATABASE_MAX_OVERFLOW": "4",
    }
    env.pop("MINERAL_DATABASE_URL", None)
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--no-migrate", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        patient = httpx.post(
            f"{base_url}/api/v1/patients",
            json={
                "identifiers": [{"system": "urn:test:mrn", "value": "OUTAGE-1"}],
                "sex": "female",
            },
            headers={"X-API-Key": key},
            timeout=10,
        )
        assert patient.status_code == 201, patient.text
        yield App(base_url, key, patient.json()["id"], process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _request(family: str, app: App) -> Sent:
    accession = f"OUT-{family}-{uuid.uuid4().hex[:10]}"
    if family == "native-write":
        body = {
            "patient": {"id": app.patient_id},
            "source": "outage-lab",
            "accession": accession,
            "collected_at": "2026-11-20T08:00:00Z",
            "results": [
                {"analyte": "magnesium", "value": "0.80", "unit": "mmol/L"},
                {"analyte": "zinc", "value": "80", "unit": "ug/dL"},
            ],
        }
        headers = {"Idempotency-Key": f"outage-{uuid.uuid4()}"}
        return Sent(family, "POST", "/api/v1/panels", body, headers, accession)
    if family == "native-read":
        return Sent(family, "GET", f"/api/v1/patients/{app.patient_id}", None, {}, None)
    if family == "fhir":
        bundle = panel_bundle(mrn="OUTAGE-FHIR-1", accession=accession)
        return Sent(family, "POST", "/fhir/R4", bundle, FHIR_HEADERS, accession)
    message = oru(
        [magnesium_mmol("0.80")],
        control_id=f"OUT-{uuid.uuid4().hex[:12]}",
        accession=accession,
        mrn="OUTAGE-HL7-1",
    )
    return Sent(family, "POST", "/api/v1/hl7/oru", message, HL7_HEADERS, accession)


async def _send(http: httpx.AsyncClient, app: App, sent: Sent) -> Sent:
    sent.sent_at = time.monotonic()
    response = await http.request(
        sent.method,
        app.base_url + sent.path,
        json=sent.body if isinstance(sent.body, dict) else None,
        content=sent.body if isinstance(sent.body, str) else None,
        headers={"X-API-Key": app.key, **sent.headers},
    )
    sent.answered_at = time.monotonic()
    sent.status = response.status_code
    sent.response_headers = dict(response.headers)
    sent.text = response.text
    return sent


async def _traffic(app: App, server: PrivateServer) -> tuple[list[Sent], float, float]:
    """Traffic on every family; the database stops after 1.5 s and starts 3 s later; traffic
    ends once every family has succeeded again (or 12 s after the start)."""
    sent: list[Sent] = []
    done = asyncio.Event()

    async def worker(http: httpx.AsyncClient, family: str) -> None:
        while not done.is_set():
            sent.append(await _send(http, app, _request(family, app)))
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(timeout=30) as http:
        workers = [asyncio.create_task(worker(http, family)) for family in FAMILIES]
        await asyncio.sleep(1.5)
        await asyncio.to_thread(server.stop, "fast")
        stopped_at = time.monotonic()
        await asyncio.sleep(3)
        started_at = time.monotonic()
        await asyncio.to_thread(server.start)
        while time.monotonic() < started_at + 12:
            recovered = {s.family for s in sent if s.sent_at > started_at and s.succeeded}
            if recovered == set(FAMILIES):
                await asyncio.sleep(1)  # and a little more traffic on the recovered pool
                break
            await asyncio.sleep(0.1)
        done.set()
        await asyncio.gather(*workers)
    return sent, stopped_at, started_at


def _count(url: str, sql: str, **params: Any) -> int:
    async def go() -> int:
        engine = create_async_engine(Settings(database_url=url).async_database_url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text(sql), params)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_an_outage_answers_503_with_retry_after_and_recovers_without_a_500(
    app_server: App, private_postgres: PrivateServer
) -> None:
    sent, stopped_at, started_at = asyncio.run(_traffic(app_server, private_postgres))
    log = app_server.log.read_text()

    assert app_server.process.poll() is None, log
    # No 500 ever; every answer is a success or a 503.
    unexpected = [
        (s.family, s.status, s.text[:300]) for s in sent if not s.succeeded and s.status != 503
    ]
    assert not unexpected, unexpected
    # No request hangs: the database timeouts bound every answer.
    assert max(s.answered_at - s.sent_at for s in sent) < 7

    for family in FAMILIES:
        answers = [s for s in sent if s.family == family]
        before = [s for s in answers if s.answered_at < stopped_at - 0.2]
        assert before, family
        assert all(s.succeeded for s in before), family
        # Within 2 s of the stop: 503 with Retry-After, in the family's own format.
        early = [s for s in answers if stopped_at <= s.answered_at <= stopped_at + 2]
        assert any(s.status == 503 for s in early), (family, [s.status for s in early])
        during = [s for s in answers if stopped_at + 0.2 < s.sent_at and s.answered_at < started_at]
        assert during, family
        for s in during:
            assert s.status == 503, (family, s.status, s.text[:300])
            assert int(s.response_headers["retry-after"]) > 0
            content_type = s.response_headers["content-type"]
            if family == "fhir":
                assert content_type.startswith("application/fhir+json")
                assert '"resourceType":"OperationOutcome"' in s.text.replace(" ", "")
            elif family == "hl7":
                assert content_type.startswith("x-application/hl7-v2+er7")
                assert segment(acks(s.text)[0], "MSA")[1] == "AR"
            else:
                assert content_type == "application/problem+json"
        # Within 10 s of the start: successes again.
        recovered = [s for s in answers if s.sent_at >= started_at and s.succeeded]
        assert recovered, family
        assert recovered[0].answered_at <= started_at + 10, family

    # Every write refused during the outage, retried unchanged, is stored exactly once.
    refused = [s for s in sent if s.status == 503 and s.accession is not None]
    assert refused

    async def retry_all() -> list[Sent]:
        async with httpx.AsyncClient(timeout=30) as http:
            return [await _send(http, app_server, s) for s in refused]

    for retried in asyncio.run(retry_all()):
        assert retried.succeeded or (retried.family == "native-write" and retried.status == 201), (
            retried.family,
            retried.status,
            retried.text[:300],
        )

    url = private_postgres.url
    expected_results = {"native-write": 2, "fhir": len(MINERAL_PANEL), "hl7": 1}
    for s in sent:
        if s.accession is None:
            continue
        panels = _count(url, "SELECT count(*) FROM panel WHERE accession = :a", a=s.accession)
        assert panels == 1, (s.family, s.accession, s.status)
        results = _count(
            url,
            "SELECT count(*) FROM result r JOIN panel p ON p.id = r.panel_id "
            "WHERE p.accession = :a",
            a=s.accession,
        )
        assert results == expected_results[s.family], (s.family, s.accession)
