"""The audit's membership-inference attacks on losses whose answer is known: the likelihood-ratio attack sees
through merchants that are hard for every model, where the plain loss attack cannot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.compliance.membership import lira_attack, loss_attack, shadow_halves


def _rows(loss: np.ndarray, member: np.ndarray, objective: str = "fusion") -> pd.DataFrame:
    n = len(loss)
    return pd.DataFrame({"objective": objective, "merchant": np.arange(n), "member": member, "loss": loss,
                         "merchant_id": [f"m{i}" for i in range(n)]})  # fmt: skip


def _world(leak: float, n: int = 400, refs: int = 4, seed: int = 0) -> tuple[pd.DataFrame, list]:
    """Merchants of very different difficulty (log-loss spread 1.0); the audited model lowers its members' log
    loss by ``leak``; each reference model lowers the log loss of the merchants it trained on by as much."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 1.0, n)
    member = rng.random(n) < 0.5
    target = _rows(np.exp(difficulty - leak * member + rng.normal(0, 0.1, n)), member)
    references = []
    for half in shadow_halves([f"m{i}" for i in range(n)], refs, seed + 1):
        inside = np.array([f"m{i}" in half for i in range(n)])
        rows = _rows(np.exp(difficulty - leak * inside + rng.normal(0, 0.1, n)), member)
        references.append((rows, frozenset(np.flatnonzero(inside).tolist())))
    return target, references


def test_lira_finds_members_the_loss_attack_misses() -> None:
    target, references = _world(leak=0.3)
    assert abs(loss_attack(target)["auc"] - 0.5) < 0.1  # difficulty hides the leak from a global threshold
    lira = lira_attack(target, references)
    assert lira["auc"] > 0.85 and lira["references"] == 4 and lira["merchants"] == 400


def test_lira_stays_a_coin_on_a_model_that_learnt_nothing_about_its_members() -> None:
    target, references = _world(leak=0.0)
    assert abs(lira_attack(target, references)["auc"] - 0.5) < 0.08


def test_shadow_halves_leave_every_merchant_out_of_some_reference_model() -> None:
    ids = [f"m{i}" for i in range(101)]
    for k in (1, 2, 3, 4):
        sets = shadow_halves(ids, k, seed=3)
        assert len(sets) == k
        if k >= 2:
            assert all(any(m not in s for s in sets) for m in ids)
    with pytest.raises(ValueError, match="at least one reference"):
        shadow_halves(ids, 0, seed=3)
    with pytest.raises(ValueError, match="at least one reference"):
        lira_attack(_rows(np.ones(3), np.array([True, False, True])), [])
