"""Differential privacy with the merchant as the unit: the accountant, merchant-level clipping, DP-SGD, the DP
profile (its account in the manifest, the graph branch dropped) and the membership-inference audit."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from aidg.config import Settings
from aidg.errors import DataError
from aidg.features.geo import CITY_DIM, SEASON_DIM
from aidg.privacy.dp import (
    DPConfig,
    DPRun,
    PrivacyBudget,
    clipped_sum,
    dp_fit,
    dp_mean_std,
    sgd_part,
    statistic_part,
)
from aidg.sim import World, simulate
from aidg.sim.storage import save_world


def _linear_problem(n_merchants: int, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_merchants * rows, 4)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5, 1.0], np.float32)).astype(np.float32)
    return x, y, np.repeat(np.arange(n_merchants), rows)


def _mse(model: nn.Module, x: np.ndarray, y: np.ndarray) -> Any:
    def loss(idx: np.ndarray) -> torch.Tensor:
        return nn.functional.mse_loss(model(torch.from_numpy(x[idx]))[:, 0], torch.from_numpy(y[idx]))

    return loss


def test_the_accountant_meets_the_target_and_spends_more_with_less_noise() -> None:
    groups = np.repeat(np.arange(1600), 2)
    parts = [sgd_part(k, groups, 64, 2.0) for k in ("a", "b")] + [statistic_part("stats", 4.0)]
    assert parts[0].sample_rate == pytest.approx(0.04) and parts[0].steps == 50
    cfg = DPConfig(epsilon=1.0)
    delta = cfg.resolve_delta(1600)
    assert delta == pytest.approx(1 / 16_000)
    budget = PrivacyBudget.calibrate(parts, cfg, delta)
    assert 0.98 <= budget.epsilon <= 1.0
    sigma = budget.noise_multiplier
    assert PrivacyBudget.spend(parts, 0.9 * sigma, delta) > 1.0 > PrivacyBudget.spend(parts, 1.1 * sigma, delta)
    assert PrivacyBudget.spend(parts[:1], sigma, delta) < budget.epsilon  # composition adds up
    assert budget.sigma("stats") == pytest.approx(4.0 * sigma)
    assert budget.summary()["parts"]["a"]["steps"] == 50
    prv = PrivacyBudget.spend(parts, sigma, delta, "prv")  # the tighter accountant agrees within its error
    assert math.isfinite(prv) and prv <= budget.epsilon + 0.02


def test_a_merchant_moves_the_clipped_sum_by_at_most_c_however_many_rows_it_has() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x, y, _ = _linear_problem(101, 1)
    y = y * 100  # large errors: every row's gradient is far above the clip
    params = list(model.parameters())
    loss = _mse(model, x, y)
    heavy, light = np.arange(100), np.array([100])
    c = 1.0

    def flat(ts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.flatten() for t in ts])

    without, _, _ = clipped_sum(params, loss, [light], c)
    with_heavy, norms, _ = clipped_sum(params, loss, [light, heavy], c)
    assert norms[1] > 10 * c
    assert float(torch.linalg.vector_norm(flat(with_heavy) - flat(without))) <= c + 1e-5
    # a single-row merchant moves it by at most C as well
    with_light, _, _ = clipped_sum(params, loss, [heavy, light], c)
    only_heavy, _, _ = clipped_sum(params, loss, [heavy], c)
    assert float(torch.linalg.vector_norm(flat(with_light) - flat(only_heavy))) <= c + 1e-5
    # row-level clipping would let the 100-row merchant move it by far more than C
    rows, _, _ = clipped_sum(params, loss, [np.array([i]) for i in heavy], c)
    assert float(torch.linalg.vector_norm(flat(rows))) > 10 * c


def test_dp_fit_takes_each_merchants_gradient_over_all_its_rows() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x, y, groups = _linear_problem(30, 1)
    groups = np.random.default_rng(1).integers(0, 7, size=len(x))  # uneven rows per merchant
    seen: list[np.ndarray] = []
    base = _mse(model, x, y)

    def loss(idx: np.ndarray) -> torch.Tensor:
        seen.append(np.sort(idx))
        return base(idx)  # type: ignore[no-any-return]

    dp_fit(model, loss, groups, DPRun(0.0, 1.0, 1, 1.0, 1e-3), seed=0)
    assert len(seen) == len(np.unique(groups))
    for idx in seen:
        assert len(set(groups[idx].tolist())) == 1
        assert len(idx) == int((groups == groups[idx[0]]).sum())


def test_dp_fit_learns_a_simple_problem_and_refuses_an_empty_one() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x, y, groups = _linear_problem(400, 3)
    loss = _mse(model, x, y)
    before = float(loss(np.arange(len(x))).detach())
    history = dp_fit(model, loss, groups, DPRun(1.0, 0.25, 150, 1.0, 0.05), seed=0)
    after = float(loss(np.arange(len(x))).detach())
    assert len(history) == 150 and after < 0.25 * before
    with pytest.raises(DataError, match="no training merchants"):
        dp_fit(model, loss, np.zeros(0, np.int64), DPRun(1.0, 0.25, 1, 1.0, 0.05), seed=0)
    with pytest.raises(DataError, match="no merchant"):
        sgd_part("empty", np.zeros(0, np.int64), 64, 1.0)


def test_private_mean_and_deviation_are_close_with_many_merchants() -> None:
    x = np.random.default_rng(0).normal(0.5, 0.8, size=(20_000, 3))
    mean, std = dp_mean_std(x, bound=2.0, noise_multiplier=4.0, seed=0)
    assert np.allclose(mean, 0.5, atol=0.05) and np.allclose(std, 0.8, atol=0.1)


@pytest.fixture(scope="module")
def dp_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    world = simulate("tiny", seed=12)
    out = tmp_path_factory.mktemp("dpworld")
    save_world(world, out)
    return world, out


@pytest.fixture(scope="module")
def dp_profile(dp_world: tuple[World, Path]) -> tuple[Any, dict[str, Any], Any]:
    from aidg.training.presets import dp_config, train_options
    from aidg.training.profile import train_profile

    world, _ = dp_world
    return train_profile(world.tables, world.as_of, train_options(Settings(), "tiny", 0, dp=dp_config(Settings())))


@pytest.mark.slow
def test_a_dp_profile_records_its_account_and_serves_without_the_graph(
    dp_world: tuple[World, Path], dp_profile: tuple[Any, dict[str, Any], Any], tmp_path: Path
) -> None:
    from aidg.features.context import FeatureContext
    from aidg.registry import ModelRegistry

    world, _ = dp_world
    settings = Settings(home=tmp_path / "home")
    pm, metrics, split = dp_profile
    p = pm.meta["privacy"]
    n = len(split.train)
    n_all = len(split.train) + len(split.heldout)  # δ counts every merchant in the data, not only the training ones
    assert p["epsilon"] <= 1.0 and p["delta"] == pytest.approx(1 / (10 * n_all)) and p["unit"] == "merchant"
    assert p["merchants_in_data"] == n_all
    assert p["merchants"] == n and set(p["steps"]) == {
        "deal_history",
        "override",
        "sequence",
        "fusion",
        "fusion_scaler",
    }
    assert metrics["dp_epsilon"] == p["epsilon"] and "graph_edges" not in metrics
    assert {"graph", "sentiment", "geo.seasonality"} <= set(p["not_private"])
    assert pm.sentiment is None and pm.dropped_branches() == {"graph"}

    ctx = FeatureContext.from_tables(world.tables, world.as_of)
    parts = pm.compute_parts(ctx, world.as_of)
    assert not parts["graph"].any() and not parts["sentiment"].any()
    season = parts["geo"][:, CITY_DIM : CITY_DIM + SEASON_DIM]
    assert np.allclose(season, season[0])  # the neutral seasonality, the same for every merchant
    before = pm.profiles(parts)
    with torch.no_grad():  # the served profile does not depend on the graph branch at all
        for q in pm.graph.parameters():
            q.add_(1.0)
    parts_after = pm.compute_parts(ctx, world.as_of)
    assert np.array_equal(before, pm.profiles(parts_after))
    assert np.isfinite(before).all()

    registry = ModelRegistry(settings)
    version = registry.register_profile(pm, {"data": "tiny"}, {"dp_epsilon": p["epsilon"]})
    manifest = json.loads(next((tmp_path / "home" / "mlartifacts").rglob("manifest.json")).read_text())
    assert manifest["privacy"]["epsilon"] == p["epsilon"] and manifest["privacy"]["dropped_branches"] == ["graph"]
    assert registry.load_profile(version).dropped_branches() == {"graph"}


@pytest.mark.slow
def test_one_merchants_data_never_reaches_another_merchants_private_parts(
    dp_world: tuple[World, Path], dp_profile: tuple[Any, dict[str, Any], Any]
) -> None:
    """Removing a merchant leaves every other merchant's DP-trained branch outputs as they were (the rep's override
    habits, counted over the rep's merchants, would change them)."""
    from aidg.features.context import FeatureContext
    from aidg.privacy.consent import drop_merchants

    world, _ = dp_world
    pm = dp_profile[0]
    ov = world.tables["overrides"].merge(world.tables["proposals"][["proposal_id", "merchant_id"]], on="proposal_id")
    busiest = ov.groupby("rep_id").merchant_id.nunique().idxmax()
    gone = str(ov[ov.rep_id == busiest].merchant_id.iloc[0])  # a merchant whose rep edits others too
    full = FeatureContext.from_tables(world.tables, world.as_of)
    less = FeatureContext.from_tables(drop_merchants(world.tables, [gone]), world.as_of)
    a, b = pm.compute_parts(full, world.as_of), pm.compute_parts(less, world.as_of)
    keep = full.codes([m for m in less.merchant_ids])
    for branch in ("deal_history", "override_intent", "sequence", "graph", "sentiment"):
        assert np.allclose(a[branch][keep], b[branch], atol=1e-5), branch
    saved = pm.meta.pop("privacy")
    try:  # the same encoder with the rep's habits: the removed merchant's overrides reach its rep's other merchants
        c, d = pm.compute_parts(full, world.as_of), pm.compute_parts(less, world.as_of)
        assert not np.allclose(c["override_intent"][keep], d["override_intent"], atol=1e-5)
    finally:
        pm.meta["privacy"] = saved


@pytest.mark.slow
def test_the_privacy_audit_reports_every_figure(
    dp_world: tuple[World, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aidg.compliance import audit
    from aidg.training import presets
    from aidg.training.branches import BranchBudget

    def quick_options(
        settings: Settings, scale: str, seed: int, sentiment_full: bool = False, dp: DPConfig | None = None
    ) -> Any:
        opt = presets.train_options(settings, scale, seed, sentiment_full, dp)
        opt.budget, opt.fusion_epochs = BranchBudget(epochs=1, per_merchant=2), 3
        return opt

    # the figures, not their quality: a small budget, and notes without labels (no sentiment fine-tune)
    monkeypatch.setattr(audit, "train_options", quick_options)
    monkeypatch.setattr(
        audit,
        "scorer_options",
        lambda settings, scale, seed: replace(presets.scorer_options(settings, scale, seed), epochs=2, windows=1),
    )
    world, _ = dp_world
    tables = dict(world.tables)
    tables["feedback_notes"] = tables["feedback_notes"].assign(sentiment=None)
    data = tmp_path / "world"
    save_world(World(tables=tables, truth=world.truth, meta=world.meta), data)
    from aidg import workflows

    # the real arena judges both models' decisions (few rounds); one reference model per run for the LiRA attack
    # (the merchants of its half are then scored; `make test`'s budget: the default, 2, is one more training each)
    report = workflows.audit_privacy(Settings(home=tmp_path / "home"), data, scale="tiny", seed=0, references=1,
                                     arena_rounds=300)  # fmt: skip
    keys = ("dp_epsilon", "dp_delta", "mia_auc_dp", "mia_auc_nondp", "dp_utility_cost", "lira_auc_dp",
            "lira_auc_nondp", "dp_oracle_gain_share", "nondp_oracle_gain_share")  # fmt: skip
    for key in (*keys, "reward_spearman_dp", "reward_spearman_nondp"):
        assert isinstance(report[key], float) and math.isfinite(report[key]), key
    for run in ("dp", "nondp"):  # the audit's share is the arena's risk_aware_ts share on the held-out merchants
        assert report["decisions"][run]["oracle_gain_share"] == report[f"{run}_oracle_gain_share"]
        assert report["decisions"][run]["rounds"] == 300 and report["decisions"][run]["merchants"] > 0
        assert set(report["lira_auc_by_objective"][run]) == {"deal_history", "override", "sequence", "fusion"}
    assert report["lira_references"] == 1 and report["seconds"]["dp_lira"] > 0
    pays = report["dp_oracle_gain_share"] >= 0.9 * report["nondp_oracle_gain_share"]
    assert report["acceptance"]["dp_oracle_gain_share_at_least_0.9_of_nondp"] is pays
    n_all = report["train_merchants"] + report["heldout_merchants"]
    assert report["dp_epsilon"] <= 1.0 and report["dp_delta"] <= 1 / (10 * n_all)
    assert report["acceptance"]["delta_at_most_1_over_10n"] is True
    assert 0.0 <= report["mia_auc_dp"] <= 1.0 and 0.0 <= report["mia_auc_nondp"] <= 1.0
    assert set(report["mia_auc_by_objective"]["dp"]) == {"deal_history", "override", "sequence", "fusion"}
    assert report["acceptance"]["epsilon_at_most_target"] is True
    assert json.loads(json.dumps(report, allow_nan=False)) == report  # strict JSON, as `--json` prints it


def test_settings_give_the_dp_config_and_the_cli_refuses_bad_input(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from aidg.training.presets import dp_config, train_options

    s = Settings(privacy={"dp_epsilon": 0.5, "dp_batch_merchants": 32, "dp_max_grad_norm": 2.0})
    cfg = dp_config(s)
    assert (cfg.epsilon, cfg.delta, cfg.batch_merchants, cfg.max_grad_norm) == (0.5, None, 32, 2.0)
    assert train_options(s, "small", 0, dp=cfg).dp == cfg and train_options(s, "small", 0).dp is None
    env = {**os.environ, "AIDG_HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "aidg.cli", "audit-privacy"]
    cases = ([*cli, "--data", str(tmp_path / "nowhere"), "--json"], [*cli, "--data", str(tmp_path), "--scale", "full"],
             [*cli, "--data", str(tmp_path), "--references", "-1"])  # fmt: skip
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for c in cases]
    missing, scale, refs = [(*p.communicate(), p.returncode) for p in procs]  # all three at once
    assert missing[2] == 2 and "does not exist" in missing[1] and missing[0] == ""
    assert scale[2] == 2 and "choose tiny or small" in scale[1]
    assert refs[2] == 2 and "--references" in refs[1]
