"""Patient history latency as the organization grows: p50/p99 of
``GET /api/v1/patients/{id}/analytes/magnesium/history`` for one patient with 10 panels, at 1k,
100k and 1M stored results in the organization (scratch PostgreSQL databases).

Two databases are set up the same way through the API: the *reference* stays at the first
level, the *grown* one is grown to each level in turn. At every level both are measured in
rounds of interleaved requests (one to each database in turn), so whatever else the machine
does slows both alike: the ratio is the grown p50 over the reference p50 of the same rounds
(medians over rounds), never a figure of one minute over a figure of another. At the first
level both hold the same data: its ratio shows the noise. Next to wall time, the CPU per
request of this process (service and client, in process: ``time.process_time``) and of the
PostgreSQL backends serving each database (``/proc/<pid>/stat``), which the machine's load
inflates far less than latency.

The organization is grown in SQL, not through the API: another patient's stored panel is
copied with ``INSERT ... SELECT ... generate_series`` (new ids and accessions, same content,
the in-row document included), ``--panels-per-patient`` copies (10) to each of as many copies
of that patient (identifiers included: 25,000 patients at 1M results), so that lookups by
patient and identifier meet an organization of realistic shape; then ANALYZEd. Seconds for a
million results.
Requests go in process through httpx's ASGI transport, one at a time, so the figures are the
service's own latency.

    python bench/history.py                      # 1k, 100k, 1M
    python bench/history.py --levels 1000 20000  # a quick look
    python bench/history.py --db-prefix hist_ --rounds 5

``run(args) -> dict`` is what bench/run.py calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulk import PG, REPO, RESULTS


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=REPO, env=env, check=True, capture_output=True
    )
    return done.stdout.decode().strip().splitlines()[-1]


async def _sql(url: str, statement: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(statement)
    finally:
        await conn.close()


async def _columns(url: str, table: str) -> list[str]:
    rows = await _sql(
        url,
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_name = '{table}' ORDER BY ordinal_position",
    )
    return [r["column_name"] for r in rows]


async def _grow(
    url: str, template_panel: str, template_patient: str, first: int, copies: int, per: int
) -> None:
    """Copies ``first`` .. ``first + copies - 1`` of the template panel and its results, copy
    ``g`` belonging to patient ``g // per``: a copy of the template's patient (and of its
    identifiers, their values suffixed) made when its first panel is. Ids are derived from the
    copy and patient numbers, so the results find their panel and patient."""
    last = first + copies - 1
    patients = f"generate_series({first // per}, {last // per}) k"

    def patient(number: str) -> str:
        return f"md5('{template_patient}' || {number})::uuid"

    await _copy(
        url,
        "patient",
        {"id": patient("k")},
        f"FROM patient t, {patients} WHERE t.id = '{template_patient}'",
        conflict=True,
    )
    await _copy(
        url,
        "patient_identifier",
        {"id": "gen_random_uuid()", "patient_id": patient("k"), "value": "t.value || '-' || k"},
        f"FROM patient_identifier t, {patients} WHERE t.patient_id = '{template_patient}'",
        conflict=True,
    )
    panel = "md5(t.id::text || g)::uuid"
    await _copy(
        url,
        "panel",
        {
            "id": panel,
            "accession": "t.accession || '-' || g",
            "patient_id": patient(f"(g / {per})"),
        },
        f"FROM panel t, generate_series({first}, {last}) g WHERE t.id = '{template_panel}'",
    )
    await _copy(
        url,
        "result",
        {
            "id": "gen_random_uuid()",
            "panel_id": "md5(t.panel_id::text || g)::uuid",
            "patient_id": patient(f"(g / {per})"),
        },
        f"FROM result t, generate_series({first}, {last}) g WHERE t.panel_id = '{template_panel}'",
    )
    for table in ("patient", "patient_identifier", "panel", "result"):
        await _sql(url, f"ANALYZE {table}")


async def _copy(
    url: str, table: str, exprs: dict[str, str], source: str, *, conflict: bool = False
) -> None:
    """INSERT INTO ``table`` every column of ``t`` (rows of ``source``), ``exprs`` replacing
    the named ones."""
    columns = await _columns(url, table)
    select = ", ".join(exprs.get(c, f"t.{c}") for c in columns)
    tail = " ON CONFLICT DO NOTHING" if conflict else ""
    await _sql(url, f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} {source}{tail}")


def _panel(patient_id: str, accession: str) -> dict[str, Any]:
    return {
        "patient": {"id": patient_id},
        "source": "bench-lab",
        "accession": accession,
        "collected_at": "2026-11-20T08:00:00Z",
        "results": RESULTS,
    }


def _ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _ms_per_tick() -> float:
    return 1000 / os.sysconf("SC_CLK_TCK")


@dataclass
class _Org:
    """One scratch database with its app, the target patient's history path and its size."""

    name: str
    url: str
    key: str
    app: Any = None
    client: Any = None
    path: str = ""
    per_patient: int = 10
    template: str = ""
    template_patient: str = ""
    stored: int = 44  # 11 panels of 4 results, posted through the API
    copied: int = 0  # panels copied so far
    backends: set[int] = field(default_factory=set)
    _db_before: dict[int, int] = field(default_factory=dict)
    _times: list[float] = field(default_factory=list)
    _cpu: float = 0.0

    async def open(self) -> None:
        import httpx
        from sqlalchemy import event

        from app.core.config import Settings
        from app.main import create_app

        self.app = create_app(Settings(database_url=self.url))

        @event.listens_for(self.app.state.engine.sync_engine, "connect")
        def connected(dbapi_connection: Any, _record: Any) -> None:
            self.backends.add(dbapi_connection.driver_connection.get_server_pid())

        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(
            transport=transport, base_url="http://b", headers={"X-API-Key": self.key}
        )
        ids = []
        for mrn in ("TARGET", "OTHER"):
            body = {"identifiers": [{"system": "urn:bench", "value": mrn}], "sex": "female"}
            ids.append(await self._created("/api/v1/patients", body))
        for n in range(10):
            await self._created("/api/v1/panels", _panel(ids[0], f"T-{n}"))
        self.template = await self._created("/api/v1/panels", _panel(ids[1], "O-0"))
        self.template_patient = ids[1]
        self.path = f"/api/v1/patients/{ids[0]}/analytes/magnesium/history"

    async def _created(self, path: str, body: dict[str, Any]) -> str:
        response = await self.client.post(path, json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    @property
    def patients(self) -> int:
        """TARGET, OTHER and the copies of OTHER."""
        return 2 + (0 if self.copied == 0 else (self.copied - 1) // self.per_patient + 1)

    async def grow_to(self, level: int) -> None:
        copies = max(0, (level - self.stored) // len(RESULTS))
        if copies:
            await _grow(
                self.url,
                self.template,
                self.template_patient,
                self.copied,
                copies,
                self.per_patient,
            )
            self.copied += copies
            self.stored += copies * len(RESULTS)

    def start(self) -> None:
        """Begin a round: this database's backends' CPU so far, no request timed yet."""
        self._db_before = {pid: _ticks(pid) for pid in self.backends}
        self._times = []
        self._cpu = 0.0

    async def timed_get(self) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        await self.get()
        self._cpu += time.process_time() - cpu
        self._times.append((time.perf_counter() - started) * 1000)

    def finish(self) -> dict[str, float]:
        # A backend opened meanwhile counts from 0; one gone meanwhile reads 0, not negative.
        db = sum(max(0, _ticks(pid) - self._db_before.get(pid, 0)) for pid in self.backends)
        times, n = sorted(self._times), len(self._times)
        return {
            "p50_ms": statistics.median(times),
            "p99_ms": times[int(n * 0.99) - 1],
            "cpu_ms": self._cpu * 1000 / n,
            "db_cpu_ms": db * _ms_per_tick() / n,
        }

    async def get(self) -> None:
        response = await self.client.get(self.path)
        assert response.status_code == 200, response.text

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.app is not None:
            await self.app.state.engine.dispose()


async def _paired_round(
    reference: _Org, grown: _Org, requests: int
) -> tuple[dict[str, float], dict[str, float]]:
    """`requests` GETs on each database, one at a time and interleaved (reference first on
    even requests, grown first on odd ones), after 20 unmeasured ones on each: whatever else
    the machine does slows both alike."""
    for _ in range(20):
        await reference.get()
        await grown.get()
    reference.start()
    grown.start()
    for n in range(requests):
        for org in (reference, grown) if n % 2 == 0 else (grown, reference):
            await org.timed_get()
    return reference.finish(), grown.finish()


def _median(rounds: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(r[key] for r in rounds), 2)


async def _measure(
    reference: _Org, grown: _Org, levels: Sequence[int], requests: int, rounds: int
) -> dict[str, Any]:
    await reference.open()
    await grown.open()
    await reference.grow_to(levels[0])
    figures: dict[str, Any] = {}
    for level in levels:
        await grown.grow_to(level)
        ours: list[dict[str, float]] = []
        refs: list[dict[str, float]] = []
        for _ in range(rounds):
            refs_round, ours_round = await _paired_round(reference, grown, requests)
            refs.append(refs_round)
            ours.append(ours_round)
        p50, ref_p50 = _median(ours, "p50_ms"), _median(refs, "p50_ms")
        figures[str(level)] = {
            "stored_results": grown.stored,
            "patients": grown.patients,
            "p50_ms": p50,
            "p99_ms": _median(ours, "p99_ms"),
            "cpu_ms_per_request": _median(ours, "cpu_ms"),
            "db_cpu_ms_per_request": _median(ours, "db_cpu_ms"),
            "reference_stored_results": reference.stored,
            "reference_p50_ms": ref_p50,
            "reference_cpu_ms_per_request": _median(refs, "cpu_ms"),
            "reference_db_cpu_ms_per_request": _median(refs, "db_cpu_ms"),
            "p50_ratio_to_reference": round(p50 / ref_p50, 2),
            "round_p50s_ms": [round(r["p50_ms"], 2) for r in ours],
            "reference_round_p50s_ms": [round(r["p50_ms"], 2) for r in refs],
        }
    last = figures[str(levels[-1])]
    return {
        "markdown": _markdown(figures, rounds, requests),
        "levels": figures,
        "rounds": rounds,
        "requests_per_round": requests,
        # The last level's p50 over the first level's (the reference), in the same rounds.
        "p50_ratio_last_to_first": last["p50_ratio_to_reference"],
        "cpu_ratio_last_to_first": round(
            last["cpu_ms_per_request"] / last["reference_cpu_ms_per_request"], 2
        ),
        "target_ratio": 1.2,
    }


def _markdown(figures: dict[str, Any], rounds: int, requests: int) -> list[str]:
    """The README block: one row per level, each beside its reference of the same rounds."""
    lines = [
        f"Median of {rounds} rounds of {requests} GETs per database, the two databases'"
        " requests interleaved; the reference stays at the first level.",
        "",
        "| stored results | p50 ms | p99 ms | reference p50 ms | p50 ratio | CPU ms/req"
        " (reference) | DB CPU ms/req (reference) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in figures.values():
        lines.append(
            f"| {level['stored_results']:,} | {level['p50_ms']} | {level['p99_ms']}"
            f" | {level['reference_p50_ms']} | {level['p50_ratio_to_reference']}x"
            f" | {level['cpu_ms_per_request']} ({level['reference_cpu_ms_per_request']})"
            f" | {level['db_cpu_ms_per_request']} ({level['reference_db_cpu_ms_per_request']}) |"
        )
    return lines


async def _run(orgs: list[_Org], args: argparse.Namespace) -> dict[str, Any]:
    try:
        return await _measure(orgs[0], orgs[1], args.levels, args.requests, args.rounds)
    finally:
        for org in orgs:
            await org.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    token = uuid.uuid4().hex[:8]
    names = [f"{args.db_prefix}{token}_reference", f"{args.db_prefix}{token}_grown"]
    orgs: list[_Org] = []
    try:
        for name in names:
            asyncio.run(_sql(f"{PG}/postgres", f'CREATE DATABASE "{name}"'))
            url = f"{PG}/{name}"
            env = {**os.environ, "DATABASE_URL": url}
            env.pop("MINERAL_DATABASE_URL", None)
            _cli(env, "migrate")
            # The integration role both posts and reads history back (reconciliation).
            key = _cli(env, "create-api-key", "--org", "Bench", "--role", "integration")
            orgs.append(_Org(name, url, key, per_patient=args.panels_per_patient))
        return asyncio.run(_run(orgs, args))
    finally:
        for name in names:
            asyncio.run(_sql(f"{PG}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--levels", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    p.add_argument("--requests", type=int, default=300, help="requests per round and database")
    p.add_argument("--rounds", type=int, default=3, help="rounds per level")
    p.add_argument(
        "--panels-per-patient",
        type=int,
        default=10,
        help="the grown organization's copied panels per (copied) patient",
    )
    p.add_argument("--db-prefix", default="bench_history_", help="scratch database name prefix")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    print(json.dumps(run(parser().parse_args(argv)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
