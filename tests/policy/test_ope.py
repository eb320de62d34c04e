"""Off-policy estimators: equal to Open Bandit Pipeline's on the same log, and right where the answer is known."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from aidg.errors import DataError
from aidg.policy.ope import dr, ips, snips

N, K = 3000, 6


@pytest.fixture(scope="module")
def log() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, 3))
    true_q = 1 / (1 + np.exp(-(x @ rng.normal(size=(3, K)))))  # expected reward of each action
    logits = x @ rng.normal(size=(3, K))
    pb = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # logging policy
    a = np.array([rng.choice(K, p=row) for row in pb])
    r = rng.binomial(1, true_q[np.arange(N), a]).astype(float)
    z = 0.5 * logits + 0.5 * logits[:, ::-1]  # another policy that overlaps the logging one
    pe = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    q_hat = np.clip(true_q + rng.normal(0, 0.05, true_q.shape), 0, 1)
    return {"r": r, "a": a, "p": pb[np.arange(N), a], "pe": pe, "q_hat": q_hat, "true": (pe * true_q).sum(1).mean()}


def test_estimates_equal_open_bandit_pipeline(log: dict[str, np.ndarray]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # obp's own import-time notices
        from obp.ope import DoublyRobust, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting
    dist = log["pe"][:, :, None]
    kw = {"reward": log["r"], "action": log["a"], "pscore": log["p"], "action_dist": dist}
    ours_ips = ips(log["r"], log["a"], log["p"], log["pe"], n_bootstrap=100).value
    ours_snips = snips(log["r"], log["a"], log["p"], log["pe"], n_bootstrap=100).value
    ours_dr = dr(log["r"], log["a"], log["p"], log["pe"], log["q_hat"], n_bootstrap=100).value
    assert ours_ips == pytest.approx(InverseProbabilityWeighting().estimate_policy_value(**kw), abs=1e-6)
    assert ours_snips == pytest.approx(
        SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw), abs=1e-6
    )
    theirs_dr = DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=log["q_hat"][:, :, None])
    assert ours_dr == pytest.approx(theirs_dr, abs=1e-6)


def test_estimates_find_the_true_value_and_intervals_cover_it(log: dict[str, np.ndarray]) -> None:
    for est in (
        ips(log["r"], log["a"], log["p"], log["pe"], n_bootstrap=500),
        snips(log["r"], log["a"], log["p"], log["pe"], n_bootstrap=500),
        dr(log["r"], log["a"], log["p"], log["pe"], log["q_hat"], n_bootstrap=500),
    ):
        assert est.low <= log["true"] <= est.high, est
        assert est.low < est.value < est.high
    d = dr(log["r"], log["a"], log["p"], log["pe"], log["q_hat"], n_bootstrap=500)
    i = ips(log["r"], log["a"], log["p"], log["pe"], n_bootstrap=500)
    assert d.high - d.low < i.high - i.low  # the reward model cuts the variance


def test_bad_logs_are_refused_with_the_reason(log: dict[str, np.ndarray]) -> None:
    r, a, p, pe = log["r"], log["a"], log["p"], log["pe"]
    with pytest.raises(DataError, match="empty"):
        ips(r[:0], a[:0], p[:0], pe[:0])
    with pytest.raises(DataError, match=r"propensities must be in \(0, 1\]"):
        ips(r, a, np.where(np.arange(N) == 5, 0.0, p), pe)
    with pytest.raises(DataError, match="must align"):
        snips(r[:-1], a, p, pe)
    with pytest.raises(DataError, match="probability distribution"):
        ips(r, a, p, pe * 2)
    with pytest.raises(DataError, match="never arrived"):
        ips(np.where(np.arange(N) == 1, np.nan, r), a, p, pe)
    with pytest.raises(DataError, match="shape"):
        dr(r, a, p, pe, log["q_hat"][:, :2])
