"""Safe retries across server processes, on PostgreSQL.

Two `python -m app serve --no-migrate` processes share one scratch PostgreSQL database. Every
burst below sends twenty requests at once, alternating between the two processes, so only the
database (unique constraints claimed inside each request's transaction) can keep them apart:

* twenty POSTs of one panel with ONE Idempotency-Key → one panel; twenty identical responses
  (same status, byte-identical body), all but the first marked `Idempotent-Replayed: true`;
  then that key with a different body → 422 and nothing stored;
* twenty POSTs of one accession with twenty different keys → one panel; one 201, nineteen
  200 naming the same panel;
* twenty registrations of one identifier with twenty different keys → one patient; one 201,
  nineteen 409.

These run in the default test command. They need the PostgreSQL server (like every
PostgreSQL-backed test, they fail rather than skip when it cannot be reached) and are skipped
only when TEST_DATABASES explicitly leaves PostgreSQL out.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
from tests.conftest import BACKENDS, ROOT, alembic_config
from tests.interop.fhir.builders import panel_bundle
from tests.interop.hl7.messages import acks, magnesium_mmol, oru, segment

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif("postgresql" not in BACKENDS, reason="TEST_DATABASES leaves PostgreSQL out"),
]

BURST = 20
PROCESSES = 2
MRN_SYSTEM = "urn:test:mrn"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _ensure_default_ranges(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            await range_service.ensure_default(session, organization_id=DEFAULT_ORGANIZATION_ID)
    finally:
        await engine.dispose()


@dataclass
class Cluster:
    database_url: str
    base_urls: list[str]
    key: str

    def scalar(self, sql: str, **params: Any) -> Any:
        async def go() -> Any:
            engine = create_async_engine(
                Settings(database_url=self.database_url).async_database_url
            )
            try:
                async with engine.connect() as conn:
                    return (await conn.execute(text(sql), params)).scalar()
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def burst(
        self, requests: list[tuple[str, dict[str, Any] | str, dict[str, str]]]
    ) -> list[httpx.Response]:
        """Send all `requests` (path, body, headers) at once; the i-th goes to process i % 2. A
        dict body is sent as JSON, a str as it is."""

        async def go() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=len(requests))
            async with httpx.AsyncClient(timeout=60, limits=limits) as http:
                return await asyncio.gather(
                    *(
                        http.post(
                            self.base_urls[index % len(self.base_urls)] + path,
                            json=body if isinstance(body, dict) else None,
                            content=body if isinstance(body, str) else None,
                            headers={"X-API-Key": self.key, **headers},
                        )
                        for index, (path, body, headers) in enumerate(requests)
                    )
                )

        return asyncio.run(go())

    def post(self, path: str, body: dict[str, Any], process: int = 0, **headers: str) -> Any:
        return httpx.post(
            self.base_urls[process] + path,
            json=body,
            headers={"X-API-Key": self.key, **headers},
            timeout=30,
        )


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server at {url} not ready within 60 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def cluster(
    scratch_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    url = scratch_database("postgresql")
    command.upgrade(alembic_config(url), "head")
    settings = Settings(database_url=url, environment="test")
    asyncio.run(_ensure_default_ranges(settings))
    output = create_api_key_command(settings, org="default", role="integration", name="burst")
    key = output.splitlines()[-1].strip()

    logs = tmp_path_factory.mktemp("servers")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "MINERAL_ENVIRONMENT": "test",
        "MINERAL_LOG_LEVEL": "WARNING",
    }
    env.pop("MINERAL_DATABASE_URL", None)
    processes: list[tuple[subprocess.Popen[bytes], IO[str], Path]] = []
    base_urls: list[str] = []
    try:
        for index in range(PROCESSES):
            port = _free_port()
            log = logs / f"server-{index}.log"
            handle = log.open("w")
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--no-migrate", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
            processes.append((process, handle, log))
            base_urls.append(f"http://127.0.0.1:{port}")
        for (process, _, log), base_url in zip(processes, base_urls, strict=True):
            _wait_until_ready(base_url, process, log)
        yield Cluster(database_url=url, base_urls=base_urls, key=key)
    finally:
        for process, _, _ in processes:
            process.terminate()
        for process, output_file, _ in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            output_file.close()


@pytest.fixture(scope="module")
def patient_id(cluster: Cluster) -> str:
    body = {"identifiers": [{"system": MRN_SYSTEM, "value": "MP-PATIENT"}], "sex": "female"}
    response = cluster.post("/api/v1/patients", body)
    assert response.status_code == 201, response.text
    value: str = response.json()["id"]
    return value


def _panel(patient_id: str, accession: str, magnesium: str = "0.70") -> dict[str, Any]:
    return {
        "patient": {"id": patient_id},
        "source": "burst-lab",
        "accession": accession,
        "collected_at": "2026-11-20T08:00:00Z",
        "results": [
            {"analyte": "magnesium", "value": magnesium, "unit": "mmol/L"},
            {"analyte": "zinc", "value": "80", "unit": "ug/dL"},
        ],
    }


def _panels(cluster: Cluster, accession: str) -> int:
    return int(cluster.scalar("SELECT count(*) FROM panel WHERE accession = :a", a=accession))


def test_both_processes_serve_the_same_database(cluster: Cluster, patient_id: str) -> None:
    for process in range(PROCESSES):
        response = httpx.get(
            f"{cluster.base_urls[process]}/api/v1/patients/{patient_id}",
            headers={"X-API-Key": cluster.key},
            timeout=10,
        )
        assert response.status_code == 200, response.text


def test_twenty_posts_with_one_idempotency_key_store_one_panel(
    cluster: Cluster, patient_id: str
) -> None:
    accession = f"ACC-ONE-KEY-{uuid.uuid4().hex[:8]}"
    key = f"one-key-{uuid.uuid4()}"
    body = _panel(patient_id, accession)

    responses = cluster.burst([("/api/v1/panels", body, {"Idempotency-Key": key})] * BURST)

    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # byte for byte the same body
    replayed = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == BURST - 1
    assert _panels(cluster, accession) == 1
    panel_id = responses[0].json()["id"]
    assert {r.headers["Location"] for r in responses} == {f"/api/v1/panels/{panel_id}"}
    records = "SELECT count(*) FROM idempotency_record WHERE key = :k"
    assert cluster.scalar(records, k=key) == 1

    # The same key with another body, on either process: 422, and nothing is stored.
    panels_before = cluster.scalar("SELECT count(*) FROM panel")
    results_before = cluster.scalar("SELECT count(*) FROM result")
    for process in range(PROCESSES):
        other = _panel(patient_id, f"{accession}-OTHER", magnesium="0.90")
        response = cluster.post("/api/v1/panels", other, process, **{"Idempotency-Key": key})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "Idempotent-Replayed" not in response.headers
    assert cluster.scalar("SELECT count(*) FROM panel") == panels_before
    assert cluster.scalar("SELECT count(*) FROM result") == results_before
    assert _panels(cluster, f"{accession}-OTHER") == 0
    assert cluster.scalar(records, k=key) == 1


def test_twenty_posts_of_one_accession_with_twenty_keys_store_one_panel(
    cluster: Cluster, patient_id: str
) -> None:
    accession = f"ACC-MANY-KEYS-{uuid.uuid4().hex[:8]}"
    body = _panel(patient_id, accession)

    responses = cluster.burst(
        [
            ("/api/v1/panels", body, {"Idempotency-Key": f"many-{index}-{uuid.uuid4()}"})
            for index in range(BURST)
        ]
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (BURST - 1) + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert not [r for r in responses if "Idempotent-Replayed" in r.headers]
    assert _panels(cluster, accession) == 1
    panel_id = responses[0].json()["id"]
    assert cluster.scalar("SELECT count(*) FROM result WHERE panel_id = :p", p=panel_id) == 2


def test_twenty_registrations_of_one_identifier_store_one_patient(cluster: Cluster) -> None:
    mrn = f"MP-{uuid.uuid4().hex[:10]}"
    body = {"identifiers": [{"system": MRN_SYSTEM, "value": mrn}], "sex": "male"}

    responses = cluster.burst(
        [
            ("/api/v1/patients", body, {"Idempotency-Key": f"patient-{index}-{uuid.uuid4()}"})
            for index in range(BURST)
        ]
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (BURST - 1), [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["type"].endswith("/identifier-in-use")
    stored = "SELECT count(*) FROM patient_identifier WHERE system = :s AND value = :v"
    assert cluster.scalar(stored, s=MRN_SYSTEM, v=mrn) == 1


def test_twenty_copies_of_one_hl7_message_store_it_once(cluster: Cluster) -> None:
    control_id = f"BURST-{uuid.uuid4().hex[:8]}"
    accession = f"ACC-HL7-{uuid.uuid4().hex[:8]}"
    message = oru(
        [magnesium_mmol("0.62")], control_id=control_id, accession=accession, mrn=control_id
    )
    headers = {"Content-Type": "x-application/hl7-v2+er7"}

    responses = cluster.burst([("/api/v1/hl7/oru", message, headers)] * BURST)

    assert {r.status_code for r in responses} == {200}
    assert {segment(acks(r.text)[0], "MSA")[1] for r in responses} == {"AA"}, [
        r.text for r in responses
    ]
    assert _panels(cluster, accession) == 1
    stored = "SELECT count(*) FROM hl7_message WHERE control_id = :c"
    assert cluster.scalar(stored, c=control_id) == 1


def test_twenty_copies_of_one_fhir_bundle_for_a_new_patient_store_it_once(
    cluster: Cluster,
) -> None:
    mrn = f"FHIR-BURST-{uuid.uuid4().hex[:8]}"
    accession = f"ACC-FHIR-{uuid.uuid4().hex[:8]}"
    body = panel_bundle(mrn=mrn, accession=accession)
    headers = {"Content-Type": "application/fhir+json"}

    responses = cluster.burst([("/fhir/R4", body, headers)] * BURST)

    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    for response in responses:
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert all(s.startswith(("200", "201")) for s in statuses), response.text
    assert _panels(cluster, accession) == 1
    stored = "SELECT count(*) FROM patient_identifier WHERE value = :v"
    assert cluster.scalar(stored, v=mrn) == 1
