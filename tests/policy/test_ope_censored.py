"""The censoring-aware DR: equal to DR on a complete log, unbiased where the GP30 has not landed, refuses bad
input; and the promotion gate uses it by default."""

from __future__ import annotations

import numpy as np
import pytest

from aidg.config import Settings
from aidg.decisionlog.rollout import ShadowRow
from aidg.errors import DataError
from aidg.monitor.gate import evaluate_gate
from aidg.policy.ope import dr
from aidg.policy.ope_censored import censored_dr

K = 4


def _log(n: int, seed: int, late_bias: float) -> dict[str, np.ndarray]:
    """A uniform logging policy over 4 actions; early part 0.1 a, late part 0.2 a + noise; the model predicts the
    late part off by ``late_bias``; the target policy plays action 3 with 0.7, the others with 0.1."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, K, n)
    early = 0.1 * a + rng.normal(0, 0.05, n)
    late = 0.2 * a + rng.normal(0, 0.2, n)
    q_late = np.tile(0.2 * np.arange(K) + late_bias, (n, 1))
    q_early = np.tile(0.1 * np.arange(K), (n, 1))
    pi = np.tile([0.1, 0.1, 0.1, 0.7], (n, 1))
    truth = float((pi[0] * (0.3 * np.arange(K))).sum())
    return {"a": a, "early": early, "late": late, "qe": q_early, "ql": q_late, "pi": pi, "p": np.full(n, 1 / K),
            "truth": np.array(truth)}  # fmt: skip


def test_on_a_complete_log_it_is_doubly_robust_exactly() -> None:
    g = _log(2000, 0, 0.05)
    full = dr(g["early"] + g["late"], g["a"], g["p"], g["pi"], g["qe"] + g["ql"], n_bootstrap=50)
    ours = censored_dr(g["early"], g["late"], g["a"], g["p"], g["pi"], g["qe"], g["ql"], n_bootstrap=50)
    assert ours.value == pytest.approx(full.value, abs=1e-12) and ours.low < ours.value < ours.high


def test_missing_late_parts_are_completed_without_the_models_bias() -> None:
    g = _log(40_000, 1, 0.15)  # the model over-predicts the late part by 0.15
    rng = np.random.default_rng(2)
    landed = rng.random(len(g["a"])) < 0.3  # 70 % not landed yet
    late = np.where(landed, g["late"], np.nan)
    plug = dr(g["early"] + np.where(landed, g["late"], g["ql"][np.arange(len(late)), g["a"]]), g["a"], g["p"],
              g["pi"], g["qe"] + g["ql"], n_bootstrap=50)  # fmt: skip
    ours = censored_dr(g["early"], late, g["a"], g["p"], g["pi"], g["qe"], g["ql"], n_bootstrap=200, alpha=0.1)
    truth = float(g["truth"])
    assert abs(plug.value - truth) > 0.08  # the prediction alone carries the model's bias
    assert abs(ours.value - truth) < 0.01 and ours.low <= truth <= ours.high
    # landing that depends on the row (here: on the action) is what the censoring model's 1/G weights undo
    prob = np.where(g["a"] >= 2, 0.6, 0.15)
    landed2 = rng.random(len(g["a"])) < prob
    ipcw = censored_dr(g["early"], np.where(landed2, g["late"], np.nan), g["a"], g["p"], g["pi"], g["qe"], g["ql"],
                       landed_prob=prob, n_bootstrap=50)  # fmt: skip
    assert abs(ipcw.value - truth) < 0.015


def test_a_censoring_model_fitted_on_the_log_is_refitted_in_every_bootstrap_sample() -> None:
    """Landing depends on the action; the landed share per action is estimated from the log. Given as a function
    of the rows, it is refitted on each bootstrap sample: the value is the same, and the interval is narrower
    than with the estimate held fixed (estimated weights are less variable than known ones) but still holds the
    truth."""
    g = _log(20_000, 3, 0.15)
    rng = np.random.default_rng(4)
    landed = rng.random(len(g["a"])) < np.where(g["a"] >= 2, 0.6, 0.15)
    late = np.where(landed, g["late"], np.nan)
    seen: list[int] = []

    def chance(i: np.ndarray) -> np.ndarray:  # each action's landed share among rows i
        seen.append(len(i))
        a = g["a"][i]
        share = np.bincount(a, weights=landed[i], minlength=K) / np.maximum(np.bincount(a, minlength=K), 1)
        return np.asarray(share[a])

    args = (g["early"], late, g["a"], g["p"], g["pi"], g["qe"], g["ql"])
    refit = censored_dr(*args, landed_prob=chance, n_bootstrap=200, alpha=0.1)
    fixed = censored_dr(*args, landed_prob=chance(np.arange(len(late))), n_bootstrap=200, alpha=0.1)
    assert refit.value == pytest.approx(fixed.value, abs=1e-12) and len(seen) == 1 + 200 + 1
    assert refit.high - refit.low < fixed.high - fixed.low  # the same bootstrap samples (one seed)
    assert refit.low <= float(g["truth"]) <= refit.high
    with pytest.raises(DataError, match="one probability"):
        censored_dr(*args, landed_prob=lambda i: np.full(len(i), 1.5), n_bootstrap=5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"early": np.array([np.nan] * 10)}, "early parts must be finite"),
        ({"p": np.zeros(10)}, "propensities"),
        ({"a": np.full(10, 9)}, "actions must index"),
        ({"ql": np.zeros((10, 3))}, "one row per decision"),
        ({"landed_prob": np.full(10, 1.5)}, "landed_prob"),
    ],
)
def test_bad_input_says_what_to_fix(change: dict[str, np.ndarray], message: str) -> None:
    g = {k: v[:10] if v.ndim else v for k, v in _log(10, 0, 0.0).items()}
    args = {"early": g["early"], "late": g["late"], "a": g["a"], "p": g["p"], "pi": g["pi"], "qe": g["qe"],
            "ql": g["ql"], "landed_prob": None, **change}  # fmt: skip
    with pytest.raises(DataError, match=message):
        censored_dr(args["early"], args["late"], args["a"], args["p"], args["pi"], args["qe"], args["ql"],
                    landed_prob=args["landed_prob"], n_bootstrap=10)  # fmt: skip


def test_the_gate_completes_gp30s_not_landed_yet_by_default() -> None:
    """Logged: uniform over 5 actions; reward parts known at once, GP30 (0.2 a) landed on a third of the rows;
    the logging scorer over-predicts every GP30 by 0.3. The plug-in gate takes the over-prediction as value."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(900):
        a = int(rng.integers(5))
        parts = {"approval": 1.0, "override": 0.0, "conversion": 0.5}
        gp30 = 0.2 * a + rng.normal(0, 0.05)
        if i % 3 == 0:
            parts["gp30_uplift"] = gp30
        predicted = {"approval": 1.0, "override": 0.0, "conversion": 0.5, "gp30_uplift": 0.2 * a + 0.3}
        est = np.array([0.2 * k for k in range(5)])
        rows.append(ShadowRow("d", 4, a, est, 0.2, float(est[a]), predicted, parts))
    s = Settings(rollout={"gate_min_decisions": 50})
    aware = evaluate_gate(rows, s)
    plug = evaluate_gate(rows, Settings(rollout={"gate_min_decisions": 50, "gate_estimator": "plug_in"}))
    w = s.reward
    truth_champion = w.w_gp30 * 0.4 + w.w_approval + w.w_conversion * 0.5  # E[0.2 a] = 0.4 under uniform
    assert aware["estimator"] == "censoring_aware" and aware["gp30_landed"] == 300
    assert abs(aware["champion_value"] - truth_champion) < 0.02
    assert plug["champion_value"] - truth_champion > 0.5 * 2 / 3 * 0.3 * w.w_gp30  # the bias of 600 rows
    assert aware["passed"]  # action 4 is the best: its value shows through the completed rewards
