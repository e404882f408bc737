"""wrk: the Lua scripts of each load, running it, and reading its result."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    ANALYTES,
    EXPECTED_STATUS,
    OUR_SOURCE,
    Endpoint,
    HarnessError,
    Service,
    signals_held,
)
from procs import (
    Proc,
    stop_process,
)

# --------------------------------------------------------------------------- wrk


_REPORTER_LUA = """
-- Appended to every script so each load costs wrk the same: count statuses per thread and
-- print one machine-readable line at the end.
local bench_threads = {}
function setup(thread)
  table.insert(bench_threads, thread)
  thread:set("tid", #bench_threads)
end
statuses = {}
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end
function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(bench_threads) do
    for k, v in pairs(t:get("statuses") or {}) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d},"statuses":{%s}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, table.concat(parts, ",")))
end
"""


def _lua_long_string(text: str) -> str:
    level = "=" * 4
    if f"]{level}]" in text:
        raise ValueError("body contains the Lua long-string terminator")
    return f"[{level}[{text}]{level}]"


def our_panel_body(patient_id: str, accession: str, collected_at: str) -> dict[str, Any]:
    return {
        "patient": {"id": patient_id},
        "source": OUR_SOURCE,
        "accession": accession,
        "collected_at": collected_at,
        "results": [
            {"analyte": code, "value": value, "unit": unit} for code, value, unit in ANALYTES
        ],
    }


def write_scripts(
    folder: Path, floor_dir: Path, patient_id: str, collected_at: str, api_key: str
) -> dict[str, Path]:
    """wrk scripts: the floor's POST (post_panel.lua verbatim), ours with a unique accession
    and a unique Idempotency-Key per request (prefix from the script argument, wrk thread
    number, counter) and our API key, and the GETs (ours authenticated)."""
    floor_post = (floor_dir / "post_panel.lua").read_text("utf-8")
    marker = "@@ACCESSION@@"
    template = json.dumps(
        our_panel_body(patient_id, marker, collected_at), separators=(",", ":")
    ).replace("%", "%%")
    template = template.replace(marker, "%s-%d-%d")
    ours_post = f"""
wrk.method = "POST"
local body_format = {_lua_long_string(template)}
local prefix = "bench"
local counter = 0
function init(args)
  if args[1] then prefix = args[1] end
end
function request()
  counter = counter + 1
  local headers = {{
    ["Content-Type"] = "application/json",
    ["X-API-Key"] = "{api_key}",
    ["Idempotency-Key"] = string.format("%s-%d-%d", prefix, tid or 0, counter),
  }}
  return wrk.format(nil, nil, headers, string.format(body_format, prefix, tid or 0, counter))
end
"""
    ours_get = f"""
wrk.headers["X-API-Key"] = "{api_key}"
"""
    scripts = {
        "floor_post": floor_post + "\n" + _REPORTER_LUA,
        "ours_post": ours_post + _REPORTER_LUA,
        "get": _REPORTER_LUA,
        "ours_get": ours_get + _REPORTER_LUA,
    }
    paths: dict[str, Path] = {}
    for name, text in scripts.items():
        path = folder / f"{name}.lua"
        path.write_text(text, "utf-8")
        paths[name] = path
    return paths


@dataclass
class WrkResult:
    service: Service
    endpoint: Endpoint
    phase: str  # "warmup" or "round N"
    rps: float
    requests: int
    duration_s: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    statuses: dict[str, int]
    latency_ms: dict[str, float]
    unexpected_statuses: int = 0
    # CPU in use on the machine (%) just before this load, while both services were idle:
    # anything well above 0 is someone else's work competing with the benchmark.
    busy_cpu_before: float | None = None
    busy_top: list[str] = field(default_factory=list)

    @property
    def socket_error_total(self) -> int:
        return sum(self.socket_errors.values())


def run_wrk(
    wrk: str,
    *,
    url: str,
    script: Path,
    script_args: Sequence[str],
    args: argparse.Namespace,
    duration: float,
    service: Service,
    endpoint: Endpoint,
    phase: str,
) -> WrkResult:
    proc = start_wrk(
        wrk, url=url, script=script, script_args=script_args, args=args, duration=duration
    )
    return finish_wrk(proc, duration=duration, service=service, endpoint=endpoint, phase=phase)


def start_wrk(
    wrk: str,
    *,
    url: str,
    script: Path,
    script_args: Sequence[str],
    args: argparse.Namespace,
    duration: float,
) -> Proc:
    """wrk started in its own session (several may run at once); finish_wrk reads it."""
    cmd = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(duration))}s",
        "-s",
        str(script),
        url,
    ]
    if script_args:
        cmd += ["--", *script_args]
    popen = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Proc(name=" ".join(cmd), popen=popen, log_path=Path(os.devnull))


def finish_wrk(
    proc: Proc, *, duration: float, service: Service, endpoint: Endpoint, phase: str
) -> WrkResult:
    try:
        out_bytes, _ = proc.popen.communicate(timeout=duration + 60)
    finally:  # also on Ctrl-C: wrk runs in its own session and would not see the SIGINT
        with signals_held():
            stop_process(proc, grace=2.0)
    out = out_bytes.decode("utf-8", errors="replace")
    if proc.popen.returncode != 0:
        raise HarnessError(f"wrk failed ({proc.popen.returncode}): {proc.name}\n{out}")
    return parse_wrk(out, service=service, endpoint=endpoint, phase=phase)


def parse_wrk(out: str, *, service: Service, endpoint: Endpoint, phase: str) -> WrkResult:
    data: dict[str, Any] | None = None
    rps: float | None = None
    non_2xx = 0
    for line in out.splitlines():
        stripped = line.strip()
        if stripped.startswith("BENCH_RESULT "):
            data = json.loads(stripped.removeprefix("BENCH_RESULT "))
        elif stripped.startswith("Requests/sec:"):
            rps = float(stripped.split(":", 1)[1])
        elif stripped.startswith("Non-2xx or 3xx responses:"):
            non_2xx = int(stripped.split(":", 1)[1])
    if data is None:
        raise HarnessError(f"no BENCH_RESULT line in wrk's output:\n{out}")
    duration_s = data["duration_us"] / 1e6
    requests = int(data["requests"])
    errors = {k: int(v) for k, v in data["errors"].items() if k != "status"}
    statuses = {str(k): int(v) for k, v in data["statuses"].items()}
    expected = str(EXPECTED_STATUS[endpoint])
    latency = {k: round(float(v) / 1000, 2) for k, v in data["latency_us"].items()}
    return WrkResult(
        service=service,
        endpoint=endpoint,
        phase=phase,
        rps=rps if rps is not None else requests / duration_s,
        requests=requests,
        duration_s=round(duration_s, 3),
        non_2xx_3xx=non_2xx,
        socket_errors=errors,
        statuses=statuses,
        latency_ms=latency,
        unexpected_statuses=sum(v for k, v in statuses.items() if k != expected),
    )
