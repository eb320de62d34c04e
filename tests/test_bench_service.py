"""bench/service.py --quick runs end to end against a tiny trained model and reports consistent figures.

Speed is not asserted: the figures only have to exist, be finite and positive, and
every answer must have been a 2xx.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "service.py"
KEYS = (
    "generate_p50_ms",
    "generate_p99_ms",
    "generate_p95_ms_at_100rps",
    "generate_max_rps",
    "noop_max_rps",
    "cache_hit_rate",
    "ratio_generate_to_noop",
)


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_quick_bench_against_a_trained_tiny_model(trained: dict[str, Any]) -> None:
    cmd = [sys.executable, str(BENCH), "--quick", "--json", "--backends", "embedded",
           "--home", str(trained["settings"].home), "--data", str(trained["data"])]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stdout[-2000:]
    out = json.loads(lines[0])
    for key in KEYS:
        assert _positive(out[key]), (key, out.get(key))
    assert 0 < out["ratio_generate_to_noop"] <= 1.5
    assert 0 < out["cache_hit_rate"] <= 1 and 0 < out["cache_hit_rate_ttl"] <= 1
    assert out["errors"] == 0
    run = out["runs"]["embedded"]
    assert run["non_2xx"] == 0 and run["failures"] == 0 and run["errors"] == 0
    assert run["warmup"]["generate_requests"] >= out["merchants"] > 0
    for table in ("generate_closed_loop", "noop_closed_loop"):
        assert run[table] and all(row["errors"] == 0 and _positive(row["rps"]) for row in run[table])
    assert 0 <= run["service_cache_hit_rate"] <= 1
    assert out["load_generator"]["closed_loop"] in ("wrk", "asyncio")
    assert out["workers"] >= 1 and _positive(out["seconds"]) and out["cpu_count"] >= 1


def test_missing_home_is_a_one_line_error(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, str(BENCH), "--json", "--home", str(tmp_path / "none"), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().startswith("error: no AIDG home") and "Traceback" not in p.stderr


@pytest.mark.heavy
def test_quick_bench_of_two_replicas_behind_one_port(trained: dict[str, Any]) -> None:
    from tests.servers import require_server

    require_server("Redis", "127.0.0.1", 6379)
    require_server("PostgreSQL", "127.0.0.1", 5432)
    cmd = [sys.executable, str(BENCH), "--quick", "--json", "--replicas", "2", "--workers", "1",
           "--home", str(trained["settings"].home), "--data", str(trained["data"])]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads([ln for ln in p.stdout.splitlines() if ln.strip()][-1])
    assert set(res["replicas"]) == {"1", "2"} and res["errors"] == 0
    for r in res["replicas"].values():
        assert _positive(r["generate_max_rps"]) and _positive(r["generate_p99_ms"])
        assert r["run"]["warmup"]["workers_reached"] >= 1
    assert res["replicas"]["2"]["run"]["warmup"]["workers_reached"] == 2  # both replicas served
    assert _positive(res["replicas_speedup"])
