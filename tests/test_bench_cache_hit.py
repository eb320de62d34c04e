"""bench/cache_hit.py replays one trace through both cache policies with consistent figures (speed not asserted)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from tests.benches import load_bench

BENCH = Path(__file__).resolve().parents[1] / "bench" / "cache_hit.py"


def _bench() -> types.ModuleType:
    mod = load_bench(BENCH.name, "bench_cache_hit")
    return mod


def test_replay_reports_both_policies_on_the_same_trace() -> None:
    mod = _bench()
    out = mod.replay(merchants=2000, hours=0.5, rps=20, warmup_hours=0.1, refresh_ahead_s=300, seed=3)
    assert out["requests"] == 36_000
    for name in ("ttl", "refresh_ahead"):
        assert 0.0 <= out[f"{name}_hit_rate"] <= 1.0 and 0.0 <= out[f"{name}_hit_rate_steady"] <= 1.0
        assert out[f"{name}_loads_per_hour"] > 0
    assert out["refresh_ahead_hit_rate"] >= out["ttl_hit_rate"]
    assert out["ttl_refreshes_per_hour"] == 0.0
    # half an hour under a one-hour TTL: nothing expires, so the two policies see the very same hits
    assert out["refresh_ahead_hit_rate"] == out["ttl_hit_rate"]


def test_refresh_ahead_beats_pure_ttl_once_entries_expire() -> None:
    mod = _bench()
    out = mod.replay(
        merchants=2000, hours=0.5, rps=20, ttl_s=300, refresh_ahead_s=60, refresh_interval_s=10, warmup_hours=0.1
    )
    assert out["requests"] == 36_000
    assert out["refresh_ahead_hit_rate_steady"] > out["ttl_hit_rate_steady"]
    assert out["refresh_ahead_refreshes_per_hour"] > 0 and out["refresh_ahead_evictions_expired"] == 0
    assert out["ttl_hit_rate_steady"] == pytest.approx(out["ttl_hit_rate_theory"], abs=0.02)


def test_replay_refuses_a_warmup_longer_than_the_trace() -> None:
    with pytest.raises(ValueError, match="warmup_hours"):
        _bench().replay(hours=0.5, warmup_hours=1.0)
