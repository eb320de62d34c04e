"""The decision metrics themselves, on frames whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.training.calibration import expected_calibration_error
from aidg.training.scorer_evaluation import decision_metrics


def _frame(score: np.ndarray, reward: np.ndarray, approval: np.ndarray, true_approval: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "merchant_id": np.repeat(["a", "b"], len(score) // 2),
            "score": score,
            "true_reward": reward,
            "approval": approval,
            "true_approval": true_approval,
        }
    )


def test_perfect_ranking_and_calibration_score_one_and_zero() -> None:
    r = np.linspace(-1, 1, 20)
    p = np.linspace(0.05, 0.95, 20)
    m = decision_metrics(_frame(2 * r + 1, r, p, p))
    assert m["reward_spearman"] == pytest.approx(1.0)
    assert m["ndcg_at_5"] == pytest.approx(1.0)
    assert m["approval_ece"] == pytest.approx(0.0)


def test_reversed_ranking_and_overconfidence_are_caught() -> None:
    r = np.linspace(-1, 1, 20)
    p = np.full(20, 0.5)
    m = decision_metrics(_frame(-r, r, np.full(20, 0.9), p))
    assert m["reward_spearman"] == pytest.approx(-1.0)
    assert m["ndcg_at_5"] < 0.5
    assert m["approval_ece"] == pytest.approx(0.4)


def test_ece_weights_bins_by_their_share() -> None:
    prob = np.array([0.15] * 3 + [0.85])
    assert expected_calibration_error(prob, np.array([0.15, 0.15, 0.15, 0.45])) == pytest.approx(0.1)
