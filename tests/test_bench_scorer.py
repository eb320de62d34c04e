"""bench/scorer.py runs and reports what it says it measures (its speed is never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "scorer.py"


def test_scorer_bench_reports_percentiles_of_the_calls_it_made() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--calls", "20", "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["device"] == "cpu" and out["threads"] == 1 and out["calls"] == 20
    assert 0 < out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"]
    assert out["parameters"] > 100_000


def test_scorer_bench_refuses_a_bad_call_count() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--calls", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--calls must be at least 1" in proc.stderr
