"""bench/ope_sim.py on a trained tiny world: the estimators are judged against the oracle's true value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.benches import load_bench

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ope_sim.py"


@pytest.mark.heavy  # a bench on a simulated log: make faults / make test-all (make test stays under 10 minutes)
def test_simulated_log_ope_reports_errors_against_the_truth(
    trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDG_HOME", str(trained["settings"].home))
    mod = load_bench(BENCH.name, "ope_sim")
    out = mod.run(trained["data"], decisions=3000, tau_log=0.1, tau_eval=0.05, seed=1)
    assert out["decisions"] == 3000 and out["variants"] == 50
    for name in ("ips", "snips", "dr"):
        e = out[name]
        assert e["ci95"][0] <= e["value"] <= e["ci95"][1]
        assert e["relative_error"] == pytest.approx((e["value"] - out["true_value"]) / abs(out["true_value"]))
    assert abs(out["dr"]["relative_error"]) < 0.25  # a tiny world and 3,000 decisions: loose, but not arbitrary
