"""The policy arena: the issue's figures per policy, judged by the oracle; the conservative gate holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidg import workflows
from aidg.config import Settings
from aidg.errors import DataError
from aidg.policy.arena import ArenaData, MerchantArms, arena, run_policy, summarize
from aidg.policy.baselines import POLICIES, make_policy
from aidg.policy.risk_aware import Candidates
from aidg.registry import ModelRegistry
from tests.golden import ARENA, assert_matches

KEYS = (
    "cumulative_reward",
    "gp30_uplift_vs_current",
    "override_rate",
    "safety_violation_rate",
    "regret_vs_oracle",
    "conservative_violation_runs",
    "oracle_gain_share",
    "oracle_cumulative_reward",
    "acceptance_uplift_vs_legacy",
    "acceptance_uplift_vs_current",
)


@pytest.fixture(scope="module")
def tiny_arena(trained: dict[str, Any]) -> dict[str, Any]:
    version = trained["report"]["version"]  # the session's trained version, whatever other tests registered
    return workflows.simulate_policy(trained["settings"], trained["data"], **ARENA, version=version)


def test_the_arena_prints_the_golden_json(tiny_arena: dict[str, Any]) -> None:
    """A refactor changes no decision: every policy's figures equal those pinned before the code moved."""
    assert_matches("arena_tiny", tiny_arena)


def test_every_policy_gets_the_issue_figures_from_the_oracle(tiny_arena: dict[str, Any]) -> None:
    pols = tiny_arena["policies"]
    assert list(pols) == list(POLICIES)
    for name, r in pols.items():
        assert all(k in r for k in KEYS), name
        assert r["regret_vs_oracle"] >= -1e-9 and 0 <= r["safety_violation_rate"] <= 1
        assert r["override_floor"] <= r["override_rate"] + 1e-9
    cur = pols["current"]
    assert cur["gp30_uplift_vs_current"] == 0 and cur["current_deal_share"] == 1
    assert cur["safety_violation_rate"] == 0  # the habitual deal is the baseline itself
    assert cur["oracle_gain_share"] == 0 and cur["acceptance_uplift_vs_current"] == 0
    for r in pols.values():  # the oracle takes each request's truly best: nobody beats it
        assert r["oracle_gain_share"] <= 1 + 1e-9
        assert r["cumulative_reward"] <= r["oracle_cumulative_reward"] + 1e-9
    # the ceiling of a perfect profile: the hidden traits tell the response better than any learner's scorer
    assert pols["latent_informed"]["oracle_gain_share"] > max(pols[p]["oracle_gain_share"] for p in POLICIES[:-1])
    # the tiny world's scorer is weak (trained in seconds): greedy follows it into bad deals; ours starts from
    # each merchant's record, widens its prior where that record shows the scorer's errors, and guards GP30 by
    # the posterior: far safer and ahead of every learner
    ours = pols["risk_aware_ts"]
    others = ("greedy", "epsilon_greedy", "linucb", "vw", "ts")
    assert all(ours["cumulative_reward"] > pols[p]["cumulative_reward"] for p in others)
    assert ours["safety_violation_rate"] < 0.5 * min(pols[p]["safety_violation_rate"] for p in others)
    assert pols["ts"]["conservative_violation_runs"] > 0
    assert len(tiny_arena["curves"]["risk_aware_ts"]) == 40


def _synthetic(seed: int = 0, m: int = 40, n: int = 12, dim: int = 6, days: int = 30) -> ArenaData:
    """Half the variants a little better than a current deal worth 0.5, half much worse; the scorer knows which."""
    rng = np.random.default_rng(seed)
    arms, reward = [], np.zeros((1, m, n + 1))
    for j in range(m):
        true = 0.5 + np.r_[rng.normal(0.1, 0.05, n // 2), rng.normal(-0.3, 0.1, n - n // 2)]
        phi = np.c_[np.ones(n), rng.normal(0, 1.0, (n, dim - 1)) / np.sqrt(dim - 1)]  # scaled as ContextProjector
        pred = pd.DataFrame(
            {
                "score": true + rng.normal(0, 0.05, n),
                "risk": 0.02,
                "uplift": true - 0.5,
                "approval": 0.8,
                "conversion": 0.1,
                "p_override": 0.1,
            }
        )
        variants = pd.DataFrame({"type": ["safe"] * 6 + ["hybrid"] * 6, "category_id": "food", "focus": "primary"})
        current = {"score": 0.5, "risk": 0.02, "uplift": 0.0, "approval": 0.8, "conversion": 0.1, "p_override": 0.1}
        cands = Candidates.from_frames(variants, pred)
        arms.append(MerchantArms(variants, pred, cands, phi, np.r_[1.0, np.zeros(dim - 1)], current, 0.1, 100.0))
        reward[0, j] = np.r_[true, 0.5]
    truth = {
        "reward": reward,
        "expected_uplift": reward - 0.5,
        "expected_gp30": 1 + reward,
        "approval_prob": np.full_like(reward, 0.8),
        "conversion": np.full_like(reward, 0.1),
        "override_prob": np.full_like(reward, 0.1),
    }
    return ArenaData([f"m{j}" for j in range(m)], arms, truth, np.full(m, 0.5), days, dim, n)


def test_the_gate_banks_budget_first_then_gains_over_the_current_deal() -> None:
    data = _synthetic()
    res = arena(data, Settings(), rounds=1000, seeds=[0, 1], policies=("current", "risk_aware_ts"))
    p = res["policies"]
    assert (
        p["risk_aware_ts"]["conservative_violation_runs"] == 0 and p["risk_aware_ts"]["worst_checkpoint_ratio"] >= 0.9
    )
    assert p["risk_aware_ts"]["cumulative_reward"] > 1.03 * p["current"]["cumulative_reward"]
    assert res["curves"]["risk_aware_ts"][0] == pytest.approx(res["curves"]["current"][0], rel=0.05)  # day 1: banking


def test_runs_are_paired_and_reproducible() -> None:
    data = _synthetic(seed=1)
    s = Settings()
    a = run_policy(data, make_policy("risk_aware_ts", data.dim, s, 5), 600, seed=5)
    b = run_policy(data, make_policy("risk_aware_ts", data.dim, s, 5), 600, seed=5)
    c = run_policy(data, make_policy("greedy", data.dim, s, 5), 600, seed=5)
    np.testing.assert_array_equal(a["chosen"], b["chosen"])
    np.testing.assert_array_equal(a["merchant"], c["merchant"])  # every policy meets the same requests
    assert summarize(data, a, 0.1) == summarize(data, b, 0.1)


def test_unknown_policy_and_bad_sizes_are_user_errors() -> None:
    data = _synthetic()
    with pytest.raises(DataError, match="unknown policies nope"):
        arena(data, Settings(), 10, [0], ("nope",))
    with pytest.raises(DataError, match="at least one round"):
        arena(data, Settings(), 0, [0], ("current",))


def test_the_arena_replays_a_seeded_subsample_of_the_heldout_merchants(trained: dict[str, Any]) -> None:
    """``--merchants N`` (the memo's scale holds 8,000 held-out merchants): N of them, the same N on every run."""
    ids = [f"m{i:05d}" for i in range(50)]
    pick = workflows.subsample(ids, 7)
    assert pick == workflows.subsample(list(reversed(ids)), 7) == sorted(pick) and len(set(pick)) == 7
    assert set(pick) <= set(ids) and workflows.subsample(ids, None) == ids == workflows.subsample(ids, 50)
    s, data, version = trained["settings"], trained["data"], trained["report"]["version"]
    a, meta = workflows.arena_data(s, data, 20, version, latent_reference=False, records=False, merchants=4)
    heldout = ModelRegistry(s).load_profile(version).meta["heldout_merchants"]
    assert meta["merchants"] == len(a.merchants) == 4 < meta["heldout_merchants"] == len(heldout)
    assert a.merchants == workflows.subsample(sorted(heldout), 4)
    with pytest.raises(DataError, match="merchants must be positive"):
        workflows.simulate_policy(s, data, rounds=10, merchants=0, version=version)


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_simulate_policy_cli_prints_the_issue_keys(trained: dict[str, Any]) -> None:
    env = {**os.environ, "AIDG_HOME": str(trained["settings"].home)}
    cmd = [sys.executable, "-m", "aidg.cli", "simulate-policy", "--data", str(trained["data"])]
    ok = subprocess.run(
        [*cmd, "--rounds", "300", "--days", "20", "--policies", "current,vw,risk_aware_ts", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert set(report["policies"]) == {"current", "vw", "risk_aware_ts"}
    assert all(k in report["policies"]["vw"] for k in KEYS)
    bad = subprocess.run(
        [*cmd, "--rounds", "10", "--policies", "current,bogus"], capture_output=True, text=True, env=env, timeout=300
    )
    assert bad.returncode == 2 and "unknown policies bogus" in bad.stderr and "Traceback" not in bad.stderr


def test_the_arena_report_shows_a_table_and_a_plot(tmp_path: Path) -> None:
    from rich.console import Console

    from aidg.demo.run import show_arena

    data = _synthetic()
    res = arena(data, Settings(), rounds=300, seeds=[0], policies=("current", "greedy", "risk_aware_ts"))
    res.update(rounds=300, days=data.days, seeds=1, merchants=len(data.merchants))
    console = Console(record=True, width=200)
    png = show_arena(res, console, tmp_path / "arena.png")
    text = console.export_text()
    assert all(p in text for p in ("current", "greedy", "risk_aware_ts", "GP30 vs current"))
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
