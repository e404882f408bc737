"""Profile our POST / GET panel in-process: database round trips per request and where the
Python time goes (cProfile), without wrk or a server in between.

    python bench/profile_requests.py --db postgresql --requests 300
    python bench/profile_requests.py --db sqlite --top 40

It makes a scratch database (PostgreSQL: ``bench_prof_<token>``, dropped at the end; SQLite:
a temp file), migrates it with ``python -m app migrate``, creates an integration key, then
drives the app through ``httpx.ASGITransport`` with ``--concurrency`` requests in flight, the
same bodies bench/run.py sends (a fresh Idempotency-Key and accession per POST). Round trips
are the statements the driver executes (SQLAlchemy's ``before_cursor_execute``, BEGIN and
COMMIT included on SQLite where the app emits them), divided by the requests sent.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

ANALYTES: tuple[tuple[str, str, str], ...] = (
    ("magnesium", "1.6", "mg/dL"),
    ("calcium", "9.1", "mg/dL"),
    ("zinc", "55", "ug/dL"),
    ("iron", "80", "ug/dL"),
)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return done.stdout


def _scratch(db: str, token: str) -> tuple[str, Path | None]:
    if db == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="bench_prof_"))
        return f"sqlite:///{folder / 'prof.db'}", folder
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "root", "-qc", f"CREATE DATABASE bench_prof_{token}"],
        check=True,
        capture_output=True,
    )
    return f"postgresql://root@127.0.0.1:5432/bench_prof_{token}", None


def _drop(db: str, token: str) -> None:
    if db == "postgresql":
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "root", "--force", f"bench_prof_{token}"],
            check=False,
            capture_output=True,
        )


def _body(patient_id: str, accession: str) -> dict[str, Any]:
    return {
        "patient": {"id": patient_id},
        "source": "bench",
        "accession": accession,
        "collected_at": "2026-11-20T08:30:00Z",
        "results": [{"analyte": a, "value": v, "unit": u} for a, v, u in ANALYTES],
    }


async def _drive(url: str, key: str, args: argparse.Namespace) -> None:
    import httpx
    from sqlalchemy import event

    from app.core.config import Settings
    from app.main import create_app

    app = create_app(Settings(database_url=url, log_level="WARNING"))
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(" ".join(statement.split())[: args.width])

    async with app.router.lifespan_context(app):
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"X-API-Key": key}
        ) as http:
            patient = await http.post(
                "/api/v1/patients",
                json={
                    "identifiers": [{"system": "urn:bench", "value": "prof"}],
                    "sex": "female",
                    "birth_date": "1980-01-01",
                },
            )
            patient_id = patient.json()["id"]
            first = await http.post("/api/v1/panels", json=_body(patient_id, "prof-sample"))
            panel_id = first.json()["id"]

            async def post(i: int) -> int:
                response = await http.post(
                    "/api/v1/panels",
                    json=_body(patient_id, f"prof-{i}"),
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
                return response.status_code

            async def get(_i: int) -> int:
                return (await http.get(f"/api/v1/panels/{panel_id}")).status_code

            for name, fn in (("POST", post), ("GET", get)):
                await _run(name, fn, statements, args)


async def _run(name: str, fn: Any, statements: list[str], args: argparse.Namespace) -> None:
    for i in range(20):  # warm caches (compiled ranges, statement cache, key cache)
        await fn(-i - 1)
    statements.clear()
    semaphore = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> int:
        async with semaphore:
            return int(await fn(i))

    profiler = cProfile.Profile()
    profiler.enable()
    codes = await asyncio.gather(*(one(i) for i in range(args.requests)))
    profiler.disable()
    kinds: dict[str, int] = {}
    for statement in statements:
        kinds[statement] = kinds.get(statement, 0) + 1
    print(
        f"== {name}: statuses {sorted(set(codes))}, statements per request "
        f"{len(statements) / args.requests:.2f}"
    )
    for statement, times in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"   {times / args.requests:5.2f}  {statement}")
    # The same load again without the profiler: CPU time of this process (the app and the
    # in-process httpx client together; no PostgreSQL), far less sensitive than req/s to what
    # else the machine runs.
    started = time.process_time()
    await asyncio.gather(*(one(args.requests + i) for i in range(args.requests)))
    cpu_ms = (time.process_time() - started) * 1000 / args.requests
    print(f"   CPU per request (app + in-process client, unprofiled): {cpu_ms:.2f} ms")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--width", type=int, default=100, help="statement text shown")
    args = parser.parse_args(argv)
    token = uuid.uuid4().hex[:8]
    url, folder = _scratch(args.db, token)
    env = {**os.environ, "DATABASE_URL": url, "MINERAL_LOG_LEVEL": "WARNING"}
    env.pop("MINERAL_DATABASE_URL", None)
    os.environ["DATABASE_URL"] = url
    try:
        _cli(env, "migrate")
        created = _cli(env, "create-api-key", "--org", "default", "--role", "integration")
        asyncio.run(_drive(url, created.strip().splitlines()[-1].strip(), args))
    finally:
        _drop(args.db, token)
        if folder is not None:
            subprocess.run(["rm", "-rf", str(folder)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
