"""Risk-aware Thompson sampling: learns what the scorer misses, respects risk, handles late and repeated rewards."""

from __future__ import annotations

import numpy as np
import pytest

from aidg.config import BanditSettings, RewardSettings
from aidg.errors import DataError, NotFoundError
from aidg.policy.bandit import RiskAwareThompsonSampling, risk_adjust

D, N = 8, 10
W = RewardSettings()


def _pred(uplift: float) -> dict[str, float]:
    return {"approval": 0.5, "conversion": 0.1, "gp30_uplift": uplift, "override": 0.0}


def test_learns_the_correction_the_scorer_misses() -> None:
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=D)
    ts = RiskAwareThompsonSampling(D, seed=1)
    regret_early, regret_late = [], []
    for t in range(600):
        phi = rng.normal(size=(N, D))
        score = np.zeros(N)  # the scorer sees nothing: all the signal is in the correction
        true_uplift = phi @ w_true * 0.2
        c = ts.select_action(phi, score, np.zeros(N))
        ts.register(f"d{t}", phi[c.index], 0.0, _pred(0.0))
        ts.update_params(f"d{t}", "gp30_uplift", float(true_uplift[c.index] + rng.normal(0, 0.05)))
        (regret_early if t < 50 else regret_late).append(true_uplift.max() - true_uplift[c.index])
    assert np.mean(regret_late[-200:]) < 0.3 * np.mean(regret_early)


def test_only_low_risk_variants_are_eligible_and_none_means_the_safest() -> None:
    ts = RiskAwareThompsonSampling(D, BanditSettings(risk_threshold=0.1))
    phi = np.eye(N, D)
    score = np.linspace(1, 0, N)  # the best-scored variants are the risky ones
    risk = np.array([0.5, 0.4, 0.05, 0.08, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2])
    c = ts.select_action(phi, score, risk)
    assert c.eligible.tolist() == [False, False, True, True] + [False] * 6 and c.index in (2, 3)
    assert not c.fallback and 0 < c.pscore <= 1
    c = ts.select_action(phi, score, np.full(N, 0.5) - np.arange(N) * 0.01)
    assert c.fallback and c.index == N - 1  # the safest
    c = ts.select_action(phi, score, risk, allowed=np.arange(N) != 2)
    assert c.index == 3  # the guard refused variant 2


def test_propensities_of_all_variants_sum_to_one() -> None:
    rng = np.random.default_rng(3)
    ts = RiskAwareThompsonSampling(D, n_propensity=2000, seed=4)
    phi, score = rng.normal(size=(N, D)), rng.normal(0, 0.3, N)
    w = ts.sample_weights(4000)
    wins = np.bincount((score[None] + w @ phi.T).argmax(1), minlength=N) / 4000
    c = ts.select_action(phi, score, np.zeros(N))
    assert c.pscore == pytest.approx(wins[c.index], abs=0.05)
    assert wins.sum() == pytest.approx(1.0)


def test_late_duplicate_and_out_of_order_parts_count_once() -> None:
    phi = np.arange(1, D + 1) / D
    a = RiskAwareThompsonSampling(D)
    a.register("x", phi, 0.2, _pred(0.1))
    assert a.update_params("x", "approval", 1.0)
    b_early = a.b_.copy()
    assert not a.update_params("x", "approval", 1.0)  # the same event again: nothing changes
    assert np.array_equal(a.b_, b_early)
    a.update_params("x", "gp30_uplift", 0.4)  # GP30 lands 30 days later and corrects
    b = RiskAwareThompsonSampling(D)
    b.register("x", phi, 0.2, _pred(0.1))
    b.update_params("x", "gp30_uplift", 0.4)  # the other order
    b.update_params("x", "approval", 1.0)
    np.testing.assert_allclose(a.b_, b.b_)
    np.testing.assert_allclose(a.A_, b.A_)
    r = 0.5 * 0.4 + 0.3 * 1.0 + 0.15 * 0.1
    np.testing.assert_allclose(a.b_, phi * (r - 0.2))
    np.testing.assert_allclose(a.A_, np.eye(D) + np.outer(phi, phi))


def test_a_gp30_that_never_arrives_keeps_the_scorers_prediction() -> None:
    ts = RiskAwareThompsonSampling(D)
    phi = np.ones(D) / D
    ts.register("y", phi, 0.3, _pred(0.2))
    ts.update_params("y", "approval", 0.0)
    expected = 0.5 * 0.2 + 0.3 * 0.0 + 0.15 * 0.1  # predicted uplift and conversion stand in
    np.testing.assert_allclose(ts.b_, phi * (expected - 0.3))


def test_bad_events_are_refused_clearly() -> None:
    ts = RiskAwareThompsonSampling(D)
    with pytest.raises(NotFoundError, match="unknown decision 'z'"):
        ts.update_params("z", "approval", 1.0)
    ts.register("z", np.ones(D), 0.0, _pred(0.0))
    with pytest.raises(DataError, match="unknown reward part 'clicks'"):
        ts.update_params("z", "clicks", 1.0)
    with pytest.raises(DataError, match="finite"):
        ts.update_params("z", "approval", float("nan"))
    with pytest.raises(DataError, match="no variants"):
        ts.select_action(np.zeros((0, D)), np.zeros(0), np.zeros(0))


def test_risk_adjustment_is_monotone() -> None:
    r = np.array([0.5, -0.5])
    adj = risk_adjust(r, np.array([0.2, 0.2]))
    assert adj[0] == pytest.approx(0.4) and adj[1] == pytest.approx(-0.625)
