"""Soak: ``--minutes`` (30) of mixed traffic against ``aidg serve`` on loopback; memory, p95 drift and errors.

Starts ``aidg serve`` (``--workers`` processes, Redis + PostgreSQL when they answer on 127.0.0.1, else the
embedded backends) and, with Redis, an ``aidg stream-worker`` beside it, both as subprocesses stopped by
PID at the end. Two API keys (an admin and an ``mm`` key granted a tenth of the merchants) send, at a steady
``--rate`` (requests per second, open loop, shared by ``--clients`` threads), a mix of: generate (45 %),
feedback on a recent decision (approval / override with edited terms / conversion, 25 %), explanation (7 %),
what-if explanation (3 %), merchant profile (7 %), recent decisions (5 %), ``/readyz`` (4 %), ``/metrics``
(2 %), ``/v1/monitor`` (2 %).

Every 5 s the resident memory (RSS) of the service's process group and of the stream worker is sampled.
After ``--warm`` minutes of warm-up (caches filling, first compilations), the figures compare the first
``--window`` minutes with the last ``--window`` minutes:

* ``memory_growth``: median RSS (service + worker) of the last window ÷ that of the first − 1 (≤ 0.10);
* ``p95_drift``: generate's p95 latency in the last window ÷ the first − 1 (≤ 0.20), with every op's p95
  and generate's own account of its time (``server_p95_*``: its ``timing_ms.total``, without the queueing);
* ``errors``: 5xx, transport failures and any status other than the op's expected one (0).

``passed`` says whether all three hold; the exit code is 1 when not. A plot (``--plot``, default
``soak.png`` in the current folder) shows RSS and per-minute p95 over the run.

    make soak                                                   # 30 min on a tiny world trained in a temp home
    .venv/bin/python bench/soak.py --minutes 2 --warm 0.5 --window 0.5 --json   # a short check
    .venv/bin/python bench/soak.py --home H --data W --json     # a trained home and its world
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from service_proc import BenchError, _group_pids, _stop, backend_env, emit, log, service  # noqa: E402

from service import merchant_ids  # noqa: E402

ADMIN, MM = "soak-admin-key", "soak-mm-key"
MIX = (("generate", 45), ("feedback", 25), ("explanation", 7), ("what_if", 3), ("profile", 7), ("decisions", 5),
       ("readyz", 4), ("metrics", 2), ("monitor", 2))  # fmt: skip
LIMITS = {"memory_growth": 0.10, "p95_drift": 0.20}


@dataclass
class Sample:
    t: float
    service_mb: float
    worker_mb: float


@dataclass
class Run:
    calls: list[tuple[float, str, int, float]] = field(default_factory=list)  # (t, op, status, ms)
    server_ms: list[tuple[float, float]] = field(default_factory=list)  # (t, generate's own timing_ms.total)
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the first few unexpected answers, for the report
    decisions: list[tuple[str, str]] = field(default_factory=list)  # (decision_id, merchant_id)


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


def _request(
    rng: random.Random, op: str, run: Run, merchants: list[str], mine: list[str]
) -> tuple[str, str, str, Any, str]:
    """(op, method, path, json body, key) of one request of ``op`` (a generate while no decision exists yet)."""
    recent = run.decisions[-500:]
    if op in ("feedback", "explanation", "what_if") and not recent:
        op = "generate"
    if op == "generate":
        own = rng.random() < 0.2
        body: dict[str, Any] = {"merchant_id": rng.choice(mine if own else merchants)}
        if rng.random() < 0.2:
            body["n_variants"] = rng.randint(3, 12)
        return op, "POST", "/v1/deals/generate", body, MM if own else ADMIN
    if op == "feedback":
        decision_id, _ = rng.choice(recent)
        kind = rng.choice(("approval", "override", "conversion"))
        ev: dict[str, Any] = {"event_id": uuid.uuid4().hex, "decision_id": decision_id, "kind": kind}
        if kind == "approval":
            ev["approved"] = rng.random() < 0.6
        elif kind == "override":
            ev["edited_terms"] = {"discount_pct": round(rng.uniform(0.1, 0.5), 2)}
        else:
            ev["value"] = round(rng.uniform(0, 0.3), 4)
        return op, "POST", "/v1/feedback", ev, ADMIN
    if op in ("explanation", "what_if"):
        decision_id, _ = rng.choice(recent)
        path = f"/v1/decisions/{decision_id}/explanation"
        if op == "what_if":
            path += f"?variant=0&term=discount_pct&value={rng.choice((0.1, 0.2, 0.3, 0.4))}"
        return op, "GET", path, None, ADMIN
    if op == "profile":
        return op, "GET", f"/v1/merchants/{rng.choice(merchants)}/profile", None, ADMIN
    if op == "decisions":
        return op, "GET", "/v1/decisions?limit=20", None, ADMIN
    return op, "GET", {"readyz": "/readyz", "metrics": "/metrics", "monitor": "/v1/monitor"}[op], None, ADMIN


def _drive(url: str, merchants: list[str], mine: list[str], rate: float, until: float, run: Run, seed: int) -> None:
    rng = random.Random(seed)
    ops, weights = zip(*MIX, strict=True)
    nxt = time.monotonic()
    with httpx.Client(base_url=url, timeout=30.0) as http:
        while (now := time.monotonic()) < until:
            if now < nxt:
                time.sleep(nxt - now)
            t0 = nxt  # open loop: latency from the scheduled send time
            nxt += rng.expovariate(rate)
            op = rng.choices(ops, weights)[0]
            op, method, path, body, key = _request(rng, op, run, merchants, mine)
            try:
                r = http.request(method, path, json=body, headers={"X-API-Key": key})
                status = r.status_code
            except httpx.HTTPError as exc:
                status, r = 599, None
                if len(run.failures) < 10:
                    run.failures.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            ms = (time.monotonic() - t0) * 1e3
            run.calls.append((t0, op, status, ms))
            if r is not None and status == 200 and op == "generate":
                d = r.json()
                run.server_ms.append((t0, float(d.get("timing_ms", {}).get("total", 0.0))))
                if d.get("decision_id"):
                    run.decisions.append((d["decision_id"], d["merchant_id"]))
            elif status != 200 and len(run.failures) < 10 and r is not None:
                run.failures.append(f"{method} {path}: {status} {r.text[:200]}")


def _sampler(pgid: int, worker: subprocess.Popen[bytes] | None, until: float, run: Run) -> None:
    while time.monotonic() < until:
        w = _rss_mb([worker.pid]) if worker is not None and worker.poll() is None else 0.0
        run.samples.append(Sample(time.monotonic(), _rss_mb(_group_pids(pgid)), w))
        time.sleep(5.0)


@contextmanager
def _stream_worker(home: Path, env_changes: dict[str, str | None]) -> Iterator[subprocess.Popen[bytes] | None]:
    """``aidg stream-worker`` beside a service on Redis (the embedded service runs its own inline)."""
    if not env_changes.get("AIDG_REDIS_URL"):
        yield None
        return
    env = {**os.environ, "AIDG_HOME": str(home), **{k: v for k, v in env_changes.items() if v is not None}}
    aidg = Path(sys.executable).with_name("aidg")
    proc = subprocess.Popen([str(aidg), "stream-worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        _stop(proc)


def _p95(ms: list[float]) -> float | None:
    return round(float(np.percentile(ms, 95)), 2) if ms else None


def _window(run: Run, lo: float, hi: float) -> dict[str, Any]:
    calls = [c for c in run.calls if lo <= c[0] < hi]
    rss = [s.service_mb + s.worker_mb for s in run.samples if lo <= s.t < hi]
    by_op: dict[str, list[float]] = {}
    for _, op, status, ms in calls:
        if status == 200:
            by_op.setdefault(op, []).append(ms)
    return {
        "requests": len(calls),
        "rss_mb": round(float(np.median(rss)), 1) if rss else None,
        "p95_ms": {op: _p95(v) for op, v in sorted(by_op.items())},
    }


def figures(run: Run, t0: float, warm: float, window: float, minutes: float, worker_alive: bool) -> dict[str, Any]:
    """The soak's figures and verdict from what was recorded (times in ``time.monotonic`` seconds from ``t0``)."""
    until = t0 + minutes * 60
    first = _window(run, t0 + warm * 60, t0 + (warm + window) * 60)
    last = _window(run, until - window * 60, until)
    g1, g2 = first["p95_ms"].get("generate"), last["p95_ms"].get("generate")
    lo, hi = (t0 + warm * 60, t0 + (warm + window) * 60), (until - window * 60, until)
    s1, s2 = (_p95([ms for t, ms in run.server_ms if a <= t < b]) for a, b in (lo, hi))
    growth = round(last["rss_mb"] / first["rss_mb"] - 1, 4) if first["rss_mb"] and last["rss_mb"] else None
    drift = round(g2 / g1 - 1, 4) if g1 and g2 else None
    errors = sum(1 for c in run.calls if c[2] != 200)
    minute: dict[int, list[float]] = {}
    for t, op, status, ms in run.calls:
        if op == "generate" and status == 200:
            minute.setdefault(int((t - t0) // 60), []).append(ms)
    out = {
        "requests": len(run.calls), "errors": errors, "first_errors": run.failures[:5],
        "decisions": len(run.decisions), "memory_start_mb": first["rss_mb"], "memory_end_mb": last["rss_mb"],
        "memory_growth": growth, "p95_first_ms": g1, "p95_last_ms": g2, "p95_drift": drift,
        "server_p95_first_ms": s1, "server_p95_last_ms": s2,
        "p95_by_op_first_ms": first["p95_ms"], "p95_by_op_last_ms": last["p95_ms"],
        "ops": {op: sum(1 for c in run.calls if c[1] == op) for op, _ in MIX},
        "stream_worker_alive": worker_alive,
        "p95_per_minute_ms": [_p95(minute[k]) for k in sorted(minute)],
    }  # fmt: skip
    out["passed"] = bool(
        errors == 0 and worker_alive and growth is not None and growth <= LIMITS["memory_growth"]
        and drift is not None and drift <= LIMITS["p95_drift"]
    )  # fmt: skip
    return out


def soak(
    home: Path, data: Path, *, minutes: float = 30, warm: float = 3, window: float = 5, rate: float = 10,
    workers: int = 2, clients: int = 8, backends: str = "auto", plot: Path | None = None, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """The soak (see the module docstring); returns the figures."""
    if warm + 2 * window > minutes:
        raise BenchError(f"--warm {warm:g} + 2 × --window {window:g} must fit in --minutes {minutes:g}")
    if backends == "auto":
        try:
            env_changes, backends = backend_env("redis_postgres"), "redis_postgres"
        except BenchError:
            env_changes, backends = backend_env("embedded"), "embedded"
    else:
        env_changes = backend_env(backends)
    merchants = merchant_ids(data)
    mine = merchants[: max(1, len(merchants) // 10)]
    env_changes = {
        **env_changes,
        "AIDG_API_KEYS": json.dumps({ADMIN: {"role": "admin"}, MM: {"role": "mm", "merchants": mine}}),
        "AIDG_REDIS_NAMESPACE": f"aidg-soak-{uuid.uuid4().hex[:8]}",
    }
    if env_changes.get("AIDG_REDIS_URL"):
        env_changes["AIDG_STREAM__STREAM"] = f"aidg-soak-events-{uuid.uuid4().hex[:8]}"
    run = Run()
    log(f"soak: {minutes:g} min at {rate:g} req/s on {backends} ({workers} workers), {len(merchants)} merchants")
    with service(home, data, workers, env_changes, ready_timeout_s=300) as (port, pgid), \
            _stream_worker(home, env_changes) as worker:  # fmt: skip
        t0 = time.monotonic()
        until = t0 + minutes * 60
        url = f"http://127.0.0.1:{port}"
        threads = [threading.Thread(target=_drive, args=(url, merchants, mine, rate / clients, until, run, seed + i),
                                    daemon=True) for i in range(clients)]  # fmt: skip
        threads.append(threading.Thread(target=_sampler, args=(pgid, worker, until, run), daemon=True))
        for t in threads:
            t.start()
        while time.monotonic() < until:  # a progress line a minute
            time.sleep(min(60.0, max(0.1, until - time.monotonic())))
            done = min(1.0, (time.monotonic() - t0) / (minutes * 60))
            errs = sum(1 for c in run.calls if c[2] != 200)
            rss = run.samples[-1].service_mb + run.samples[-1].worker_mb if run.samples else 0.0
            log(f"soak [{'#' * int(20 * done):<20}] {len(run.calls):,} requests, {errs} errors, RSS {rss:.0f} MB")
        for t in threads:
            t.join(40)
        worker_alive = worker is None or worker.poll() is None
    report = {"minutes": minutes, "rate": rate, "workers": workers, "clients": clients, "backends": backends,
              **figures(run, t0, warm, window, minutes, worker_alive)}  # fmt: skip
    if plot is not None:
        from aidg.demo.plots import soak_timeline

        rss = [((s.t - t0) / 60, s.service_mb + s.worker_mb) for s in run.samples]
        report["plot"] = str(soak_timeline(rss, report["p95_per_minute_ms"], (warm, window, minutes), plot))
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path)
    p.add_argument("--data", type=Path)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--warm", type=float, default=3, help="minutes of warm-up before the first window")
    p.add_argument("--window", type=float, default=5, help="minutes of the first and the last window compared")
    p.add_argument("--rate", type=float, default=10, help="requests per second (all ops)")
    p.add_argument("--workers", type=int, default=2, help="service worker processes")
    p.add_argument("--clients", type=int, default=8,
                   help="client threads sharing the rate (enough that a slow answer does not delay the next request)")
    p.add_argument("--backends", choices=("auto", "embedded", "redis_postgres"), default="auto")
    p.add_argument("--plot", type=Path, default=Path("soak.png"))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.rate <= 0 or a.minutes <= 0 or a.clients < 1:
        p.error("--rate and --minutes must be positive, --clients at least 1")
    with tempfile.TemporaryDirectory(prefix="aidg-soak-home-") as tmp:
        from rollout import home_and_data

        home, data = home_and_data(a.home, a.data, Path(tmp))
        try:
            out = soak(home, data, minutes=a.minutes, warm=a.warm, window=a.window, rate=a.rate, workers=a.workers,
                       clients=a.clients, backends=a.backends, plot=a.plot)  # fmt: skip
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    emit(out, a.json)
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
