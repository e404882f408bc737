"""Bulk ingestion throughput and memory: NDJSON panels (4 results each) through the panel-batch
service on a scratch PostgreSQL database, one process (one worker's worth of Python).

The file is produced by a generator, never held in memory; RSS is sampled as outcomes stream
out, so the growth reported is the service's, over the whole batch.

    python bench/bulk.py                  # 250,000 panels = 1M results
    python bench/bulk.py --panels 5000    # a quick look
    python bench/bulk.py --panels 20000 --statements          # + database time per statement
    python bench/bulk.py --panels 5000 --profile /tmp/bulk.prof  # + cProfile (top 30 on stderr)

``run(args) -> dict`` is what bench/run.py calls.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_POSTGRES", "postgresql://root@127.0.0.1:5432")
RESULTS = [
    {"analyte": "magnesium", "value": "0.62", "unit": "mmol/L"},
    {"analyte": "calcium", "value": "9.1", "unit": "mg/dL"},
    {"analyte": "zinc", "value": "58", "unit": "ug/dL"},
    {"analyte": "copper", "value": "95", "unit": "ug/dL"},
]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def ndjson(patient_id: uuid.UUID, panels: int, block: int = 200) -> AsyncIterator[bytes]:
    """``panels`` lines, ``block`` lines per chunk, as a client would stream them."""
    for start in range(0, panels, block):
        lines = [
            json.dumps(
                {
                    "patient": {"id": str(patient_id)},
                    "source": "bench-lab",
                    "accession": f"BULK-{n:09d}",
                    "collected_at": "2026-11-20T08:00:00Z",
                    "results": RESULTS,
                }
            )
            for n in range(start, min(start + block, panels))
        ]
        yield ("\n".join(lines) + "\n").encode()


class _LoopWait:
    """Wall time the event loop spends blocked in its selector (no task ready to run)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.seconds = 0.0
        self._selector: Any = getattr(loop, "_selector", None)
        if self._selector is None:
            return
        self._select = self._selector.select

        def select(timeout: float | None = None) -> Any:
            started = time.perf_counter()
            try:
                return self._select(timeout)
            finally:
                self.seconds += time.perf_counter() - started

        self._selector.select = select

    def stop(self) -> float:
        if self._selector is not None:
            self._selector.select = self._select
        return self.seconds


def _ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


class _Backends:
    """CPU of the PostgreSQL backends serving the engine's connections (their /proc ticks):
    the database's share of a panel, next to this process's. The server's shared processes
    (WAL writer, checkpointer) are left out: other databases of the machine use them too."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self._started: dict[int, int] = {}

    def listen(self, engine: Any) -> None:
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def connected(dbapi_connection: Any, _record: Any) -> None:
            self.pids.add(dbapi_connection.driver_connection.get_server_pid())

    def start(self) -> None:
        self._started = {pid: _ticks(pid) for pid in self.pids}

    def seconds(self) -> float:
        # A backend gone meanwhile (an overflow connection closed) reads 0: not negative.
        ticks = sum(max(0, _ticks(pid) - self._started.get(pid, 0)) for pid in self.pids)
        return ticks / os.sysconf("SC_CLK_TCK")


class _Statements:
    """Time spent in each SQL statement (from the driver call to its answer: the database's
    time and the round trip), keyed by the statement's first 100 characters."""

    def __init__(self) -> None:
        self.by_statement: dict[str, list[float]] = {}

    def listen(self, engine: Any) -> None:
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def before(*args: Any) -> None:
            args[4]._bench_started = time.perf_counter()

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def after(
            _conn: Any, _cursor: Any, statement: str, params: Any, context: Any, many: bool
        ) -> None:
            key = " ".join(statement.split())[:100]
            entry = self.by_statement.setdefault(key, [0, 0.0, 0])
            entry[0] += 1
            entry[1] += time.perf_counter() - context._bench_started
            entry[2] += len(params) if many else 1

    def copies(self) -> None:
        """COPY runs on the driver's connection, outside SQLAlchemy's events: timed here."""
        import asyncpg

        original = asyncpg.Connection.copy_records_to_table

        async def timed(connection: Any, table: str, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(connection, table, **kwargs)
            finally:
                entry = self.by_statement.setdefault(f"COPY {table}", [0, 0.0, 0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started
                entry[2] += len(kwargs.get("records") or ())

        asyncpg.Connection.copy_records_to_table = timed

    def report(self) -> list[dict[str, Any]]:
        ordered = sorted(self.by_statement.items(), key=lambda item: -item[1][1])
        return [
            {"statement": key, "calls": int(n), "seconds": round(seconds, 2), "rows": int(rows)}
            for key, (n, seconds, rows) in ordered[:12]
        ]


def _as_after_startup() -> None:
    """The process as a served worker is when its first batch arrives: the catalog loaded and
    what startup left alive frozen out of the collector's scans (``app.main``'s lifespan).
    Without this the figures counted the catalog's first load (~1.5 s of CPU) and full
    collections walking every module and schema, which the service never pays per batch."""
    from app.domain.catalog import default_catalog

    default_catalog()
    gc.collect()
    gc.freeze()


async def _measure(
    panels: int, statements: _Statements | None = None, profile: str | None = None
) -> dict[str, Any]:
    from app.audit.service import AuditEntry
    from app.batches import service
    from app.batches.schemas import outcome_lines
    from app.core.config import get_settings
    from app.core.db import make_engine, make_sessionmaker, transaction
    from app.models.organization import DEFAULT_ORGANIZATION_ID
    from app.patients import service as patients
    from app.patients.schemas import PatientCreate

    settings = get_settings()
    engine = make_engine(settings)
    if statements is not None:
        statements.listen(engine)
        statements.copies()
    backends = _Backends()
    backends.listen(engine)
    sessionmaker = make_sessionmaker(engine)
    org = DEFAULT_ORGANIZATION_ID
    try:
        async with transaction(sessionmaker) as session:
            patient = await patients.create(
                session,
                organization_id=org,
                data=PatientCreate.model_validate(
                    {"identifiers": [{"system": "urn:bench", "value": "BULK"}], "sex": "female"}
                ),
            )
        base = AuditEntry(
            organization_id=org,
            principal_id="bench:bulk",
            action="create",
            resource_type="panel",
            outcome="success",
        )
        batch = await service.start(sessionmaker, base)
        _as_after_startup()
        # What the route runs (app.batches.router), the HTTP server aside: the chunks of
        # outcomes, each written as NDJSON.
        chunks = service.run_ndjson_chunks(
            sessionmaker,
            batch_id=batch.id,
            base=base,
            chunks=ndjson(patient.id, panels),
            settings=settings,
        )
        rss_start = rss_mb()
        rss_peak = rss_start
        counts: dict[str, int] = {}
        profiler = cProfile.Profile() if profile else None
        waiting = _LoopWait(asyncio.get_running_loop())
        backends.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        answered = 0
        async for outcomes in chunks:
            answered += len(outcome_lines(outcomes))
            for outcome in outcomes:
                counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
            rss_peak = max(rss_peak, rss_mb())
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - started
        # This process's CPU alone: on a shared machine the wall clock also counts waiting for
        # a core, and the database server's own work.
        cpu_seconds = time.process_time() - cpu_started
        postgres_cpu_seconds = backends.seconds()
        wait_seconds = waiting.stop()
        if profiler is not None and profile:
            profiler.dump_stats(profile)
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    finally:
        await engine.dispose()
    rss_peak = max(rss_peak, rss_mb())
    return {
        "panels": panels,
        "results": panels * len(RESULTS),
        "seconds": round(seconds, 2),
        "results_per_second": round(panels * len(RESULTS) / seconds),
        "cpu_seconds": round(cpu_seconds, 2),
        # The event loop blocked with nothing to run (every task waiting for the database):
        # what pipelining the chunks overlaps.
        "loop_wait_seconds": round(wait_seconds, 2),
        "results_per_cpu_second": round(panels * len(RESULTS) / cpu_seconds),
        # Per panel: this process's CPU, and its PostgreSQL backends' (the two run side by
        # side when chunks are pipelined; the larger bounds one worker's throughput).
        "python_cpu_ms_per_panel": round(cpu_seconds * 1000 / panels, 3),
        "postgres_cpu_seconds": round(postgres_cpu_seconds, 2),
        "postgres_cpu_ms_per_panel": round(postgres_cpu_seconds * 1000 / panels, 3),
        "response_mb": round(answered / 2**20, 1),
        "rss_start_mb": round(rss_start, 1),
        "rss_growth_mb": round(rss_peak - rss_start, 1),
        "outcomes": counts,
        "target_results_per_second": 20000,
        "target_rss_growth_mb": 50,
        **({"statements": statements.report()} if statements is not None else {}),
    }


def _fresh_settings() -> None:
    """Forget settings cached by an earlier suite of the same run (bench/run.py --suite all runs
    bulk, then history, in one process): they name that suite's dropped database."""
    from app.core.config import get_settings

    get_settings.cache_clear()


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_bulk_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        env = {**os.environ, "DATABASE_URL": f"{PG}/{name}"}
        env.pop("MINERAL_DATABASE_URL", None)
        subprocess.run(
            [sys.executable, "-m", "app", "migrate"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        os.environ.update({"DATABASE_URL": env["DATABASE_URL"]})
        _fresh_settings()
        statements = _Statements() if getattr(args, "statements", False) else None
        from app.batches import service

        if getattr(args, "chunk_lines", None):
            service.CHUNK_LINES = args.chunk_lines
        if getattr(args, "depth", None):
            service.PIPELINE_DEPTH = args.depth
        figures = asyncio.run(_measure(args.panels, statements, getattr(args, "profile", None)))
        return {
            **figures,
            "chunk_lines": service.CHUNK_LINES,
            "pipeline_depth": service.PIPELINE_DEPTH,
        }
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--panels", type=int, default=250_000, help="4 results each")
    p.add_argument(
        "--statements",
        action="store_true",
        help="also report the time in each SQL statement (the database-time split)",
    )
    p.add_argument(
        "--chunk-lines",
        type=int,
        help="lines per chunk (default: the service's CHUNK_LINES)",
    )
    p.add_argument(
        "--depth",
        type=int,
        help="chunks in flight on PostgreSQL (default: the service's PIPELINE_DEPTH; 1: none)",
    )
    p.add_argument(
        "--profile",
        metavar="PATH",
        help="cProfile the batch (not the setup) into PATH; the top 30 go to stderr",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    print(json.dumps(run(parser().parse_args(argv)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
