"""The promotion gate: a challenger leaves shadow only if its DR lower bound beats the champion's.

In shadow the challenger scored every request the champion served and chose
its own deal (``aidg_shadow``). On those logged decisions:

* the reward of a decision is the memo's composite reward of the parts
  observed so far, the logging scorer's predictions standing in for parts not
  yet in (the stream workers' convention, :func:`aidg.policy.bandit.join_part`);
  only decisions with both their approval and override answered count;
* the champion's value is the mean logged reward (it is the logging policy):
  its percentile-bootstrap lower bound;
* the challenger's value is doubly robust (:func:`aidg.policy.ope.dr`) with
  its own predicted rewards as the reward model and its choice as a
  deterministic target policy: ``q̂(x, c) + 1[c = a] / p · (r − q̂(x, a))``.

The gate passes when the challenger's lower bound ≥ the champion's; a refusal
says by how much it fell short.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aidg.config import Settings
from aidg.decisionlog.rollout import ShadowRow
from aidg.decisionlog.schema import PARTS
from aidg.policy.ope import bootstrap_interval, dr
from aidg.reward import composite_reward

N_BOOTSTRAP = 500


def realised_reward(row: ShadowRow, settings: Settings) -> float:
    v = {k: row.parts.get(k, row.predicted[k]) for k in PARTS}
    return float(composite_reward(v["gp30_uplift"], v["approval"], v["conversion"], v["override"], 1.0,
                                  settings.reward))  # fmt: skip


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
    est = dr(r, a, p, pi, q, alpha=alpha, n_bootstrap=N_BOOTSTRAP, seed=seed)
    lo_h, _ = bootstrap_interval(r, alpha, N_BOOTSTRAP, seed)
    ch_lo = float(est.low)
    passed = ch_lo >= lo_h
    out: dict[str, Any] = {
        "passed": bool(passed), "n": n, "challenger_value": round(float(est.value), 5),
        "challenger_lower": round(ch_lo, 5), "champion_value": round(float(r.mean()), 5),
        "champion_lower": round(float(lo_h), 5), "shortfall": round(max(lo_h - ch_lo, 0.0), 5),
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
