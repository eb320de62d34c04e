"""Off-policy evaluation of a log cut before its GP30s landed: complete-case DR against the censoring-aware DR.

A logging policy (softmax of the registered version's score, ``--tau-log``) decides for uniformly drawn held-out
merchants, one decision at a time over ``--cut-day`` days (decision dates uniform). Each decision's approval, the
rep's edit and conversion land within days; its GP30 lands 30 days after the deal *starts*, and merchants start
their deals after different delays: a merchant's delay is exponential with a mean of 2 days for the most
urgent merchant to 22 days for the least (the simulator's hidden ``urgency`` trait, by rank). The log is cut at
``--cut-day``: every GP30 that had not landed by then is missing (about two thirds of them).

A greedier policy (``--tau-eval``) is then valued from that log and compared with its true value (the oracle's
expected reward of its choices, averaged over the held-out merchants):

- ``dr_complete_case``: :func:`aidg.policy.ope.dr` on the decisions whose GP30 landed;
- ``censoring_aware``: :func:`aidg.policy.ope_censored.censored_dr` on every decision, with each merchant's
  start delay estimated from the log itself (an exponential rate per merchant from the starts seen before the
  cut, shrunk to the pooled rate) as the censoring model;
- ``plug_in``: the old promotion gate's convention, DR with the predicted GP30 standing in where it is missing.

Repeated over ``--seeds`` logs (the same merchants, fresh draws). Keys: ``truth`` (the mean over seeds; one
truth per world), ``dr_complete_case_rel_error``, ``censoring_aware_rel_error``, ``plug_in_rel_error`` (mean
absolute relative error over the seeds), ``coverage_90`` (the share of seeds whose censoring-aware 90 % interval
holds the truth), ``landed_share``, per-seed figures under ``seeds``.

    AIDG_HOME=H python bench/ope_censored.py --data W --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ope_sim import heldout_scored, softmax  # noqa: E402

from aidg.policy.ope import dr  # noqa: E402
from aidg.policy.ope_censored import censored_dr  # noqa: E402
from aidg.sim.history import OUTCOME_NOISE  # noqa: E402
from aidg.sim.oracle import Oracle  # noqa: E402

GP30_DAYS = 30.0
FAST_DAYS, SLOW_DAYS = 2.0, 22.0  # mean start delay of the most and the least urgent merchant


def start_delay_means(h: dict[str, Any]) -> np.ndarray:
    """Each held-out merchant's mean start delay (days): urgent merchants start their deals sooner."""
    urgency = Oracle(h["world"], h["settings"].reward).traits(h["ids"]).urgency.to_numpy(float)
    rank = urgency.argsort().argsort() / max(1, len(urgency) - 1)  # 0 least urgent, 1 most
    return np.asarray(SLOW_DAYS - (SLOW_DAYS - FAST_DAYS) * rank)


def estimated_rates(m: np.ndarray, day: np.ndarray, delay: np.ndarray, cut: float, merchants: int) -> np.ndarray:
    """Each merchant's start rate (1/days) from the log: starts seen before the cut over the time at risk,
    shrunk towards the pooled rate by one pseudo-start."""
    started = day + delay <= cut
    exposure = np.where(started, delay, cut - day)
    k = np.bincount(m, weights=started.astype(float), minlength=merchants)
    t = np.bincount(m, weights=exposure, minlength=merchants)
    pooled = k.sum() / max(t.sum(), 1e-9)
    return np.asarray((k + 1.0) / (t + 1.0 / max(pooled, 1e-9)))


def one_log(h: dict[str, Any], means: np.ndarray, decisions: int, cut: float, tau_log: float, tau_eval: float,
            truth: float, seed: int, refit: bool = True) -> dict[str, Any]:  # fmt: skip
    w, k = h["settings"].reward, h["k"]
    score, up, appr, rest = h["score"], h["up"], h["appr"], h["rest"]
    pb, pe = softmax(score, tau_log), softmax(score, tau_eval)
    rng = np.random.default_rng(seed)
    n_m = len(h["ids"])
    m = rng.integers(0, n_m, decisions)
    cum = pb[m].cumsum(1)
    a = np.minimum((rng.random(decisions)[:, None] > cum).sum(1), k - 1)
    day = rng.uniform(0.0, cut, decisions)
    delay = rng.exponential(means[m])
    landed = day + delay + GP30_DAYS <= cut
    shock = np.exp(rng.normal(-(OUTCOME_NOISE**2) / 2, OUTCOME_NOISE, decisions))
    late = w.w_gp30 * ((1 + up[m, a]) * shock - 1)  # the GP30 term, realised with the simulator's noise
    early = w.w_approval * (rng.random(decisions) < appr[m, a]) + rest[m, a]
    q_late = w.w_gp30 * h["uplift_pred"][m]
    q_early = score[m] - q_late
    p = pb[m, a]

    def landed_chance(i: np.ndarray) -> np.ndarray:
        """P(started in time for the GP30 to land) of log rows ``i``, the start rates fitted on those rows (each
        bootstrap sample refits them, as the log's own estimate is fitted on the log)."""
        rate = estimated_rates(m[i], day[i], delay[i], cut, n_m)[m[i]]
        return np.asarray(1.0 - np.exp(-rate * np.maximum(cut - GP30_DAYS - day[i], 0.0)))

    boot = {"alpha": 0.1, "n_bootstrap": 500, "seed": seed}
    cc = dr((early + late)[landed], a[landed], p[landed], pe[m][landed], score[m][landed], **boot)  # type: ignore[arg-type]
    plugged = early + np.where(landed, late, q_late[np.arange(decisions), a])
    plug = dr(plugged, a, p, pe[m], score[m], **boot)  # type: ignore[arg-type]
    ca = censored_dr(early, np.where(landed, late, np.nan), a, p, pe[m], q_early, q_late,
                     landed_prob=landed_chance if refit else landed_chance(np.arange(decisions)),
                     alpha=0.1, n_bootstrap=500, seed=seed)  # fmt: skip

    def rel(v: float) -> float:
        return (v - truth) / abs(truth)

    return {
        "seed": seed, "landed_share": float(landed.mean()),
        "dr_complete_case": cc.value, "censoring_aware": ca.value, "plug_in": plug.value,
        "dr_complete_case_rel_error": rel(cc.value), "censoring_aware_rel_error": rel(ca.value),
        "plug_in_rel_error": rel(plug.value), "censoring_aware_ci90": [ca.low, ca.high],
        "covered": bool(ca.low <= truth <= ca.high),
    }  # fmt: skip


def run(data: Path, decisions: int, seeds: int, cut: float, tau_log: float, tau_eval: float,
        refit: bool = True) -> dict[str, Any]:  # fmt: skip
    t0 = time.perf_counter()
    h = heldout_scored(data)
    means = start_delay_means(h)
    truth = float((softmax(h["score"], tau_eval) * h["true_r"]).sum(1).mean())
    rows = []
    for s in range(seeds):
        rows.append(one_log(h, means, decisions, cut, tau_log, tau_eval, truth, s, refit))
        print(f"[ope_censored] log {s + 1}/{seeds}: complete-case {rows[-1]['dr_complete_case_rel_error']:+.3f}, "
              f"censoring-aware {rows[-1]['censoring_aware_rel_error']:+.3f}", file=sys.stderr)  # fmt: skip

    def mean_abs(key: str) -> float:
        return float(np.mean([abs(r[key]) for r in rows]))

    return {
        "truth": truth, "decisions": decisions, "log_seeds": seeds, "cut_day": cut,
        "merchants": len(h["ids"]), "landed_share": float(np.mean([r["landed_share"] for r in rows])),
        "dr_complete_case_rel_error": mean_abs("dr_complete_case_rel_error"),
        "censoring_aware_rel_error": mean_abs("censoring_aware_rel_error"),
        "plug_in_rel_error": mean_abs("plug_in_rel_error"),
        "censoring_model_in_bootstrap": "refitted" if refit else "fixed",
        "coverage_90": float(np.mean([r["covered"] for r in rows])),
        "seconds": round(time.perf_counter() - t0, 1), "seeds": rows,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the simulated world the version was trained on")
    p.add_argument("--decisions", type=int, default=50_000, help="decisions per log")
    p.add_argument("--seeds", type=int, default=20, help="logs drawn (coverage is counted over them)")
    p.add_argument("--cut-day", type=float, default=60.0, help="the log is cut this many days after it began")
    p.add_argument("--tau-log", type=float, default=0.1, help="logging policy: softmax temperature of the score")
    p.add_argument("--tau-eval", type=float, default=0.05, help="evaluation policy: a greedier softmax")
    p.add_argument("--fixed-censoring-model", action="store_true",
                   help="the bootstrap keeps the log's censoring model (the old, too wide interval)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.decisions < 100 or a.seeds < 1:
        p.error("--decisions must be at least 100 and --seeds at least 1")
    if a.cut_day <= GP30_DAYS:
        p.error(f"--cut-day must exceed {GP30_DAYS:g} (no GP30 could land before that)")
    res = run(a.data, a.decisions, a.seeds, a.cut_day, a.tau_log, a.tau_eval, not a.fixed_censoring_model)
    if a.json:
        print(json.dumps(res))
    else:
        for key, v in res.items():
            if key != "seeds":
                print(f"{key:>28}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
