"""bench/bandit.py on a trained tiny world: ours and VW on the same requests, the ratio computed from the medians."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.benches import load_bench

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bandit.py"


@pytest.mark.heavy  # a bench: make faults / make test-all (make test stays under 10 minutes)
def test_bandit_bench_measures_both_on_the_same_data(trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDG_HOME", str(trained["settings"].home))
    mod = load_bench(BENCH.name, "bench_bandit")
    out = mod.run(trained["data"], rounds=200, repeats=3, batch=500)
    assert out["variants"] == 50 and out["rounds"] == 200
    for key in ("ours_rounds_per_s", "vw_rounds_per_s", "vw_file_driver_rounds_per_s", "stream_update_events_per_s"):
        assert out[key] > 0
    assert out["ratio_ours_over_vw"] == pytest.approx(out["ours_rounds_per_s"] / out["vw_rounds_per_s"], rel=1e-2)
    assert sorted(out["all"]["ours"])[1] == pytest.approx(out["ours_rounds_per_s"], rel=1e-3)  # the median of 3
    assert 0 < out["decision_ms_p50"] <= out["decision_ms_p95"]
