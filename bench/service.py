"""Benchmark: the service's latency and sustained throughput on loopback, generate vs. a do-nothing endpoint.

Starts ``aidg serve`` as a subprocess on a free 127.0.0.1 port for each backend
set (embedded, then Redis + PostgreSQL through ``AIDG_REDIS_URL`` /
``AIDG_DATABASE_URL``), waits for ``/readyz`` and for every worker process to
finish loading (bounded), and always stops it (SIGTERM to its process group,
SIGKILL after 10 s). Against each service, for ``POST /v1/deals/generate``
(merchants drawn Zipf 1.0 over the world's merchants) and ``GET /v1/noop``:

1. warm-up: a generate for every merchant on each of ``--workers`` concurrent
   connections (so each worker's embedding cache can hold them), 200 noops;
2. unloaded latency: sequential requests on one keep-alive connection;
3. latency at a fixed 100 req/s (open loop, measured from the scheduled send time);
4. sustained throughput: closed loop at C = 1, 2, 4, 8, 16, 32 connections,
   8 s each (``wrk`` when installed, else the asyncio client); ``*_max_rps`` is
   the best throughput whose p99 ≤ 50 ms.

``ratio_generate_to_noop`` (generate_max_rps / noop_max_rps) is the figure that
survives a noisy machine. The service's cache hit rate is scraped from
``/metrics`` at the end (each scrape hits one worker: several scrapes on fresh
connections, distinct workers summed). ``cache_hit_rate`` is the replayed
refresh-ahead steady hit rate of ``bench/cache_hit.py`` (Zipf 1.0 over 50k
merchants at 100 req/s, TTL 1 h), with the pure-TTL figure beside it.

    python bench/service.py [--json] [--data DIR] [--home H] [--quick]
                            [--backends embedded,redis_postgres] [--workers N] [--replicas N]

``--replicas N`` (N > 1): Redis + PostgreSQL served by one ``aidg serve``, then
by N of them behind the same port (``aidg serve --join``, SO_REUSEPORT), each
with ``--workers`` workers; ``replicas`` holds each one's figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import loadgen  # noqa: E402  (bench/loadgen.py, next to this file)
from service_proc import (  # noqa: E402
    BACKENDS,
    HOST,
    BenchError,
    _server_timings,
    backend_env,
    log,
    scrape_cache,
    service,
    worker_conns,
)

GENERATE = "/v1/deals/generate"
NOOP = "/v1/noop"
P99_LIMIT_MS = 50.0
REPLAY_KEYS = ("ttl_hit_rate", "ttl_hit_rate_steady", "refresh_ahead_hit_rate", "refresh_ahead_hit_rate_steady",
               "refresh_ahead_refreshes_per_hour", "requests")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    sequential: int = 1000
    noop_warmup: int = 200
    rate: float = 100.0
    rate_s: float = 20.0
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    step_s: float = 8.0
    ready_timeout_s: float = 300.0
    quick: bool = False


FULL = Plan()
QUICK = Plan(sequential=100, noop_warmup=50, rate=20.0, rate_s=3.0, concurrency=(1, 4), step_s=2.0,
             ready_timeout_s=180.0, quick=True)  # fmt: skip


def merchant_ids(data: Path) -> list[str]:
    import pandas as pd

    if (data / "merchants.parquet").exists():
        ids = pd.read_parquet(data / "merchants.parquet", columns=["merchant_id"])["merchant_id"]
    elif (data / "merchants.csv").exists():
        ids = pd.read_csv(data / "merchants.csv", usecols=["merchant_id"], dtype=str)["merchant_id"]
    else:
        raise BenchError(f"no merchants table in {data} (expected {data}/merchants.parquet)")
    out = [str(x) for x in ids.dropna().unique()]
    if not out:
        raise BenchError(f"{data}/merchants holds no merchant ids")
    return out


def zipf_sequence(n_merchants: int, n: int, seed: int, s: float = 1.0) -> np.ndarray:
    """n merchant indices drawn with p(rank k) ∝ 1/k^s; ranks are a seeded permutation of the merchants."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_merchants + 1, dtype=np.float64) ** s
    ranks = np.minimum(np.searchsorted(np.cumsum(w / w.sum()), rng.random(n), side="right"), n_merchants - 1)
    return np.asarray(rng.permutation(n_merchants)[ranks])


def warm_up(port: int, pgid: int, workers: int, gen_raw: list[bytes]) -> tuple[loadgen.Result, int]:
    """A generate for every merchant on a connection to each worker (concurrently); (result, workers reached)."""

    async def go() -> tuple[loadgen.Result, int]:
        conns = await worker_conns(port, pgid, workers, gen_raw[0])
        m, k = len(gen_raw), max(1, len(conns))
        streams = [[gen_raw[(i + j * m // k) % m] for i in range(m)] for j in range(k)]
        try:
            return await loadgen.parallel_pass(HOST, port, streams, 600.0, list(conns.values())), len(conns)
        finally:
            for c in conns.values():
                c.close()

    result: tuple[loadgen.Result, int] = loadgen.run(go())
    return result


def _closed(
    port: int,
    wrk: str | None,
    path: str,
    bodies: Sequence[str],
    raws: Sequence[bytes],
    seq: np.ndarray,
    c: int,
    seconds: float,
) -> dict[str, Any]:
    if wrk:
        method = "POST" if bodies else "GET"
        return loadgen.run_wrk(wrk, f"http://{HOST}:{port}{path}", method, bodies, seq.tolist(), c, seconds)
    reqs = [raws[i] for i in seq] if bodies else raws
    return loadgen.run(loadgen.closed_loop(HOST, port, reqs, c, seconds)).summary()


def measure(port: int, pgid: int, merchants: list[str], workers: int, plan: Plan, wrk: str | None) -> dict[str, Any]:
    gen_bodies = [json.dumps({"merchant_id": m}) for m in merchants]
    gen_raw = [loadgen.post_json_request(HOST, port, GENERATE, {"merchant_id": m}) for m in merchants]
    noop_raw = [loadgen.get_request(HOST, port, NOOP)]
    out: dict[str, Any] = {}
    non_2xx = failures = 0

    def count(r: dict[str, Any]) -> dict[str, Any]:
        nonlocal non_2xx, failures
        non_2xx += int(r["non_2xx"])
        failures += int(r["failures"])
        return r

    t = time.perf_counter()
    m = len(merchants)
    w_res, reached = warm_up(port, pgid, workers, gen_raw)
    w = w_res.summary()
    w_noop = loadgen.run(loadgen.sequential(HOST, port, noop_raw * plan.noop_warmup, 60.0)).summary()
    count(w), count(w_noop)
    out["warmup"] = {
        "generate_requests": w["requests"],
        "noop_requests": w_noop["requests"],
        "workers_reached": reached,
        "seconds": round(time.perf_counter() - t, 2),
        **scrape_cache(port, pgid, workers, gen_raw[0]),
    }
    log(f"warm-up: {w['requests']} generates on {reached} workers ({w['non_2xx']} non-2xx), {w_noop['requests']} noops")

    seq_gen = zipf_sequence(m, plan.sequential, seed=1)
    for name, reqs in (("generate", [gen_raw[i] for i in seq_gen]), ("noop", noop_raw * plan.sequential)):
        r = count(loadgen.run(loadgen.sequential(HOST, port, reqs, 120.0)).summary())
        out[f"{name}_sequential"] = r
        log(f"{name} sequential: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms ({r['requests']} requests)")

    out["server_timing_ms"] = loadgen.run(_server_timings(port, [gen_raw[i] for i in seq_gen[:300]]))
    log(f"server-side timing: {out['server_timing_ms']}")

    n_rate = round(plan.rate * plan.rate_s)
    seq_rate = zipf_sequence(m, n_rate, seed=2)
    for name, reqs in (("generate", [gen_raw[i] for i in seq_rate]), ("noop", noop_raw)):
        r = count(loadgen.run(loadgen.open_loop(HOST, port, reqs, plan.rate, plan.rate_s)).summary())
        out[f"{name}_at_rate"] = {"rate": plan.rate, **r}
        log(f"{name} at {plan.rate:g} req/s: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms")

    seq_closed = zipf_sequence(m, 20_000, seed=3)
    for name, path, bodies, raws in (("generate", GENERATE, gen_bodies, gen_raw), ("noop", NOOP, [], noop_raw)):
        table = []
        for c in plan.concurrency:
            r = count(_closed(port, wrk, path, bodies, raws, seq_closed, c, plan.step_s))
            table.append({"concurrency": c, "rps": r["rps"], "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms"),
                          "errors": r["errors"]})  # fmt: skip
            log(f"{name} closed loop C={c}: {r['rps']} req/s, p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms")
        ok = [row["rps"] for row in table if row["p99_ms"] is not None and row["p99_ms"] <= P99_LIMIT_MS]
        out[f"{name}_closed_loop"] = table
        out[f"{name}_max_rps"] = max(ok) if ok else None
    g, n = out["generate_max_rps"], out["noop_max_rps"]
    out["ratio_generate_to_noop"] = round(g / n, 4) if g and n else None
    out["non_2xx"], out["failures"] = non_2xx, failures
    out["errors"] = non_2xx + failures
    out.update(scrape_cache(port, pgid, workers, gen_raw[0]))
    hits = out["service_cache_hits"] - out["warmup"]["service_cache_hits"]
    misses = out["service_cache_misses"] - out["warmup"]["service_cache_misses"]
    out["service_cache_hit_rate_after_warmup"] = round(hits / (hits + misses), 4) if hits + misses > 0 else None
    return out


def _load_cache_hit() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("bench_cache_hit", HERE / "cache_hit.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cache_replay(quick: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"merchants": 2000, "hours": 0.5, "rps": 20, "warmup_hours": 0.1} if quick else {}
    r = _load_cache_hit().replay(**params)
    return {
        "cache_hit_rate": round(r["refresh_ahead_hit_rate_steady"], 4),
        "cache_hit_rate_ttl": round(r["ttl_hit_rate_steady"], 4),
        "cache_replay": {
            "params": params or "defaults (Zipf 1.0, 50k merchants, 100 req/s, TTL 1 h, refresh-ahead 300 s)",
            **{k: r[k] for k in REPLAY_KEYS},
        },
    }


# --- command line --------------------------------------------------------------------------------------------------


def run_replicas(home: Path, data: Path, workers: int, replicas: int, plan: Plan) -> dict[str, Any]:
    """Redis + PostgreSQL served by 1, then ``replicas`` ``aidg serve`` processes behind one port (``--join``), each
    with ``workers`` workers: throughput and latency of each."""
    t0 = time.perf_counter()
    if not home.is_dir() or not data.is_dir():
        raise BenchError(f"--home {home} and --data {data} must be a trained home and its data folder")
    merchants = merchant_ids(data)
    wrk = shutil.which("wrk")
    env = backend_env("redis_postgres")
    out: dict[str, Any] = {}
    for n in sorted({1, replicas}):
        log(f"{n} replica(s) × {workers} workers on Redis + PostgreSQL")
        with service(home, data, workers, env, plan.ready_timeout_s, replicas=n) as (port, pgid):
            r = measure(port, pgid, merchants, workers * n, plan, wrk)
        ok = [row for row in r["generate_closed_loop"] if row["p99_ms"] is not None and row["p99_ms"] <= P99_LIMIT_MS]
        best = max(ok, key=lambda row: row["rps"]) if ok else None
        out[str(n)] = {
            "generate_max_rps": r["generate_max_rps"],
            "generate_p99_ms_at_max_rps": None if best is None else best["p99_ms"],
            "generate_p99_ms": r["generate_sequential"]["p99_ms"],
            "generate_p95_ms_at_100rps": r["generate_at_rate"]["p95_ms"],
            "noop_max_rps": r["noop_max_rps"],
            "errors": r["errors"],
            "run": r,
        }
    one, many = out["1"], out[str(replicas)]
    speedup = (many["generate_max_rps"] / one["generate_max_rps"]
               if many["generate_max_rps"] and one["generate_max_rps"] else None)  # fmt: skip
    return {"replicas": out, "replicas_speedup": None if speedup is None else round(speedup, 3),
            "workers_per_replica": workers, "cpu_count": os.cpu_count(), "quick": plan.quick,
            "errors": sum(int(v["errors"]) for v in out.values()),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def run_bench(home: Path, data: Path, backends: list[str], workers: int, plan: Plan) -> dict[str, Any]:
    t0 = time.perf_counter()
    if not home.is_dir():
        raise BenchError(f"no AIDG home at {home}: pass --home H (a home with a trained model; `aidg train` makes one)")
    if not data.is_dir():
        raise BenchError(f"no data folder at {data}: pass --data DIR (aidg simulate's output)")
    merchants = merchant_ids(data)
    wrk = shutil.which("wrk")
    log(f"{len(merchants)} merchants, {workers} workers, closed loop with {'wrk' if wrk else 'the asyncio client'}")
    runs: dict[str, Any] = {}
    for name in backends:
        log(f"backends {name}")
        try:
            env = backend_env(name)
            with service(home, data, workers, env, plan.ready_timeout_s) as (port, pgid):
                runs[name] = measure(port, pgid, merchants, workers, plan, wrk)
        except BenchError as exc:
            if name == backends[0]:
                raise  # the first set's failure (no model, no data) ends the run
            log(f"backends {name}: {exc}")
            runs[name] = {"error": str(exc)}
    res: dict[str, Any] = {}
    main = runs[backends[0]] if "embedded" not in runs else runs["embedded"]
    res["generate_p50_ms"] = main["generate_sequential"]["p50_ms"]
    res["generate_p99_ms"] = main["generate_sequential"]["p99_ms"]
    res["generate_p95_ms_at_100rps"] = main["generate_at_rate"]["p95_ms"]
    res["generate_max_rps"] = main["generate_max_rps"]
    res["noop_max_rps"] = main["noop_max_rps"]
    log("cache replay" + (" (quick)" if plan.quick else " (defaults)"))
    replay = cache_replay(plan.quick)
    res["cache_hit_rate"] = replay.pop("cache_hit_rate")
    res["cache_hit_rate_ttl"] = replay.pop("cache_hit_rate_ttl")
    res["ratio_generate_to_noop"] = main["ratio_generate_to_noop"]
    res["errors"] = sum(int(r.get("errors", 0)) for r in runs.values())
    res["service_cache_hit_rate"] = main["service_cache_hit_rate"]
    res["service_cache_hit_rate_after_warmup"] = main["service_cache_hit_rate_after_warmup"]
    res["reported_from"] = "embedded" if "embedded" in runs else backends[0]
    res["rate_rps"] = plan.rate
    res["p99_limit_ms"] = P99_LIMIT_MS
    res["runs"] = runs
    res.update(replay)
    res["load_generator"] = {"closed_loop": "wrk" if wrk else "asyncio", "wrk": wrk,
                             "sequential_and_open_loop": "asyncio"}  # fmt: skip
    res["workers"] = workers
    res["merchants"] = len(merchants)
    res["cpu_count"] = os.cpu_count()
    res["quick"] = plan.quick
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def print_report(res: dict[str, Any]) -> None:
    print(f"AIDG service on loopback: {res['merchants']:,} merchants, {res['workers']} workers, "
          f"{res['cpu_count']} CPUs, closed loop by {res['load_generator']['closed_loop']}"
          f"{' (quick)' if res['quick'] else ''}")  # fmt: skip
    for name, r in res["runs"].items():
        print(f"\n== backends: {name}")
        if "error" in r:
            print(f"   error: {r['error']}")
            continue
        print(f"{'':<22}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'requests':>10}")
        for ep in ("generate", "noop"):
            for kind, label in (("sequential", "sequential"), ("at_rate", f"at {res['rate_rps']:g} req/s")):
                x = r[f"{ep}_{kind}"]
                print(f"{ep + ' ' + label:<22}{_fmt(x['p50_ms']):>10}{_fmt(x['p95_ms']):>10}{_fmt(x['p99_ms']):>10}"
                      f"{x['requests']:>10}")  # fmt: skip
        print(f"\n{'closed loop':<14}{'C':>4}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for ep in ("generate", "noop"):
            for row in r[f"{ep}_closed_loop"]:
                print(f"{ep:<14}{row['concurrency']:>4}{_fmt(row['rps']):>10}{_fmt(row['p50_ms']):>10}"
                      f"{_fmt(row['p99_ms']):>10}{row['errors']:>8}")  # fmt: skip
        print(f"\nmax req/s with p99 ≤ {res['p99_limit_ms']:g} ms: generate {_fmt(r['generate_max_rps'])}, "
              f"noop {_fmt(r['noop_max_rps'])}, ratio {_fmt(r['ratio_generate_to_noop'])}; "
              f"non-2xx {r['non_2xx']}, failures {r['failures']}; service cache hit rate "
              f"{_fmt(r['service_cache_hit_rate'])}, after warm-up {_fmt(r['service_cache_hit_rate_after_warmup'])} "
            f"({r['service_cache_workers_seen']} workers seen)")  # fmt: skip
    print(f"\nreplayed cache hit rate (steady): refresh-ahead {res['cache_hit_rate']:.4f}, "
          f"pure TTL {res['cache_hit_rate_ttl']:.4f}; took {res['seconds']} s")  # fmt: skip


def _finite(obj: Any) -> Any:
    """NaN and infinities as null (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress on stderr)")
    p.add_argument("--home", type=Path, default=None, help="AIDG home with a trained model (default $AIDG_HOME)")
    p.add_argument("--data", type=Path, default=None, help="data folder served (default <home>/demo/world)")
    p.add_argument("--quick", action="store_true", help="a short run (tens of seconds), for tests")
    p.add_argument("--backends", default="embedded,redis_postgres", help="comma-separated: embedded,redis_postgres")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="service worker processes")
    p.add_argument("--replicas", type=int, default=1,
                   help="N > 1: Redis + PostgreSQL served by 1, then N `aidg serve` processes behind one port "
                   "(--workers each); reports each")  # fmt: skip
    a = p.parse_args(argv)
    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        p.error(f"--backends: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(BACKENDS)}")
    if not 1 <= a.workers <= 64:
        p.error("--workers must be in 1..64")
    home = (a.home or Path(os.environ.get("AIDG_HOME") or Path.home() / ".aidg")).expanduser()
    data = (a.data or home / "demo" / "world").expanduser()
    if not 1 <= a.replicas <= 16:
        p.error("--replicas must be in 1..16")
    try:
        if a.replicas > 1:
            res = run_replicas(home, data, a.workers, a.replicas, QUICK if a.quick else FULL)
            if not a.json:
                for n, r in res["replicas"].items():
                    print(f"{n} replica(s) × {a.workers} workers: generate {r['generate_max_rps']} req/s "
                          f"(p99 {r['generate_p99_ms_at_max_rps']} ms), unloaded p99 {r['generate_p99_ms']} ms, "
                          f"p95 at 100 req/s {r['generate_p95_ms_at_100rps']} ms")  # fmt: skip
                print(f"speed-up {res['replicas_speedup']}")
                return 1 if res["errors"] else 0
        else:
            res = run_bench(home, data, backends, a.workers, QUICK if a.quick else FULL)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if a.json:
        print(json.dumps(_finite(res), default=str))
    else:
        print_report(res)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
