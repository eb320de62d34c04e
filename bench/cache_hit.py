"""Benchmark: the embedding cache's hit rate on a replayed Zipf workload, pure TTL vs refresh-ahead.

A trace of merchant requests is generated up front with numpy: merchant of rank
k drawn with probability ∝ 1/k^s over ``--merchants`` ids, arrivals of a Poisson
process at ``--rps`` (its count fixed at rps × duration: the arrival times are
then uniform order statistics). The trace is replayed on a simulated clock (no
sleeping) through the real ``EmbeddingCache`` over a ``MemoryCacheBackend``,
one ``cache.get`` per request, with ``refresh_due`` called every
``--refresh-interval-s`` simulated seconds, once with pure TTL
(``refresh_ahead_s=0``) and once with refresh-ahead, on the same trace.

Reported per policy: the hit rate over the whole trace and after
``--warmup-hours`` (steady state), the loader's work per hour (keys loaded on
misses plus refreshes) and the refreshes per hour, and the seconds the replay
took; ``ttl_hit_rate_theory`` is the steady pure-TTL hit rate of this workload,
Σ_k p_k·λ_k·T / (1 + λ_k·T) with λ_k = rps·p_k and T = ttl_s.

    python bench/cache_hit.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from aidg.store.cache import EmbeddingCache
from aidg.store.online_memory import MemoryCacheBackend

VALUE = b"e" * 64  # a small embedding-sized value


def zipf_probabilities(merchants: int, zipf_s: float) -> np.ndarray:
    """p_k ∝ 1/k^s for ranks k = 1..merchants."""
    w = 1.0 / np.arange(1, merchants + 1, dtype=np.float64) ** zipf_s
    return np.asarray(w / w.sum())


def make_trace(
    merchants: int, zipf_s: float, rps: float, hours: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival times in s, merchant index per request, p) for one replay."""
    rng = np.random.default_rng(seed)
    duration = hours * 3600.0
    n = round(rps * duration)
    times = np.sort(rng.uniform(0.0, duration, n))
    p = zipf_probabilities(merchants, zipf_s)
    cdf = np.cumsum(p)
    ids = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), merchants - 1)
    return times, ids, p


def _replay_policy(
    times: list[float],
    keys: list[str],
    warmup_index: int,
    ttl_s: float,
    refresh_ahead_s: float,
    keep_warm_s: float,
    refresh_interval_s: float,
    hours: float,
    steady_hours: float,
) -> dict[str, float]:
    now = [0.0]

    def clock() -> float:
        return now[0]

    loads = [0]

    def loader(batch: list[str]) -> dict[str, bytes]:
        loads[0] += len(batch)
        return dict.fromkeys(batch, VALUE)

    cache = EmbeddingCache(MemoryCacheBackend(clock), loader, ttl_s, refresh_ahead_s, keep_warm_s, clock)
    get, refresh_due = cache.get, cache.refresh_due
    next_refresh = refresh_interval_s
    snapshots = []
    start = time.perf_counter()
    for lo, hi in ((0, warmup_index), (warmup_index, len(times))):
        for t, key in zip(times[lo:hi], keys[lo:hi], strict=True):
            while t >= next_refresh:
                now[0] = next_refresh
                refresh_due()
                next_refresh += refresh_interval_s
            now[0] = t
            get(key)
        snapshots.append((cache.stats, loads[0]))
    seconds = time.perf_counter() - start
    (warm, warm_loads), (end, end_loads) = snapshots
    steady_hits, steady_misses = end.hits - warm.hits, end.misses - warm.misses
    steady_total = steady_hits + steady_misses
    return {
        "hit_rate": end.hit_rate,
        "hit_rate_steady": steady_hits / steady_total if steady_total else 0.0,
        "refreshes_per_hour": end.refreshes / hours,
        "loads_per_hour": end_loads / hours,
        "loads_per_hour_steady": (end_loads - warm_loads) / steady_hours,
        "evictions_expired": float(end.evictions_expired),
        "seconds": seconds,
        "us_per_request": seconds / len(times) * 1e6 if times else 0.0,
    }


def replay(
    merchants: int = 50_000,
    zipf_s: float = 1.0,
    rps: float = 100.0,
    hours: float = 6.0,
    ttl_s: float = 3600.0,
    refresh_ahead_s: float = 300.0,
    keep_warm_s: float = 86_400.0,
    refresh_interval_s: float = 60.0,
    warmup_hours: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Replay one Zipf trace through pure TTL and refresh-ahead; the figures as a flat dict.

    Raises:
        ValueError: a parameter out of range (``warmup_hours`` must be below ``hours``).
    """
    if merchants < 1 or not rps > 0 or not hours > 0 or not refresh_interval_s > 0:
        raise ValueError("merchants must be at least 1 and rps, hours, refresh_interval_s positive")
    if not 0 <= warmup_hours < hours:
        raise ValueError(f"warmup_hours must be in [0, hours={hours}), got {warmup_hours}")
    started = time.perf_counter()
    times_arr, ids, p = make_trace(merchants, zipf_s, rps, hours, seed)
    names = [f"m{k}" for k in range(merchants)]
    keys = [names[i] for i in ids.tolist()]
    times = times_arr.tolist()
    warmup_index = int(np.searchsorted(times_arr, warmup_hours * 3600.0, side="left"))
    trace_seconds = time.perf_counter() - started
    lam_t = rps * p * ttl_s
    out: dict[str, float] = {
        "requests": float(len(times)),
        "merchants": float(merchants),
        "zipf_s": zipf_s,
        "rps": rps,
        "hours": hours,
        "ttl_s": ttl_s,
        "refresh_ahead_s": refresh_ahead_s,
        "keep_warm_s": keep_warm_s,
        "refresh_interval_s": refresh_interval_s,
        "warmup_hours": warmup_hours,
        "ttl_hit_rate_theory": float(np.sum(p * lam_t / (1.0 + lam_t))),
        "trace_seconds": trace_seconds,
    }
    for name, ahead in (("ttl", 0.0), ("refresh_ahead", refresh_ahead_s)):
        figures = _replay_policy(
            times, keys, warmup_index, ttl_s, ahead, keep_warm_s, refresh_interval_s, hours, hours - warmup_hours
        )
        out.update({f"{name}_{k}": v for k, v in figures.items()})
    out["seconds"] = time.perf_counter() - started
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--merchants", type=int, default=50_000)
    p.add_argument("--zipf-s", type=float, default=1.0)
    p.add_argument("--rps", type=float, default=100.0)
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--ttl-s", type=float, default=3600.0)
    p.add_argument("--refresh-ahead-s", type=float, default=300.0)
    p.add_argument("--keep-warm-s", type=float, default=86_400.0)
    p.add_argument("--refresh-interval-s", type=float, default=60.0)
    p.add_argument("--warmup-hours", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = p.parse_args(argv)
    try:
        out: dict[str, Any] = replay(
            a.merchants, a.zipf_s, a.rps, a.hours, a.ttl_s, a.refresh_ahead_s, a.keep_warm_s,
            a.refresh_interval_s, a.warmup_hours, a.seed,
        )  # fmt: skip
    except ValueError as exc:
        p.error(str(exc))
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{int(out['requests']):,} requests over {a.hours:g} h, {a.merchants:,} merchants, Zipf s={a.zipf_s:g}, "
        f"{a.rps:g} rps; ttl {a.ttl_s:g} s, refresh-ahead {a.refresh_ahead_s:g} s every {a.refresh_interval_s:g} s"
    )
    print(f"{'policy':<14}{'hit rate':>10}{'steady':>10}{'loads/h':>12}{'refreshes/h':>13}{'replay s':>10}")
    for name in ("ttl", "refresh_ahead"):
        print(
            f"{name:<14}{out[f'{name}_hit_rate']:>10.4f}{out[f'{name}_hit_rate_steady']:>10.4f}"
            f"{out[f'{name}_loads_per_hour']:>12,.0f}{out[f'{name}_refreshes_per_hour']:>13,.0f}"
            f"{out[f'{name}_seconds']:>10.1f}"
        )
    print(f"pure-TTL steady hit rate in theory: {out['ttl_hit_rate_theory']:.4f}; total {out['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
