"""bench/branch_ablation.py on a trained tiny world: paired arena runs with profile branches switched off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aidg import workflows
from aidg.errors import DataError
from tests.benches import load_bench

BENCH = Path(__file__).resolve().parents[1] / "bench" / "branch_ablation.py"


@pytest.mark.heavy  # a bench's arena runs: make faults / make test-all (make test stays under 10 minutes)
def test_each_branch_and_the_whole_profile_are_ablated_on_the_decision_metric(
    trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDG_HOME", str(trained["settings"].home))
    mod = load_bench(BENCH.name, "bench_branch_ablation")
    out = mod.ablate(trained["data"], rounds=300, days=30, seeds=1, branches=["geo"])
    rows = out["without"]
    assert set(rows) == {"none", "geo", "whole_profile"}
    assert rows["none"]["share_change"] == 0.0
    for r in rows.values():
        assert set(r) >= {"oracle_gain_share", "gp30_uplift_vs_current", "safety_violation_rate", "share_change"}



def test_switching_the_profile_off_changes_what_the_scorer_predicts(trained: dict[str, Any]) -> None:
    settings, data = trained["settings"], trained["data"]
    full, _ = workflows.arena_data(settings, data, days=7, latent_reference=False, records=False)
    off, _ = workflows.arena_data(settings, data, days=7, latent_reference=False, records=False,
                                  drop=frozenset({"deal_history", "graph", "sequence", "static"}))  # fmt: skip
    a, b = full.arms[0].predicted.score.to_numpy(), off.arms[0].predicted.score.to_numpy()
    assert a.shape == b.shape and not (a == b).all()


def test_an_unknown_branch_is_refused_naming_the_choices(trained: dict[str, Any]) -> None:
    with pytest.raises(DataError, match=r"unknown profile branches nope; choose from .*graph"):
        workflows.simulate_policy(trained["settings"], trained["data"], rounds=10, without=("nope",))
