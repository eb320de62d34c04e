"""The promotion gate: a challenger leaves shadow only if its DR lower bound beats the champion's.

In shadow the challenger scored every request the champion served and chose
its own deal (``aidg_shadow``). On those logged decisions, only decisions with
both their approval and override answered count, and:

* the champion's value is that of the logging policy (its own logged choices);
* the challenger's value is doubly robust with the champion's predicted rewards
  of every variant as the reward model (a challenger's own would let a bad model
  vouch for itself) and its choice as a deterministic target policy;
* both are **censoring-aware** (``rollout.gate_estimator = "censoring_aware"``,
  the default; :func:`aidg.policy.ope_censored.censored_dr`): a decision whose
  GP30 has not landed yet (it lands 30 days after the deal starts) keeps its
  early parts (approval, edit, conversion; a conversion not in yet is
  predicted) and completes the GP30 with the logging scorer's prediction plus
  that prediction's mean error on the decisions whose GP30 did land. A live
  log's recent decisions all lack it, so dropping them would judge the
  challenger on old traffic only, and the prediction alone carries the model's
  bias (``bench/ope_censored.py``: 9 % relative error for the prediction alone,
  under 1 % for the censoring-aware estimate);
* ``"plug_in"`` is the earlier gate: the predicted parts stand in for the
  parts not yet in, uncorrected (:func:`aidg.policy.bandit.join_part`'s
  convention), the champion's value the mean of those rewards.

Each value's lower end is the percentile bootstrap at ``rollout.gate_alpha``
(two-sided). The gate passes when the challenger's lower bound ≥ the
champion's; a refusal says by how much it fell short.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aidg.config import Settings
from aidg.decisionlog.rollout import ShadowRow
from aidg.decisionlog.schema import PARTS
from aidg.policy.ope import bootstrap_interval, dr
from aidg.policy.ope_censored import censored_dr
from aidg.reward import composite_reward

N_BOOTSTRAP = 500


def realised_reward(row: ShadowRow, settings: Settings) -> float:
    v = {k: row.parts.get(k, row.predicted[k]) for k in PARTS}
    return float(composite_reward(v["gp30_uplift"], v["approval"], v["conversion"], v["override"], 1.0,
                                  settings.reward))  # fmt: skip


def _censoring_aware(rows: list[ShadowRow], a: np.ndarray, p: np.ndarray, q: np.ndarray, pi: np.ndarray,
                     settings: Settings, seed: int) -> tuple[float, float, float, float]:  # fmt: skip
    """(challenger value, its lower bound, champion value, its lower bound) with the GP30 completed where it
    has not landed (module docstring)."""
    w, n = settings.reward, len(rows)
    def got(x: ShadowRow, k: str) -> float:
        return x.parts.get(k, x.predicted[k])

    early = np.array([float(composite_reward(0.0, got(x, "approval"), got(x, "conversion"), got(x, "override"), 1.0, w))
                      for x in rows])  # fmt: skip
    late = np.array([w.w_gp30 * x.parts["gp30_uplift"] if "gp30_uplift" in x.parts else np.nan for x in rows])
    q_late = np.zeros_like(q)  # the GP30 part is predicted for the logged action (the logging scorer's)
    q_late[np.arange(n), a] = [w.w_gp30 * x.predicted["gp30_uplift"] for x in rows]
    alpha = settings.rollout.gate_alpha
    ch = censored_dr(early, late, a, p, pi, q - q_late, q_late, alpha=alpha, n_bootstrap=N_BOOTSTRAP, seed=seed)
    logged = np.zeros_like(pi)  # the champion on its own choices: weights 1, its own score as the reward model
    logged[np.arange(n), a] = 1.0
    q_champion = logged * np.array([x.score for x in rows])[:, None]
    h = censored_dr(early, late, a, np.ones(n), logged, q_champion - q_late, q_late, alpha=alpha,
                    n_bootstrap=N_BOOTSTRAP, seed=seed)  # fmt: skip
    return ch.value, ch.low, h.value, h.low


def evaluate_gate(rows: list[ShadowRow], settings: Settings, seed: int = 0) -> dict[str, Any]:
    """The gate's verdict on the shadow records (see the module docstring)."""
    alpha, need = settings.rollout.gate_alpha, settings.rollout.gate_min_decisions
    rows = [r for r in rows if {"approval", "override"} <= r.parts.keys()]
    n = len(rows)
    if n < need:
        return {"passed": False, "n": n, "challenger_lower": None, "champion_lower": None, "shortfall": None,
                "reason": f"the gate needs {need} shadow decisions with their approval and override answered; "
                          f"{n} so far"}  # fmt: skip
    width = max(len(r.estimates) for r in rows)
    r = np.array([realised_reward(x, settings) for x in rows])
    a = np.array([x.logged for x in rows])
    p = np.array([x.pscore for x in rows])
    q = np.zeros((n, width))
    pi = np.zeros((n, width))
    for i, x in enumerate(rows):
        q[i, : len(x.estimates)] = x.estimates
        pi[i, x.choice] = 1.0
    if settings.rollout.gate_estimator == "censoring_aware":
        ch_value, ch_lo, h_value, lo_h = _censoring_aware(rows, a, p, q, pi, settings, seed)
    else:  # the earlier plug-in: predictions stand in for the parts not yet in
        est = dr(r, a, p, pi, q, alpha=alpha, n_bootstrap=N_BOOTSTRAP, seed=seed)
        ch_value, ch_lo, h_value = float(est.value), float(est.low), float(r.mean())
        lo_h = bootstrap_interval(r, alpha, N_BOOTSTRAP, seed)[0]
    passed = ch_lo >= lo_h
    out: dict[str, Any] = {
        "passed": bool(passed), "n": n, "estimator": settings.rollout.gate_estimator,
        "gp30_landed": int(sum("gp30_uplift" in x.parts for x in rows)),
        "challenger_value": round(ch_value, 5), "challenger_lower": round(ch_lo, 5),
        "champion_value": round(h_value, 5), "champion_lower": round(float(lo_h), 5),
        "shortfall": round(max(lo_h - ch_lo, 0.0), 5),
        "agreement": round(float(np.mean(a == np.array([x.choice for x in rows]))), 4),
    }  # fmt: skip
    out["reason"] = (
        f"challenger DR lower bound {ch_lo:.4f} ≥ champion's {lo_h:.4f} on {n} logged decisions"
        if passed
        else f"challenger DR lower bound {ch_lo:.4f} is {lo_h - ch_lo:.4f} under the champion's {lo_h:.4f} "
        f"on {n} logged decisions"
    )
    return out


__all__ = ["evaluate_gate", "realised_reward"]
