"""The conservative gate keeps cumulative reward above (1 − α) × the current system's, and lets good policies play."""

from __future__ import annotations

import numpy as np
import pytest

from aidg.errors import DataError, NotFoundError
from aidg.policy.bandit import RiskAwareThompsonSampling
from aidg.policy.conservative import ConservativeGate


def _run(policy_mean: float, rounds: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, ConservativeGate]:
    """A policy whose rewards average ``policy_mean`` (baseline: 1.0), its lcb one noise-sd under; 30-round delay."""
    rng = np.random.default_rng(seed)
    gate = ConservativeGate(alpha=0.1)
    ours, base, pending = [], [], []
    for t in range(rounds):
        b = 1.0
        lcb = policy_mean - 0.3
        if gate.allows(lcb, b):
            r = policy_mean + rng.normal(0, 0.1)
            gate.record(f"d{t}", "policy", lcb, b)
            pending.append((t + 30, f"d{t}", r))
        else:
            r = b
            gate.record(f"d{t}", "baseline", b, b)
        while pending and pending[0][0] <= t:
            _, d, rr = pending.pop(0)
            gate.settle(d, rr)
        ours.append(r)
        base.append(b)
    return np.cumsum(ours), np.cumsum(base), gate


def test_a_bad_policy_never_pushes_cumulative_reward_under_the_bound() -> None:
    ours, base, gate = _run(policy_mean=0.5)
    assert (ours >= 0.9 * base - 1e-9).all()
    assert gate.refused > 0


def test_a_good_policy_plays_most_rounds() -> None:
    ours, base, gate = _run(policy_mean=1.3)
    assert gate.refused < 0.05 * gate.rounds
    assert ours[-1] > 1.2 * base[-1]


def test_settling_is_idempotent_and_checked() -> None:
    g = ConservativeGate(0.1)
    g.record("x", "policy", 0.2, 1.0)
    assert g.settle("x", 1.0) and not g.settle("x", 1.0)
    assert g.budget == pytest.approx(1.0 - 0.9)
    with pytest.raises(NotFoundError, match="no policy round 'y'"):
        g.settle("y", 1.0)
    with pytest.raises(DataError, match="share in"):
        ConservativeGate(alpha=1.5)
    with pytest.raises(DataError, match="'policy' or 'baseline'"):
        g.record("z", "rep", 1.0, 1.0)


def test_lower_bound_tightens_with_data() -> None:
    ts = RiskAwareThompsonSampling(4, seed=0)
    phi = np.array([[1.0, 0.0, 0.0, 0.0]])
    wide = ts.lower_bound(phi, np.array([0.5]))[0]
    for i in range(50):
        ts.register(f"d{i}", phi[0], 0.5, {"approval": 0.5, "conversion": 0.1, "gp30_uplift": 0.0, "override": 0.0})
        ts.update_params(f"d{i}", "approval", 0.5)
    assert wide < ts.lower_bound(phi, np.array([0.5]))[0] < 0.5 + 1e-9
