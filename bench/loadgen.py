"""Bounded HTTP/1.1 load generators for ``bench/service.py``: a raw asyncio client and a ``wrk`` driver.

The asyncio client writes pre-built request bytes over ``asyncio.open_connection``
with keep-alive and reads each answer by its status line and ``Content-Length``
(``Transfer-Encoding: chunked`` is read too; no HTTP library in the hot loop).
Three loops, each bounded in request count and in time, each stopping by itself:

* :func:`sequential`: one request after the other on one connection (unloaded latency);
* :func:`open_loop`: requests sent on a fixed schedule whatever the answers, on a
  pool of connections, latency measured from the *scheduled* send time (so a
  slow answer delays no later measurement: no coordinated omission);
* :func:`closed_loop`: C connections, each sending its next request when the
  previous answer arrived, for a fixed duration (throughput).

:func:`run_wrk` runs ``wrk`` (a C load generator, one thread) for the closed
loop when it is installed; a Lua script plays the same request sequence.

Only loopback targets are accepted.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LOOPBACK = ("127.0.0.1", "::1", "localhost")
REQUEST_TIMEOUT_S = 10.0
IDLE_REUSE_S = 4.0  # uvicorn closes a keep-alive connection idle for 5 s: older idle connections are not reused


def _check_host(host: str) -> None:
    if host not in LOOPBACK:
        raise ValueError(f"the load generator targets loopback only, not {host!r}")


def get_request(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


def post_json_request(host: str, port: int, path: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.closed = False
        self.last_used = time.perf_counter()

    def stale(self) -> bool:
        """Closed, closed by the peer, or idle long enough that the server may be closing it."""
        return self.closed or self.reader.at_eof() or time.perf_counter() - self.last_used > IDLE_REUSE_S

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        _check_host(host)
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request; (status, body). Raises ConnectionError when the peer closes."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ConnectionError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            body = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
            data = bytes(body)
        else:
            data = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        self.last_used = time.perf_counter()
        return status, data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


@dataclass
class Result:
    """Latencies (s) of the answered requests, status counts and failures of one loop."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # connection errors and timeouts (no answer)
    elapsed_s: float = 0.0

    def add(self, status: int, latency: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency)

    @property
    def non_2xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not 200 <= s < 300)

    def summary(self) -> dict[str, Any]:
        ms = np.asarray(self.latencies, dtype=np.float64) * 1e3
        pct = np.percentile(ms, [50, 95, 99]) if len(ms) else [float("nan")] * 3
        n = len(self.latencies)
        return {
            "requests": n,
            "rps": round(n / self.elapsed_s, 1) if self.elapsed_s > 0 else float("nan"),
            "p50_ms": round(float(pct[0]), 3),
            "p95_ms": round(float(pct[1]), 3),
            "p99_ms": round(float(pct[2]), 3),
            "max_ms": round(float(ms.max()), 3) if n else float("nan"),
            "non_2xx": self.non_2xx,
            "failures": self.failures,
            "errors": self.non_2xx + self.failures,
            "seconds": round(self.elapsed_s, 3),
        }


async def _timed(conn: Conn | None, host: str, port: int, raw: bytes, res: Result) -> Conn | None:
    """:func:`_one`, its latency or failure counted in ``res``; returns the connection to reuse."""
    t = time.perf_counter()
    conn, status = await _one(conn, host, port, raw)
    if status is None:
        res.failures += 1
    else:
        res.add(status, time.perf_counter() - t)
    return conn


async def _one(conn: Conn | None, host: str, port: int, raw: bytes) -> tuple[Conn | None, int | None]:
    """One request on conn (opened or reopened when needed); (conn or None when broken, status or None)."""
    try:
        if conn is not None and conn.stale():
            conn.close()
            conn = None
        if conn is None:
            conn = await asyncio.wait_for(Conn.open(host, port), REQUEST_TIMEOUT_S)
        status, _ = await asyncio.wait_for(conn.request(raw), REQUEST_TIMEOUT_S)
        return conn, status
    except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        if conn is not None:
            conn.close()
        return None, None


async def sequential(host: str, port: int, requests: Sequence[bytes], max_s: float, conn: Conn | None = None) -> Result:
    """len(requests) requests, one after the other on one keep-alive connection, stopping after max_s.

    On ``conn`` when given (left open, unless it broke), else on a connection of its own (closed at the end).
    """
    res, own = Result(), conn is None
    t0 = time.perf_counter()
    deadline = t0 + max_s
    for raw in requests:
        if time.perf_counter() > deadline:
            break
        conn = await _timed(conn, host, port, raw, res)
    res.elapsed_s = time.perf_counter() - t0
    if own and conn is not None:
        conn.close()
    return res


async def parallel_pass(
    host: str, port: int, streams: Sequence[Sequence[bytes]], max_s: float, conns: Sequence[Conn | None] = ()
) -> Result:
    """Each stream of requests sequentially on its own connection (``conns[k]`` when given), concurrently."""
    conns = list(conns) + [None] * (len(streams) - len(conns))
    results = await asyncio.gather(*(sequential(host, port, s, max_s, c) for s, c in zip(streams, conns, strict=True)))
    out = Result(elapsed_s=max(r.elapsed_s for r in results) if results else 0.0)
    for r in results:
        out.latencies += r.latencies
        out.failures += r.failures
        for s, n in r.statuses.items():
            out.statuses[s] = out.statuses.get(s, 0) + n
    return out


async def open_loop(
    host: str, port: int, requests: Sequence[bytes], rate: float, duration_s: float, max_conns: int = 64
) -> Result:
    """rate × duration_s requests sent on schedule (i / rate after the start), each on an idle pooled connection.

    Latency runs from the scheduled send time. At most ``max_conns`` requests are in flight; a request that
    finds none free waits (and its wait counts in its latency). Requests still unanswered
    ``REQUEST_TIMEOUT_S`` after the last send count as failures.
    """
    n = max(1, round(rate * duration_s))
    res = Result()
    idle: list[Conn] = []
    slots = asyncio.Semaphore(max_conns)
    for _ in range(min(4, max_conns)):  # a few connections up front: the first sends do not pay the handshake
        try:
            idle.append(await asyncio.wait_for(Conn.open(host, port), REQUEST_TIMEOUT_S))
        except (TimeoutError, OSError):
            break

    async def fire(raw: bytes, scheduled: float) -> None:
        async with slots:
            conn, status = await _one(idle.pop() if idle else None, host, port, raw)
            if status is None:
                res.failures += 1
            else:
                res.add(status, time.perf_counter() - scheduled)
            if conn is not None:
                idle.append(conn)

    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter() + 0.01
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(requests[i % len(requests)], scheduled)))
    _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 1.0)
    for t in pending:
        t.cancel()
    res.failures += len(pending)
    res.elapsed_s = time.perf_counter() - t0
    for c in idle:
        c.close()
    return res


async def closed_loop(host: str, port: int, requests: Sequence[bytes], concurrency: int, duration_s: float) -> Result:
    """concurrency connections, each sending its next request on the previous answer, for duration_s."""
    res = Result()
    t0 = time.perf_counter()
    deadline = t0 + duration_s
    counter = [0]

    async def worker(k: int) -> None:
        conn: Conn | None = None
        while time.perf_counter() < deadline:
            raw = requests[counter[0] % len(requests)]
            counter[0] += 1
            conn = await _timed(conn, host, port, raw, res)
        if conn is not None:
            conn.close()

    await asyncio.wait_for(asyncio.gather(*(worker(k) for k in range(concurrency))), duration_s + 2 * REQUEST_TIMEOUT_S)
    res.elapsed_s = time.perf_counter() - t0
    return res


def run(coro: Any) -> Any:
    """Run a coroutine on uvloop when installed (less client CPU), else asyncio's loop."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# --- wrk -----------------------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _lua_str(s: str) -> str:
    level = 0
    while f"]{'=' * level}]" in s:
        level += 1
    eq = "=" * level
    return f"[{eq}[{s}]{eq}]"


def wrk_script(method: str, bodies: Sequence[str], sequence: Sequence[int]) -> str:
    """A wrk Lua script that plays bodies[sequence[i]] in turn (POST with a JSON body), or plain GETs."""
    if method == "GET":
        return 'wrk.method = "GET"\n'
    body_list = ",\n".join(_lua_str(b) for b in bodies)
    seq = ",".join(str(i + 1) for i in sequence)
    return f"""wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{
{body_list}
}}
local seq = {{{seq}}}
local reqs = {{}}
local n = #seq
local i = 0
init = function(args)
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format(nil, nil, nil, b)
  end
end
request = function()
  i = i % n + 1
  return reqs[seq[i]]
end
"""


def parse_wrk(text: str) -> dict[str, Any]:
    """Throughput, p50/p99 (from ``--latency``), non-2xx answers and socket errors from wrk's summary."""
    out: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise ValueError("no Requests/sec in wrk's output: " + text.strip().replace("\n", " | ")[-300:])
    out["rps"] = round(float(m.group(1)), 1)
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)\s*$", text, re.M)
        if m:
            out[f"p{pct}_ms"] = round(_ms(m.group(1)), 3)
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if m:
        out["requests"] = int(m.group(1))
        out["seconds"] = round(_ms(m.group(2) + m.group(3)) / 1e3, 3)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["failures"] = sum(int(g) for g in m.groups()) if m else 0
    out["errors"] = out["non_2xx"] + out["failures"]
    return out


def run_wrk(
    wrk: str, url: str, method: str, bodies: Sequence[str], sequence: Sequence[int], concurrency: int, duration_s: float
) -> dict[str, Any]:
    """``wrk -t1 -c C -d D --latency`` with the request script; its summary figures."""
    host = re.match(r"https?://\[?([^]/:]+)", url)
    _check_host(host.group(1) if host else url)
    with tempfile.TemporaryDirectory(prefix="aidg-wrk-") as tmp:
        script = Path(tmp) / "requests.lua"
        script.write_text(wrk_script(method, bodies, sequence))
        cmd = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s", "--latency",
               "-s", str(script), url]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 30)
    if p.returncode != 0:
        raise RuntimeError(f"wrk exited with {p.returncode}: {(p.stderr or p.stdout).strip()[-300:]}")
    return parse_wrk(p.stdout)
