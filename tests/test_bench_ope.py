"""bench/ope.py: on obp's bundled Open Bandit Dataset sample our estimators equal obp's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ope.py"


def test_ope_bench_matches_obp_on_the_open_bandit_dataset() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--bootstrap", "50", "--json"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["rounds"] == 10_000 and out["actions"] == 80 and out["positions"] == 3
    assert out["max_abs_diff"] < 1e-6
    for name in ("ips", "snips", "dr"):
        low, high = out[name]["ci95"]
        assert low <= out[name]["ours"] <= high
