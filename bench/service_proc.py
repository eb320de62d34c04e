"""The service under benchmark: ``aidg serve`` started on a free port, its worker processes, their connections
and their cache counters (``bench/service.py`` drives the load)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import loadgen  # noqa: E402  (bench/loadgen.py, next to this file)

HOST = "127.0.0.1"
BACKENDS = {
    "embedded": {},
    "redis_postgres": {
        "AIDG_REDIS_URL": "redis://127.0.0.1:6379/0",
        "AIDG_DATABASE_URL": "postgresql+psycopg://root@127.0.0.1:5432/test",
    },
}
BACKEND_VARS = ("AIDG_REDIS_URL", "AIDG_DATABASE_URL")


class BenchError(Exception):
    """A problem the user can fix (missing model, data, backend): one line, exit code 2."""


def log(msg: str) -> None:
    print(f"[bench/service] {msg}", file=sys.stderr, flush=True)


def emit(report: dict[str, Any], as_json: bool) -> None:
    """A bench's report on stdout: one JSON object (``--json``), else one ``key value`` line per figure."""
    if as_json:
        print(json.dumps(report))
        return
    width = max((len(k) for k in report), default=0) + 2
    for k, v in report.items():
        print(f"{k:<{width}}{v}")


# --- inputs --------------------------------------------------------------------------------------------------------


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def backend_env(name: str) -> dict[str, str | None]:
    """The environment changes for one backend set (None: remove the variable)."""
    if name == "embedded":
        return dict.fromkeys(BACKEND_VARS)
    env: dict[str, str | None] = {k: os.environ.get(k) or v for k, v in BACKENDS[name].items()}
    for var in BACKEND_VARS:
        u = urlparse(str(env[var]).replace("postgresql+psycopg", "postgresql"))
        host, port = u.hostname or HOST, u.port or (6379 if u.scheme.startswith("redis") else 5432)
        if not _port_open(host, port):
            raise BenchError(f"{var}={env[var]}: nothing answers on {host}:{port}")
    return env


# --- the service ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _last_error(log_path: Path) -> str:
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower():
            return re.sub(r"^error:\s*", "", ln)
    return lines[-1] if lines else "(no output)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the service's process group (master and workers), SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind by a master that exited


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return pids


def _wait_idle(pgid: int, deadline: float) -> None:
    """Wait until every process of the service is idle (< 10 % of a core over 0.5 s): all workers loaded."""
    if not Path("/proc").is_dir():
        time.sleep(3.0)
        return
    while time.monotonic() < deadline:
        before = {p: _cpu_seconds(p) for p in _group_pids(pgid)}
        time.sleep(0.5)
        busy = [p for p, c in before.items() if c is not None and (_cpu_seconds(p) or c) - c > 0.05]
        if not busy:
            return


async def _server_timings(port: int, reqs: list[bytes], timeout: float = 5.0) -> dict[str, dict[str, float]]:
    """The service's own account of where a generate's time goes (its ``timing_ms``), median and p99 per part."""
    conn = await asyncio.wait_for(loadgen.Conn.open(HOST, port), timeout)
    parts: dict[str, list[float]] = {}
    try:
        for raw in reqs:
            status, body = await asyncio.wait_for(conn.request(raw), timeout)
            if status == 200:
                for k, v in json.loads(body)["timing_ms"].items():
                    parts.setdefault(k, []).append(float(v))
    finally:
        conn.close()
    return {k: {"p50": round(float(np.percentile(v, 50)), 3), "p99": round(float(np.percentile(v, 99)), 3)}
            for k, v in parts.items()}  # fmt: skip


async def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = await asyncio.wait_for(loadgen.Conn.open(HOST, port), timeout)
    try:
        return await asyncio.wait_for(conn.request(loadgen.get_request(HOST, port, path)), timeout)
    finally:
        conn.close()


@contextmanager
def service(
    home: Path,
    data: Path,
    workers: int,
    env_changes: dict[str, str | None],
    ready_timeout_s: float,
    timing: dict[str, float] | None = None,
    extra_args: Sequence[str] = (),
    replicas: int = 1,
) -> Iterator[tuple[int, int]]:
    """``aidg serve`` on a free port, ready; yields (port, its process group); always stopped.

    ``timing`` receives ``ready_s``: process start to the first ``/readyz`` 200 (the cold start). ``replicas`` > 1:
    that many ``aidg serve --join`` processes behind the port, under one shell in one process group (Redis needed)."""
    env = dict(os.environ)
    env["AIDG_HOME"] = str(home)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    port = free_port()
    aidg = Path(sys.executable).with_name("aidg")
    cmd = [str(aidg)] if aidg.exists() else [sys.executable, "-c", "from aidg.cli import main; main()"]
    cmd += ["serve", "--host", HOST, "--port", str(port), "--workers", str(workers), "--data", str(data), *extra_args]
    with tempfile.TemporaryDirectory(prefix="aidg-bench-service-") as tmp:
        log_path = Path(tmp) / "serve.log"
        if replicas > 1:  # every replica joins the free port (SO_REUSEPORT), all in one process group; one exits: all
            one = shlex.join([*cmd, "--join"])
            cmd = ["bash", "-c", " & ".join([one] * replicas) + " & wait -n; exit 1"]
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            t0 = time.monotonic()
            deadline = t0 + ready_timeout_s
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"the service exited with code {proc.returncode}: {_last_error(log_path)}")
                if time.monotonic() > deadline:
                    raise BenchError(f"the service was not ready within {ready_timeout_s:g} s: "
                                     f"{_last_error(log_path)}")  # fmt: skip
                try:
                    status, _ = loadgen.run(_get(port, "/readyz"))
                    if status == 200:
                        if timing is not None:
                            timing["ready_s"] = time.monotonic() - t0
                        break
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    pass
                time.sleep(0.25)
            _wait_idle(proc.pid, deadline)
            if proc.poll() is not None:
                raise BenchError(f"a replica exited with code {proc.returncode}: {_last_error(log_path)}")
            log(f"service ready on port {port} after {time.monotonic() - t0:.1f} s "
                f"({replicas} replica{'s' if replicas > 1 else ''} × {workers} workers)")  # fmt: skip
            yield port, proc.pid
        finally:
            _stop(proc)


# --- measurements --------------------------------------------------------------------------------------------------


def _conn_pid(pgid: int, server_port: int, client_port: int) -> int | None:
    """The service process holding the server side of our connection from client_port (Linux /proc), or None."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if (
                len(f) > 9
                and int(f[1].rsplit(":", 1)[1], 16) == server_port
                and int(f[2].rsplit(":", 1)[1], 16) == client_port
            ):
                inode = f[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in _group_pids(pgid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
    return None


async def worker_conns(
    port: int, pgid: int, workers: int, marker: bytes, attempts: int = 60
) -> dict[int, loadgen.Conn]:
    """One keep-alive connection to each worker process (as many as found in ``attempts`` tries): pid → conn.

    Which worker accepts a new connection is up to the kernel and the workers' event loops; while every worker
    found so far is busy with a ``marker`` request (its handler holds its event loop), a new connection goes
    to another one. Without /proc (no way to tell workers apart): one connection, under pid -1.
    """
    found: dict[int, loadgen.Conn] = {}
    healthz = loadgen.get_request(HOST, port, "/healthz")
    for _ in range(attempts):
        if len(found) >= workers:
            break
        busy = {pid: asyncio.create_task(c.request(marker)) for pid, c in found.items()}
        if busy:
            await asyncio.sleep(0.001)
        conn: loadgen.Conn | None = None
        pid: int | None = None
        try:
            conn = await asyncio.wait_for(loadgen.Conn.open(HOST, port), 5.0)
            await asyncio.wait_for(conn.request(healthz), 5.0)
            pid = _conn_pid(pgid, port, conn.writer.get_extra_info("sockname")[1])
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        for known, task in busy.items():
            try:
                await asyncio.wait_for(task, 10.0)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                found.pop(known).close()
        if conn is None:
            continue
        if pid is None and not found:  # no way to tell the workers apart: one connection will do
            found[-1] = conn
            break
        if pid is not None and pid not in found:
            found[pid] = conn
        else:
            conn.close()
    return found


def _cache_counts(text: str) -> tuple[float, float] | None:
    vals = [
        re.search(rf"^{name}\s+(\S+)$", text, re.M) for name in ("aidg_cache_hits_total", "aidg_cache_misses_total")
    ]
    return (float(vals[0].group(1)), float(vals[1].group(1))) if vals[0] and vals[1] else None


def scrape_cache(port: int, pgid: int, workers: int, marker: bytes) -> dict[str, Any]:
    """Cache hits/misses summed over the workers: /metrics scraped on a connection to each worker process."""

    async def scrape() -> list[tuple[float, float] | None]:
        conns = await worker_conns(port, pgid, workers, marker)
        try:
            metrics = loadgen.get_request(HOST, port, "/metrics")
            out = []
            for c in conns.values():
                status, body = await asyncio.wait_for(c.request(metrics), 5.0)
                out.append(_cache_counts(body.decode()) if status == 200 else None)
            return out
        finally:
            for c in conns.values():
                c.close()

    seen = [x for x in loadgen.run(scrape()) if x is not None]
    hits, misses = sum(h for h, _ in seen), sum(m for _, m in seen)
    return {
        "service_cache_hits": int(hits),
        "service_cache_misses": int(misses),
        "service_cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        "service_cache_workers_seen": len(seen),
    }
