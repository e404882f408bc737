"""Scale-out figures for bench/run.py: 1 vs 2 workers, two replicas, CPU and RSS per worker.

PostgreSQL only (SQLite is one file on one machine). Our service alone, three layouts on one
scratch database, each loaded with the same wrk load as the side-by-side comparison (POST with
a unique accession per request, GET of one panel) and the same total connections:

* ``1 worker``: ``python -m app serve --workers 1``;
* ``2 workers``: ``python -m app serve --workers 2`` (uvicorn's processes share one socket);
* ``2 replicas``: two separate ``serve --workers 1`` processes on their own ports, each loaded
  by its own wrk with half the connections, at the same time (req/s summed).

Per load it records req/s, latency, the CPU-seconds the service processes used (utime + stime
from /proc of the server's process group, workers included, wrk and PostgreSQL excluded) per
request, and the largest RSS of any one worker sampled during the load. To tell the causes of a
miss apart it also records the CPU-seconds per request of the scratch database's PostgreSQL
backends, how many of the machine's cores were busy (/proc/stat, everything on the machine),
the largest worker's share of the workers' CPU (0.5 = an even split between two; 1.0 = one
worker served every connection) and the capacity those figures leave: cores / (service +
PostgreSQL CPU per request), the req/s the machine could give with every core doing only this
(wrk not counted). On a 2-core machine whose one worker already keeps both cores busy with
itself and PostgreSQL, no layout can add throughput; only less CPU per request can.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import procs as procs_
import run as harness
import scratch as scratch_db
import wrk as wrk_

LAYOUTS = ("1 worker", "2 workers", "2 replicas")
# Issue 15: 2 workers (or replicas) >= 1.4x one worker; CPU per request within 15 %; RSS cap.
SPEEDUP_TARGET = 1.4
CPU_TOLERANCE = 0.15
RSS_LIMIT_MB = 150.0


@dataclass
class ScaleRun:
    layout: str
    endpoint: str
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    max_worker_rss_mb: float
    workers_seen: int
    pg_cpu_ms_per_request: float = 0.0
    machine_busy_cores: float = 0.0
    top_worker_share: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)


def _group_pids(leader: int) -> list[int]:
    """The processes of `leader`'s process group (the server and its uvicorn workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = (entry / "stat").read_text("utf-8", errors="replace")
            if int(raw[raw.rindex(")") + 2 :].split()[2]) == leader:
                pids.append(int(entry.name))
    return pids


def _ticks(pid: int) -> int:
    """utime + stime of `pid` plus those of its reaped children (clock ticks)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        raw = Path(f"/proc/{pid}/stat").read_text("utf-8", errors="replace")
        rest = raw[raw.rindex(")") + 2 :].split()
        return sum(int(rest[i]) for i in (11, 12, 13, 14))
    return 0


def _backend_ticks(database: str) -> dict[int, int]:
    """utime + stime of the PostgreSQL backends connected to `database` (by their titles,
    ``postgres: ... user database host(port) state``), per pid."""
    found: dict[int, int] = {}
    marker = f" {database} ".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if title.startswith(b"postgres: ") and marker in title:
                found[int(entry.name)] = _ticks(int(entry.name))
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot (/proc/stat; iowait counts as idle)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text("utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Sampler:
    """CPU ticks of the given process groups over a load, and the largest RSS of any worker
    (a group's leader is uvicorn's supervisor when it has workers: not counted for RSS)."""

    def __init__(self, leaders: list[int], database: str) -> None:
        self.leaders = leaders
        self.database = database
        self.pg_cpu_seconds = 0.0
        self.busy_cores = 0.0
        self.top_worker_share = 0.0
        self._start_pids: dict[int, int] = {}
        self._start_backends: dict[int, int] = {}
        self._start_machine = (0, 0)
        self.max_rss = 0.0
        self.workers: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._start_ticks = 0
        self.cpu_seconds = 0.0

    def _pids(self) -> list[int]:
        return [pid for leader in self.leaders for pid in _group_pids(leader)]

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            for leader in self.leaders:
                group = _group_pids(leader)
                workers = [p for p in group if p != leader] or group
                self.workers.update(workers)
                self.max_rss = max([self.max_rss, *(_rss_mb(p) for p in workers)])

    def _worker_pids(self) -> list[int]:
        pids = []
        for leader in self.leaders:
            group = _group_pids(leader)
            pids += [p for p in group if p != leader] if len(group) > 1 else group
        return pids

    def __enter__(self) -> _Sampler:
        self._start_pids = {p: _ticks(p) for p in self._pids()}
        self._start_ticks = sum(self._start_pids.values())
        self._start_backends = _backend_ticks(self.database)
        self._start_machine = _machine_ticks()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        hz = float(os.sysconf("SC_CLK_TCK"))
        ticks = sum(_ticks(p) for p in self._pids()) - self._start_ticks
        self.cpu_seconds = ticks / hz
        backends = _backend_ticks(self.database)
        used = sum(t - self._start_backends.get(p, 0) for p, t in backends.items())
        self.pg_cpu_seconds = used / hz
        busy, total = _machine_ticks()
        start_busy, start_total = self._start_machine
        if total > start_total:
            cores = os.cpu_count() or 1
            self.busy_cores = cores * (busy - start_busy) / (total - start_total)
        # A worker that started during the load (a restart) counts from zero.
        per_worker = [_ticks(p) - self._start_pids.get(p, 0) for p in self._worker_pids()]
        if sum(per_worker) > 0:
            self.top_worker_share = max(per_worker) / sum(per_worker)


def _copy(args: argparse.Namespace, **changes: Any) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def _load(
    wrk: str,
    servers: list[str],
    scripts: dict[str, Path],
    get_path: str,
    endpoint: common.Endpoint,
    phase: str,
    args: argparse.Namespace,
    duration: float,
) -> list[wrk_.WrkResult]:
    """One wrk per server, all started at once, the connections split between them."""
    share = _copy(args, connections=max(1, args.connections // len(servers)), threads=1)
    procs: list[procs_.Proc] = []
    try:
        for index, base in enumerate(servers):
            url = base + ("/api/v1/panels" if endpoint == "POST" else get_path)
            script = scripts["ours_post"] if endpoint == "POST" else scripts["ours_get"]
            # A unique accession prefix per wrk and load.
            label = [f"{phase.replace(' ', '')}{index}-{secrets.token_hex(3)}"]
            procs.append(
                wrk_.start_wrk(
                    wrk,
                    url=url,
                    script=script,
                    script_args=label if endpoint == "POST" else [],
                    args=share,
                    duration=duration,
                )
            )
        return [
            wrk_.finish_wrk(p, duration=duration, service="ours", endpoint=endpoint, phase=phase)
            for p in procs
        ]
    finally:  # a wrk not read yet (another failed first) is stopped too
        with common.signals_held():
            for proc in procs:
                procs_.stop_process(proc, grace=2.0)


def _combine(
    layout: str, endpoint: str, results: list[wrk_.WrkResult], sampler: _Sampler
) -> ScaleRun:
    requests = sum(r.requests for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for code, count in r.statuses.items():
            statuses[code] = statuses.get(code, 0) + count
    return ScaleRun(
        layout=layout,
        endpoint=endpoint,
        rps=round(sum(r.rps for r in results), 1),
        requests=requests,
        p50_ms=max(r.latency_ms["p50"] for r in results),
        p99_ms=max(r.latency_ms["p99"] for r in results),
        cpu_ms_per_request=round(1000 * sampler.cpu_seconds / requests, 2) if requests else 0.0,
        max_worker_rss_mb=round(sampler.max_rss, 1),
        workers_seen=len(sampler.workers),
        pg_cpu_ms_per_request=(
            round(1000 * sampler.pg_cpu_seconds / requests, 2) if requests else 0.0
        ),
        machine_busy_cores=round(sampler.busy_cores, 2),
        top_worker_share=round(sampler.top_worker_share, 2),
        statuses=statuses,
    )


def _start(
    layout: str,
    scratch: scratch_db.Scratch,
    args: argparse.Namespace,
    work: Path,
    stack: contextlib.ExitStack,
) -> tuple[list[procs_.Proc], list[str], str]:
    if layout == "2 replicas":
        started = [
            harness.start_ours(scratch, _copy(args, workers=1), work / f"r{i}", stack)
            for i in range(2)
        ]
    else:
        workers = 2 if layout == "2 workers" else 1
        started = [harness.start_ours(scratch, _copy(args, workers=workers), work, stack)]
    if layout == "2 workers":
        time.sleep(2.0)  # let the second worker finish importing before the sample requests
    return [s[0] for s in started], [s[1] for s in started], started[0][2]


def bench_scale(args: argparse.Namespace, wrk: str, work: Path) -> dict[str, Any]:
    """Run the three layouts on one scratch PostgreSQL database; the figures as a dict."""
    token = f"scale_{secrets.token_hex(3)}"
    collected_at = harness.our_collected_at()
    runs: list[ScaleRun] = []
    anomalies: list[str] = []
    with contextlib.ExitStack() as outer:
        scratch = scratch_db.make_scratch("postgresql", token, outer, args)
        for layout in LAYOUTS:
            with contextlib.ExitStack() as stack:
                (work / "r0").mkdir(exist_ok=True)
                (work / "r1").mkdir(exist_ok=True)
                procs, bases, api_key = _start(layout, scratch, args, work, stack)
                patient_id, panel_id, _sample = harness.sample_ours(
                    bases[0], f"{token}{len(runs)}", collected_at, api_key
                )
                scripts = wrk_.write_scripts(
                    work, args.floor_dir, patient_id, collected_at, api_key
                )
                get_path = f"/api/v1/panels/{panel_id}"
                leaders = [p.popen.pid for p in procs]
                database = scratch.ours_url.rsplit("/", 1)[-1].split("?")[0]
                for endpoint in common.ENDPOINTS:
                    if args.warmup > 0:
                        _load(wrk, bases, scripts, get_path, endpoint, "warmup", args, args.warmup)
                    scratch.settle()  # the last load's vacuum and checkpoint, not in this one
                    time.sleep(args.pause)
                    with _Sampler(leaders, database) as sampler:
                        results = _load(
                            wrk, bases, scripts, get_path, endpoint, "scale", args, args.duration
                        )
                    run = _combine(layout, endpoint, results, sampler)
                    runs.append(run)
                    common.log(
                        f"scale {layout:<10} {endpoint:<4} {run.rps:8.1f} req/s  "
                        f"p99 {run.p99_ms:.1f} ms  CPU {run.cpu_ms_per_request:.2f} ms/req  "
                        f"PG CPU {run.pg_cpu_ms_per_request:.2f} ms/req  "
                        f"busy cores {run.machine_busy_cores:.2f}  "
                        f"top worker {run.top_worker_share:.2f}  "
                        f"RSS/worker {run.max_worker_rss_mb:.0f} MB  statuses {run.statuses}"
                    )
                    bad = {
                        c: n
                        for c, n in run.statuses.items()
                        if c != str(common.EXPECTED_STATUS[endpoint])
                    }
                    if bad:
                        anomalies.append(f"{layout} {endpoint}: statuses {bad}")
                for proc in procs:
                    if proc.popen.poll() is not None:
                        anomalies.append(f"{layout}: a server exited with {proc.popen.returncode}")
    return {"runs": [vars(r) for r in runs], "rows": summarize(runs), "anomalies": anomalies}


def summarize(runs: list[ScaleRun]) -> list[dict[str, Any]]:
    """Per endpoint and layout: throughput and CPU per request relative to one worker."""
    base = {r.endpoint: r for r in runs if r.layout == "1 worker"}
    rows = []
    for r in runs:
        one = base.get(r.endpoint)
        speedup = r.rps / one.rps if one and one.rps else 0.0
        cpu = (
            r.cpu_ms_per_request / one.cpu_ms_per_request if one and one.cpu_ms_per_request else 0.0
        )
        checks = [r.max_worker_rss_mb <= RSS_LIMIT_MB]
        if r.layout != "1 worker":
            checks += [speedup >= SPEEDUP_TARGET, cpu <= 1 + CPU_TOLERANCE]
        rows.append(
            {
                "layout": r.layout,
                "endpoint": r.endpoint,
                "rps": r.rps,
                "speedup": round(speedup, 2),
                "cpu_ms_per_request": r.cpu_ms_per_request,
                "cpu_vs_one": round(cpu, 2),
                "p99_ms": r.p99_ms,
                "max_worker_rss_mb": r.max_worker_rss_mb,
                "pg_cpu_ms_per_request": r.pg_cpu_ms_per_request,
                "machine_busy_cores": r.machine_busy_cores,
                "top_worker_share": r.top_worker_share,
                "capacity_rps": capacity(r),
                "passed": all(checks),
            }
        )
    return rows


def capacity(run: ScaleRun) -> float:
    """The req/s the machine's cores could give if they did nothing but this layout's service
    and PostgreSQL work (wrk, the rest of the machine not counted): an upper bound."""
    per_request = run.cpu_ms_per_request + run.pg_cpu_ms_per_request
    return round(1000 * (os.cpu_count() or 1) / per_request, 1) if per_request else 0.0


def format_scale(result: dict[str, Any]) -> str:
    lines = [
        "Scale-out (PostgreSQL, ours only): targets 2 workers / 2 replicas >= "
        f"{SPEEDUP_TARGET}x one worker, CPU/request within {CPU_TOLERANCE:.0%}, "
        f"RSS <= {RSS_LIMIT_MB:.0f} MB per worker",
        f"{'layout':<11} {'endpoint':<8} {'req/s':>8} {'vs 1':>6} {'CPU ms/req':>10} "
        f"{'CPU vs 1':>8} {'p99 ms':>7} {'RSS MB':>7} {'PG ms/req':>9} {'busy':>5} "
        f"{'top wkr':>7} {'cap req/s':>9}  result",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['layout']:<11} {row['endpoint']:<8} {row['rps']:>8.1f} {row['speedup']:>5.2f}x "
            f"{row['cpu_ms_per_request']:>10.2f} {row['cpu_vs_one']:>7.2f}x {row['p99_ms']:>7.1f} "
            f"{row['max_worker_rss_mb']:>7.0f} {row.get('pg_cpu_ms_per_request', 0.0):>9.2f} "
            f"{row.get('machine_busy_cores', 0.0):>5.2f} {row.get('top_worker_share', 0.0):>7.2f} "
            f"{row.get('capacity_rps', 0.0):>9.0f}  {'PASS' if row['passed'] else 'MISS'}"
        )
    lines.append(f"anomalies: {'; '.join(result['anomalies']) or 'none'}")
    return "\n".join(lines)


def markdown_scale(result: dict[str, Any]) -> list[str]:
    lines = [
        "| layout | endpoint | req/s | vs 1 worker | CPU ms/request | CPU vs 1 | p99 ms | "
        "RSS/worker MB | PostgreSQL CPU ms/request | busy cores | top worker share | "
        "capacity req/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['layout']} | {row['endpoint']} | {row['rps']:.0f} | {row['speedup']:.2f}x | "
            f"{row['cpu_ms_per_request']:.2f} | {row['cpu_vs_one']:.2f}x | {row['p99_ms']:.0f} | "
            f"{row['max_worker_rss_mb']:.0f} | {row.get('pg_cpu_ms_per_request', 0.0):.2f} | "
            f"{row.get('machine_busy_cores', 0.0):.2f} | {row.get('top_worker_share', 0.0):.2f} | "
            f"{row.get('capacity_rps', 0.0):.0f} |"
        )
    return lines
