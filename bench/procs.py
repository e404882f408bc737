"""Prerequisites (wrk, psycopg) and the processes the harness starts, stops and watches."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import (
    HarnessError,
    log,
)

# --------------------------------------------------------------------------- prerequisites


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk is missing: installing it with `apt-get install -y wrk`")
    prefix: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        log("apt-get install failed; running `apt-get update` and trying again")
        subprocess.run([*prefix, "apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise HarnessError("wrk is still not on PATH after apt-get install")
    return found


def ensure_psycopg() -> None:
    if importlib.util.find_spec("psycopg") is not None:
        return
    log(f"psycopg is missing: pip install 'psycopg[binary]' into {sys.prefix}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "psycopg[binary]"], check=True)
    importlib.invalidate_caches()


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_process(
    name: str, cmd: Sequence[str], *, env: dict[str, str], cwd: Path, log_path: Path
) -> Proc:
    with log_path.open("wb") as out:
        popen = subprocess.Popen(
            list(cmd),
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: killpg reaches uvicorn's workers too
        )
    return Proc(name=name, popen=popen, log_path=log_path)


def stop_process(proc: Proc, *, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of the group."""
    pgid = proc.popen.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{proc.name} did not stop within {grace:.0f} s: SIGKILL")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)  # stragglers (workers) even if the parent has exited
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=5)


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat; None where there is none."""
    try:
        fields = Path("/proc/stat").read_text("ascii").splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def _process_ticks() -> dict[int, int]:
    """utime + stime (clock ticks) of every process, from /proc/<pid>/stat."""
    ticks: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text("utf-8", errors="replace")
                rest = raw[raw.rindex(")") + 2 :].split()
                ticks[int(entry.name)] = int(rest[11]) + int(rest[12])
            except (OSError, ValueError, IndexError):
                continue
    return ticks


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [w.decode("utf-8", errors="replace") for w in argv if w]
    command = " ".join(Path(w).name if i == 0 else w for i, w in enumerate(words))
    return f"pid {pid} {command[:70]}"


@dataclass
class Busy:
    percent: float  # of all CPUs
    top: list[str]  # the busiest processes meanwhile, "<% of one CPU> <pid> <command>"


def busy_cpu(seconds: float) -> Busy | None:
    """Sleep `seconds` and return how busy the machine was during the last three quarters of
    it (the first quarter lets the previous load's tail settle), and by which processes."""
    time.sleep(seconds / 4)
    before, procs_before = _cpu_times(), _process_ticks()
    window = seconds * 3 / 4
    time.sleep(window)
    after, procs_after = _cpu_times(), _process_ticks()
    if before is None or after is None or after[1] == before[1]:
        return None
    percent = round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)
    hz = os.sysconf("SC_CLK_TCK")
    deltas = sorted(
        ((t - procs_before[pid], pid) for pid, t in procs_after.items() if pid in procs_before),
        reverse=True,
    )
    # the processes that used at least a tenth of a CPU meanwhile
    top = [
        f"{100.0 * d / hz / window:.0f}% {_describe(pid)}"
        for d, pid in deltas[:3]
        if d / hz / window >= 0.1
    ]
    return Busy(percent=percent, top=top)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(proc: Proc, url: str, *, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise HarnessError(
                    f"{proc.name} exited with {proc.popen.returncode} before it was ready:\n"
                    f"{proc.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.2)
    raise HarnessError(f"{proc.name} not ready at {url} after {timeout:.0f} s:\n{proc.log_tail()}")
