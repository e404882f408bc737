"""Patient history latency as the organization grows: p50/p99 of
``GET /api/v1/patients/{id}/analytes/magnesium/history`` for one patient with 10 panels, at 1k,
100k and 1M stored results in the organization (scratch PostgreSQL database).

The organization is grown in SQL, not through the API: stored panels of another patient are
copied with ``INSERT ... SELECT ... generate_series`` (new ids and accessions, same content),
which takes seconds for a million results. Requests go in process through httpx's ASGI
transport, one at a time, so the figures are the service's own latency.

    python bench/history.py                      # 1k, 100k, 1M
    python bench/history.py --levels 1000 20000  # a quick look

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


async def _grow(url: str, template_panel: str, first: int, copies: int) -> None:
    """``copies`` copies of the template panel and its results (ids derived from the copy
    number, so the results find their panel)."""
    new_panel = "md5(p.id::text || g)::uuid"
    panel_cols = await _columns(url, "panel")
    exprs = {"id": new_panel, "accession": "p.accession || '-' || g"}
    select = ", ".join(exprs.get(c, f"p.{c}") for c in panel_cols)
    await _sql(
        url,
        f"INSERT INTO panel ({', '.join(panel_cols)}) SELECT {select} FROM panel p, "
        f"generate_series({first}, {first + copies - 1}) g WHERE p.id = '{template_panel}'",
    )
    result_cols = await _columns(url, "result")
    exprs = {"id": "gen_random_uuid()", "panel_id": "md5(r.panel_id::text || g)::uuid"}
    select = ", ".join(exprs.get(c, f"r.{c}") for c in result_cols)
    await _sql(
        url,
        f"INSERT INTO result ({', '.join(result_cols)}) SELECT {select} FROM result r, "
        f"generate_series({first}, {first + copies - 1}) g WHERE r.panel_id = '{template_panel}'",
    )
    await _sql(url, "ANALYZE panel")
    await _sql(url, "ANALYZE result")


def _panel(patient_id: str, accession: str) -> dict[str, Any]:
    return {
        "patient": {"id": patient_id},
        "source": "bench-lab",
        "accession": accession,
        "collected_at": "2026-11-20T08:00:00Z",
        "results": RESULTS,
    }


async def _latencies(client: Any, path: str, requests: int) -> dict[str, float]:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
    }


async def _measure(url: str, key: str, levels: Sequence[int], requests: int) -> dict[str, Any]:
    import httpx

    from app.core.config import get_settings
    from app.main import create_app

    app = create_app(get_settings())
    transport = httpx.ASGITransport(app=app)
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(transport=transport, base_url="http://b", headers=headers) as c:
        ids = []
        for mrn in ("TARGET", "OTHER"):
            body = {"identifiers": [{"system": "urn:bench", "value": mrn}], "sex": "female"}
            ids.append((await c.post("/api/v1/patients", json=body)).json()["id"])
        for n in range(10):
            await c.post("/api/v1/panels", json=_panel(ids[0], f"T-{n}"))
        template = (await c.post("/api/v1/panels", json=_panel(ids[1], "O-0"))).json()["id"]
        stored, figures = 44, {}
        path = f"/api/v1/patients/{ids[0]}/analytes/magnesium/history"
        for level in levels:
            copies = max(0, (level - stored) // len(RESULTS))
            if copies:
                await _grow(url, template, stored, copies)
                stored += copies * len(RESULTS)
            await _latencies(c, path, 20)  # warm up
            figures[str(level)] = {"stored_results": stored, **await _latencies(c, path, requests)}
    await app.state.engine.dispose()
    first, last = figures[str(levels[0])], figures[str(levels[-1])]
    return {
        "levels": figures,
        "p50_ratio_last_to_first": round(last["p50_ms"] / first["p50_ms"], 2),
        "target_ratio": 1.2,
    }


def _fresh_settings() -> None:
    """Forget settings cached by an earlier suite of the same run (bench/run.py --suite all runs
    bulk, then history, in one process): they name that suite's dropped database."""
    from app.core.config import get_settings

    get_settings.cache_clear()


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"bench_history_{uuid.uuid4().hex[:8]}"
    asyncio.run(_sql(f"{PG}/postgres", f'CREATE DATABASE "{name}"'))
    try:
        url = f"{PG}/{name}"
        env = {**os.environ, "DATABASE_URL": url}
        env.pop("MINERAL_DATABASE_URL", None)
        _cli(env, "migrate")
        key = _cli(env, "create-api-key", "--org", "Bench", "--role", "integration")
        os.environ["DATABASE_URL"] = url
        _fresh_settings()
        # The integration role both posts and reads history back (reconciliation).
        return asyncio.run(_measure(url, key, args.levels, args.requests))
    finally:
        asyncio.run(_sql(f"{PG}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--levels", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    p.add_argument("--requests", type=int, default=300)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    print(json.dumps(run(parser().parse_args(argv)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
