"""The membership-inference audit of the DP model (`aidg audit-privacy`): does a model give away who trained it?

The same data, split and seed train the profile twice, once with differential
privacy (:mod:`aidg.privacy.dp`, the merchant as the unit) and once without; the
deal scorer trains on each profile. Neither is registered: the audit measures,
it does not ship (``aidg train --dp`` registers the DP model, the same run as here).

**Attack** (loss-based, Yeom et al. 2018). A model fits its training merchants
better than merchants it never saw, so a low loss hints "member". For each
objective the DP run trains (deal-history uplift, override type, approval, the
fusion's future uplift) every merchant's examples, built exactly as training
builds them (training merchants: the training examples; held-out merchants:
examples drawn the same way), get their loss ``ℓ``; per objective ``o`` and
merchant ``m``::

    L_o(m)   = mean of ℓ over m's examples of objective o
    z_o(m)   = (L_o(m) − mean_m' L_o(m')) / std_m' L_o(m')       (over train and held-out merchants)
    score(m) = − mean_o z_o(m)                                    (the objectives m has examples in)

``mia_auc`` is the ROC AUC of ``score`` separating training from held-out
merchants (0.5: no better than a coin; ε-DP caps any attack's AUC at
``e^ε / (1 + e^ε)`` ≈ 0.73 for ε = 1, whatever the attack). Each objective's own
AUC is reported beside (``mia_auc_by_objective``).

**Utility.** ``reward_spearman``: Spearman of the scorer's composite score
against the simulator's true expected reward over every held-out merchant's
candidates (as :func:`aidg.training.scorer_evaluation.decision_metrics` computes it), and
``dp_utility_cost = (spearman_nondp − spearman_dp) / |spearman_nondp|``.
Data without the simulator's truth gets the attack but no utility figures.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from aidg.config import Settings
from aidg.features.candidates import CandidateGenerator
from aidg.features.context import FeatureContext
from aidg.features.panel import cutoff_seconds
from aidg.inference.profile_model import ProfileModel
from aidg.inference.scoring import score_candidates
from aidg.inference.snapshot import snapshot
from aidg.progress import Progress, no_progress
from aidg.sim.storage import load_data_folder
from aidg.training.branches import example_losses
from aidg.training.data import without_excluded
from aidg.training.presets import dp_config, scorer_options, train_options
from aidg.training.profile import (
    TrainOptions,
    branch_examples,
    downstream_examples,
    fusion_example_losses,
    train_profile,
)
from aidg.training.scorer import train_scorer
from aidg.training.scorer_evaluation import decision_metrics

MIA_AUC_LIMIT = 0.55  # the privacy issue's acceptance: the DP model's attack AUC at most this
UTILITY_COST_LIMIT = 0.05  # … and at most 5 % of the non-DP scorer's reward Spearman lost
BRANCH_OBJECTIVES = {"deal_history": "deal", "override": "override", "sequence": "sequence"}  # → ProfileModel field



def objective_losses(pm: ProfileModel, tables: dict[str, pd.DataFrame], options: TrainOptions) -> pd.DataFrame:
    """Every example's loss under each objective the DP run trains, for training and held-out merchants.

    Returns:
        One row per example: ``objective``, ``merchant`` (code), ``member`` (a training merchant), ``loss``.
    """
    ctx = FeatureContext.from_tables(tables, pd.Timestamp(pm.meta["as_of"]))
    tr = ctx.codes([m for m in pm.meta["train_merchants"] if m in ctx.merchant_code.index])
    te = ctx.codes([m for m in pm.meta["heldout_merchants"] if m in ctx.merchant_code.index])
    cut = cutoff_seconds(ctx.as_of)
    frames = []
    with torch.inference_mode():
        for name, field in BRANCH_OBJECTIVES.items():
            ex_tr, ex_te = branch_examples(ctx, name, tr, te, cut, options.budget.per_merchant, options.seed)
            enc, head = getattr(pm, field), pm.heads[name]
            for ex, member in ((ex_tr, True), (ex_te, False)):
                loss = example_losses(name, enc, head, ctx, ex, private=pm.is_private())
                frames.append(pd.DataFrame({"objective": name, "merchant": ex.m, "member": member, "loss": loss}))
        start = ctx.as_of - pd.Timedelta(days=int(pm.meta.get("window_days", options.window_days)))
        parts = pm.compute_parts(ctx, start, seed=options.seed)
        for codes, member in ((tr, True), (te, False)):
            ex = downstream_examples(ctx, codes, cutoff_seconds(start), cut)
            loss = fusion_example_losses(pm, parts, ex)
            frames.append(pd.DataFrame({"objective": "fusion", "merchant": ex.m, "member": member, "loss": loss}))
    return pd.concat(frames, ignore_index=True)


def _auc(member: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(member, score)) if len(set(member.tolist())) == 2 else float("nan")


def loss_attack(losses: pd.DataFrame) -> dict[str, Any]:
    """The loss-based attack on :func:`objective_losses`' rows: the combined AUC and each objective's (formulas above).

    >>> rows = pd.DataFrame({"objective": ["a"] * 4, "merchant": [0, 1, 2, 3],
    ...                      "member": [True, True, False, False], "loss": [0.1, 0.2, 0.3, 0.4]})
    >>> loss_attack(rows)["auc"]
    1.0
    """
    per = losses.groupby(["objective", "merchant"], sort=True).agg(loss=("loss", "mean"), member=("member", "first"))
    g = per.groupby(level="objective")["loss"]
    per["z"] = (per["loss"] - g.transform("mean")) / g.transform("std").replace(0.0, 1.0).fillna(1.0)
    by_objective = {
        str(o): _auc(f["member"].to_numpy(bool), -f["loss"].to_numpy(float)) for o, f in per.groupby(level="objective")
    }
    merchant = per.groupby(level="merchant").agg(z=("z", "mean"), member=("member", "first"))
    return {
        "auc": _auc(merchant["member"].to_numpy(bool), -merchant["z"].to_numpy(float)),
        "auc_by_objective": by_objective,
        "train_merchants": int(merchant["member"].sum()),
        "heldout_merchants": int((~merchant["member"].astype(bool)).sum()),
    }


def reward_spearman(
    pm: ProfileModel,
    tables: dict[str, pd.DataFrame],
    settings: Settings,
    world: Any,
    scale: str,
    seed: int,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Train the deal scorer on ``pm``'s profiles, then its decision metrics on the held-out merchants' candidates.

    Returns:
        :func:`aidg.training.scorer_evaluation.decision_metrics`' figures (``reward_spearman`` first).
    """
    as_of = pd.Timestamp(pm.meta["as_of"])
    ctx = FeatureContext.from_tables(tables, as_of)
    tr = ctx.codes([m for m in pm.meta["train_merchants"] if m in ctx.merchant_code.index])
    te = ctx.codes([m for m in pm.meta["heldout_merchants"] if m in ctx.merchant_code.index])
    scorer, _, _ = train_scorer(pm, ctx, tr, te, scorer_options(settings, scale, seed), settings.reward, progress)
    pm.scorer = scorer
    scorer.use_reward(settings.reward)
    snap = snapshot(pm, ctx, as_of, seed=seed)
    gen = CandidateGenerator(tables["merchants"], tables["deals"], settings.candidates)
    cand = gen.generate_many(ctx.merchant_ids[te], as_of, settings.bandit.n_candidates)
    t = score_candidates(scorer, ctx, snap, cand).table
    from aidg.sim.oracle import Oracle

    truth = Oracle(world, settings.reward).evaluate(t.merchant_id.to_numpy(), t, at=as_of)
    frame = t.assign(true_reward=truth.reward.to_numpy(), true_approval=truth.approval_prob.to_numpy())
    return decision_metrics(frame)


def utility_cost(spearman_nondp: float | None, spearman_dp: float | None) -> float | None:
    """``(s_nondp − s_dp) / |s_nondp|``: the share of the scorer's reward Spearman that DP costs (None: unknown).

    >>> round(utility_cost(0.5, 0.48), 3)
    0.04
    """
    if spearman_nondp is None or spearman_dp is None or spearman_nondp == 0:
        return None
    return (spearman_nondp - spearman_dp) / abs(spearman_nondp)


def _span(say: Progress, label: str, lo: float, hi: float) -> Progress:
    return lambda s, f: say(f"{label}: {s}", lo + (hi - lo) * f)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (an AUC without both classes, say) as None: strict JSON."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return _finite(float(obj))
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


def audit_privacy(
    settings: Settings,
    data: Path,
    scale: str = "small",
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train the profile with and without DP on ``data``, attack both, compare their scorers; the audit's report.

    Keys: ``dp_epsilon``, ``dp_delta`` (the DP run's account), ``mia_auc_dp``, ``mia_auc_nondp``,
    ``dp_utility_cost``, ``reward_spearman_dp`` / ``_nondp``, ``mia_auc_by_objective``, ``acceptance``
    (each of the issue's criteria), the privacy account's parts, merchant counts and seconds per stage.
    """
    t0 = time.perf_counter()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    say = progress or no_progress
    tables, as_of, world = load_data_folder(data)
    tables, n_excluded = without_excluded(settings, tables)  # the same merchants `aidg train` may use
    seconds: dict[str, float] = {}
    runs: dict[str, dict[str, Any]] = {}
    dp_cfg = dp_config(settings)
    for i, (name, dp) in enumerate((("nondp", None), ("dp", dp_cfg))):
        options = train_options(settings, scale, seed, dp=dp)
        t = time.perf_counter()
        pm, metrics, split = train_profile(
            tables,
            as_of,  # type: ignore[arg-type]  # None: the data's own latest date
            options,
            _span(say, name, 0.5 * i, 0.5 * i + 0.27),
        )
        seconds[f"{name}_profile"] = time.perf_counter() - t
        t = time.perf_counter()
        say(f"{name}: membership inference, the loss of every merchant's examples", 0.5 * i + 0.27)
        attack = loss_attack(objective_losses(pm, tables, options))
        seconds[f"{name}_attack"] = time.perf_counter() - t
        t = time.perf_counter()
        utility: dict[str, float] = {}
        if world is not None:
            span = _span(say, f"{name} scorer", 0.5 * i + 0.3, 0.5 * i + 0.5)
            utility = reward_spearman(pm, tables, settings, world, scale, seed, span)
        seconds[f"{name}_scorer"] = time.perf_counter() - t
        runs[name] = {"pm": pm, "attack": attack, "utility": utility, "split": split, "metrics": metrics}
    privacy = runs["dp"]["pm"].meta["privacy"]
    sp_dp = runs["dp"]["utility"].get("reward_spearman")
    sp_nondp = runs["nondp"]["utility"].get("reward_spearman")
    cost = utility_cost(sp_nondp, sp_dp)
    n_train = len(runs["dp"]["split"].train)
    auc_dp, auc_nondp = runs["dp"]["attack"]["auc"], runs["nondp"]["attack"]["auc"]
    seconds["total"] = time.perf_counter() - t0
    say("done", 1.0)
    report = {
        "data": str(data),
        "scale": scale,
        "seed": seed,
        "dp_epsilon": privacy["epsilon"],
        "dp_delta": privacy["delta"],
        "mia_auc_dp": _finite(auc_dp),
        "mia_auc_nondp": _finite(auc_nondp),
        "dp_utility_cost": _finite(cost),
        "reward_spearman_dp": _finite(sp_dp),
        "reward_spearman_nondp": _finite(sp_nondp),
        "mia_auc_by_objective": {k: v["attack"]["auc_by_objective"] for k, v in runs.items()},
        "decision_metrics": {k: v["utility"] for k, v in runs.items()},
        "acceptance": {
            "epsilon_at_most_target": privacy["epsilon"] <= dp_cfg.epsilon,
            # n: every merchant in the data (training and held out), as the issue counts it
            "delta_at_most_1_over_10n": privacy["delta"] <= 1.0 / (10 * privacy.get("merchants_in_data", n_train)),
            f"mia_auc_dp_at_most_{MIA_AUC_LIMIT}": auc_dp <= MIA_AUC_LIMIT,
            f"utility_cost_at_most_{UTILITY_COST_LIMIT}": None if cost is None else cost <= UTILITY_COST_LIMIT,
        },
        "privacy": {k: privacy[k] for k in ("noise_multiplier", "max_grad_norm", "accountant", "unit", "parts")},
        "not_private": privacy["not_private"],
        "train_merchants": n_train,
        "heldout_merchants": len(runs["dp"]["split"].heldout),
        "attacked_merchants": {
            k: {"train": v["attack"]["train_merchants"], "heldout": v["attack"]["heldout_merchants"]}
            for k, v in runs.items()
        },
        "excluded_merchants": n_excluded,
        "profile_metrics": {
            k: {m: x for m, x in v["metrics"].items() if isinstance(x, int | float)} for k, v in runs.items()
        },
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    return dict(_json_safe(report))
