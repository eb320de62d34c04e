"""Off-policy evaluation against the simulator's truth: DR/IPS/SNIPS on a simulated decision log.

Uses a trained version (``AIDG_HOME``) and its simulated world: every held-out
merchant's 50 variants are scored; a logging policy (softmax of the score,
temperature ``--tau-log``) makes ``--decisions`` decisions over uniformly drawn
held-out merchants, each rewarded with the oracle's expected reward of the
chosen variant plus noise (GP30 uplift realised with the simulator's
log-normal noise, approval drawn as 0/1). A greedier evaluation policy
(``--tau-eval``) is then valued by IPS, SNIPS and DR (reward model: the
scorer's score) from that log alone, and compared with its true value from
the oracle. Issue bar: DR within ± 5 % on 50k decisions.

    AIDG_HOME=... python bench/ope_sim.py --data W [--decisions 50000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aidg.config import load_settings
from aidg.explain.explainer import load_explainer
from aidg.features.candidates import CandidateGenerator
from aidg.features.context import FeatureContext
from aidg.inference.scoring import score_candidates
from aidg.inference.snapshot import snapshot
from aidg.policy.ope import dr, ips, snips
from aidg.registry import ModelRegistry
from aidg.sim.history import OUTCOME_NOISE
from aidg.sim.storage import load_data_folder


def softmax(x: np.ndarray, tau: float) -> np.ndarray:
    z = (x - x.max(1, keepdims=True)) / tau
    e = np.exp(z)
    return np.asarray(e / e.sum(1, keepdims=True))


def heldout_scored(data: Path) -> dict[str, Any]:
    """The registered version's scores and the oracle's truth for every held-out merchant's variants, as
    (merchants, variants) arrays: ``score``, ``uplift_pred``, ``approval_pred``, ``up``, ``appr``, ``rest``
    (the true reward less its GP30 and approval terms), ``true_r``; with ``ids``, ``world``, ``settings``."""
    from aidg.sim.oracle import Oracle

    settings = load_settings()
    pm = ModelRegistry(settings).load_profile()
    scorer = load_explainer(pm, settings).scorer
    tables, _, world = load_data_folder(data)
    if world is None:
        raise SystemExit(f"{data} has no simulator truth: run this on an `aidg simulate` folder")
    at = pd.Timestamp(pm.meta["as_of"])
    ctx = FeatureContext.from_tables(tables, at)
    ids = [m for m in pm.meta["heldout_merchants"] if m in ctx.merchant_code.index]
    cand = CandidateGenerator(tables["merchants"], tables["deals"], settings.candidates).generate_many(
        ids, at, settings.bandit.n_candidates
    )
    k = settings.bandit.n_candidates
    scored = score_candidates(scorer, ctx, snapshot(pm, ctx, at), cand).table
    truth = Oracle(world, settings.reward).evaluate(scored.merchant_id.to_numpy(), scored, at=at)
    w = settings.reward

    def grid(x: Any) -> np.ndarray:
        return np.asarray(x, float).reshape(len(ids), k)

    rest = truth.reward.to_numpy() - w.w_gp30 * truth.expected_uplift - w.w_approval * truth.approval_prob
    return {
        "ids": ids, "world": world, "settings": settings, "k": k, "score": grid(scored.score),
        "uplift_pred": grid(scored.uplift), "approval_pred": grid(scored.approval), "up": grid(truth.expected_uplift),
        "appr": grid(truth.approval_prob), "rest": grid(rest), "true_r": grid(truth.reward),
    }  # fmt: skip


def run(data: Path, decisions: int, tau_log: float, tau_eval: float, seed: int) -> dict[str, Any]:
    h = heldout_scored(data)
    ids, k, score, up, appr, rest, true_r = (h[x] for x in ("ids", "k", "score", "up", "appr", "rest", "true_r"))
    w = h["settings"].reward
    pb, pe = softmax(score, tau_log), softmax(score, tau_eval)
    rng = np.random.default_rng(seed)
    m = rng.integers(0, len(ids), decisions)
    a = np.array([rng.choice(k, p=pb[i]) for i in m])
    shock = np.exp(rng.normal(-(OUTCOME_NOISE**2) / 2, OUTCOME_NOISE, decisions))
    realised_up = (1 + up[m, a]) * shock - 1  # GP30 realised with the simulator's noise, as a ratio to the habit
    approved = rng.random(decisions) < appr[m, a]
    r = w.w_gp30 * realised_up + w.w_approval * approved + rest[m, a]
    true_value = float((pe * true_r).sum(1).mean())
    out: dict[str, Any] = {
        "decisions": decisions,
        "merchants": len(ids),
        "variants": k,
        "true_value": true_value,
        "logging_policy_true_value": float((pb * true_r).sum(1).mean()),
    }
    for est in (
        ips(r, a, pb[m, a], pe[m]),
        snips(r, a, pb[m, a], pe[m]),
        dr(r, a, pb[m, a], pe[m], score[m]),
    ):
        out[est.estimator] = {
            "value": est.value,
            "ci95": [est.low, est.high],
            "relative_error": (est.value - true_value) / abs(true_value),
        }
    out["dr_within_5_percent"] = bool(abs(out["dr"]["relative_error"]) <= 0.05)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the simulated world the version was trained on")
    p.add_argument("--decisions", type=int, default=50_000)
    p.add_argument("--tau-log", type=float, default=0.1, help="logging policy: softmax temperature of the score")
    p.add_argument("--tau-eval", type=float, default=0.05, help="evaluation policy: a greedier softmax")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.decisions < 100:
        p.error("--decisions must be at least 100")
    res = run(a.data, a.decisions, a.tau_log, a.tau_eval, a.seed)
    print(json.dumps(res) if a.json else "\n".join(f"{k:>28}: {v}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
