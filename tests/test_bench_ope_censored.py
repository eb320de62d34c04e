"""bench/ope_censored.py on a trained tiny world: a log cut at day 60, complete-case DR beside the censoring-aware
estimate, both judged against the oracle's truth, with the public --json keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.benches import load_bench

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ope_censored.py"
KEYS = ("truth", "dr_complete_case_rel_error", "censoring_aware_rel_error", "coverage_90")


@pytest.mark.heavy  # a bench on a simulated log: make faults / make test-all (make test stays under 10 minutes)
def test_a_cut_log_is_valued_against_the_truth(trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDG_HOME", str(trained["settings"].home))
    mod = load_bench(BENCH.name, "ope_censored")
    out = mod.run(trained["data"], decisions=3000, seeds=2, cut=60.0, tau_log=0.1, tau_eval=0.05)
    assert all(k in out for k in KEYS) and out["log_seeds"] == 2 and len(out["seeds"]) == 2
    assert 0.1 < out["landed_share"] < 0.6  # a GP30 lands 30 days after a start that itself comes days later
    for s in out["seeds"]:
        lo, hi = s["censoring_aware_ci90"]
        assert lo <= s["censoring_aware"] <= hi
        rel = (s["censoring_aware"] - out["truth"]) / abs(out["truth"])
        assert s["censoring_aware_rel_error"] == pytest.approx(rel)
        # the tiny world's truth is near 0 (relative errors say little there): within 0.05 of it, absolute
        assert abs(s["censoring_aware"] - out["truth"]) < 0.05
    assert out["coverage_90"] in (0.0, 0.5, 1.0)
