"""bench/rollout.py runs its drills against a real `aidg serve` and reports honest keys (speed not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "rollout.py"
KEYS = ("faulty_trials", "faulty_rolled_back", "healthy_trials", "false_rollbacks", "restore_seconds_max")


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_one_faulty_and_one_healthy_drill(trained: dict[str, Any]) -> None:
    cmd = [sys.executable, str(BENCH), "--home", str(trained["settings"].home), "--data", str(trained["data"]),
           "--trials", "1", "--trial-seconds", "6", "--workers", "1", "--rate", "40", "--json"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert all(k in out for k in KEYS)
    assert (out["faulty_trials"], out["healthy_trials"]) == (1, 1)
    assert out["faulty_rolled_back"] == 1 and out["triggers"].get("error_rate") == 1  # a 10 % failure rate is caught
    assert 0 <= out["restore_seconds_max"] <= 60
    assert out["false_rollbacks"] in (0, 1) and out["requests"] > 0 and out["request_errors"] == 0
