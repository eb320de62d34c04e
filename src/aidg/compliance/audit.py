"""The membership-inference audit of the DP model (`aidg audit-privacy`): does a model give away who trained it?

The same data, split and seed train the profile twice, once with differential
privacy (:mod:`aidg.privacy.dp`, the merchant as the unit) and once without; the
deal scorer trains on each profile. Neither is registered: the audit measures,
it does not ship (``aidg train --dp`` registers the DP model, the same run as here).

**Attacks** (:mod:`aidg.compliance.membership`): the loss attack (Yeom et al.
2018) and, with ``references`` > 0, offline LiRA against reference models
trained by the same recipe on halves of the data (Carlini et al. 2022).
``mia_auc`` / ``lira_auc`` are their ROC AUCs separating training from held-out
merchants (0.5: no better than a coin; ε-DP caps any attack's AUC at
``e^ε / (1 + e^ε)`` ≈ 0.73 for ε = 1, whatever the attack). Each objective's own
AUC is reported beside (``mia_auc_by_objective``, ``lira_auc_by_objective``).

**Utility.** ``reward_spearman``: Spearman of the scorer's composite score
against the simulator's true expected reward over every held-out merchant's
candidates (as :func:`aidg.training.scorer_evaluation.decision_metrics` computes it), and
``dp_utility_cost = (spearman_nondp − spearman_dp) / |spearman_nondp|``.

**Decisions.** With ``decisions`` (a function of the trained profile with its
scorer: :func:`aidg.workflows.audit_privacy` gives the policy arena), each
model's ``oracle_gain_share`` on the held-out merchants, and the acceptance
``dp_oracle_gain_share ≥ 0.9 × nondp_oracle_gain_share``.
Data without the simulator's truth gets the attacks but no utility figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aidg.compliance.membership import lira_attack, loss_attack, objective_losses, shadow_halves
from aidg.config import Settings
from aidg.features.candidates import CandidateGenerator
from aidg.features.context import FeatureContext
from aidg.inference.profile_model import ProfileModel
from aidg.inference.scoring import score_candidates
from aidg.inference.snapshot import snapshot
from aidg.privacy.consent import drop_merchants
from aidg.privacy.dp import DPConfig
from aidg.progress import Progress, no_progress
from aidg.sim.storage import load_data_folder
from aidg.training.data import without_excluded
from aidg.training.presets import dp_config, scorer_options, train_options
from aidg.training.profile import TrainOptions, train_profile
from aidg.training.scorer import train_scorer
from aidg.training.scorer_evaluation import decision_metrics

MIA_AUC_LIMIT = 0.55  # the privacy issue's acceptance: the DP model's attack AUC at most this
UTILITY_COST_LIMIT = 0.05  # … and at most 5 % of the non-DP scorer's reward Spearman lost
DECISION_SHARE_RATIO = 0.9  # … and the DP model's decisions take ≥ 0.9 × the non-DP model's share of the oracle gain


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


def reference_attack(
    target: ProfileModel,
    target_rows: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    options: TrainOptions,
    make_options: Callable[[int], TrainOptions],
    references: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Offline LiRA (:func:`aidg.compliance.membership.lira_attack`) on ``target``: ``references`` profiles trained
    by ``make_options(seed)`` on halves of the merchants (:func:`~aidg.compliance.membership.shadow_halves`), each
    scoring ``target``'s population on the same examples (``options``: the target's example draw)."""
    say = progress or no_progress
    ids = sorted(tables["merchants"].merchant_id.astype(str))
    code = target_rows.groupby("merchant_id")["merchant"].first()
    as_of = pd.Timestamp(target.meta["as_of"])
    seed = int(target.meta.get("seed", options.seed))
    refs = []
    for j, half in enumerate(shadow_halves(ids, references, seed + 7919)):
        span = _span(say, f"reference model {j + 1}/{references}", j / references, (j + 1) / references)
        ref, _, split = train_profile(drop_merchants(tables, set(ids) - half), as_of, make_options(seed + 1 + j), span)
        rows = objective_losses(ref, tables, options, population=target)
        refs.append((rows, frozenset(code.reindex(sorted(split.train)).dropna().astype(int))))
    return lira_attack(target_rows, refs)


def audit_privacy(
    settings: Settings,
    data: Path,
    scale: str = "small",
    seed: int = 0,
    progress: Progress | None = None,
    references: int = 2,
    decisions: Callable[[ProfileModel], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train the profile with and without DP on ``data``, attack both, compare their scorers; the audit's report.

    ``references``: reference models per run for the likelihood-ratio attack (0: the loss attack only; each costs
    one profile training). ``decisions``: the decision figures of a trained profile with its scorer (the policy
    arena's ``oracle_gain_share`` first); run on both models when the data has the simulator's truth.

    Keys: ``dp_epsilon``, ``dp_delta`` (the DP run's account), ``mia_auc_dp``, ``mia_auc_nondp``,
    ``lira_auc_dp``, ``lira_auc_nondp``, ``dp_utility_cost``, ``reward_spearman_dp`` / ``_nondp``,
    ``dp_oracle_gain_share`` / ``nondp_oracle_gain_share``, ``mia_auc_by_objective``, ``acceptance`` (each of the
    issues' criteria), the privacy account's parts, merchant counts and seconds per stage.
    """
    if references < 0:
        raise ValueError(f"references must be ≥ 0, got {references}")
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
        lo = 0.5 * i
        t = time.perf_counter()
        pm, metrics, split = train_profile(
            tables,
            as_of,  # type: ignore[arg-type]  # None: the data's own latest date
            options,
            _span(say, name, lo, lo + 0.15),
        )
        seconds[f"{name}_profile"] = time.perf_counter() - t
        t = time.perf_counter()
        say(f"{name}: membership inference, the loss of every merchant's examples", lo + 0.15)
        rows = objective_losses(pm, tables, options)
        attack = loss_attack(rows)
        seconds[f"{name}_attack"] = time.perf_counter() - t
        lira: dict[str, Any] = {}
        if references:
            t = time.perf_counter()

            def reference_options(s: int, dp: DPConfig | None = dp) -> TrainOptions:
                return train_options(settings, scale, s, dp=dp)

            span = _span(say, f"{name} likelihood-ratio attack", lo + 0.16, lo + 0.35)
            lira = reference_attack(pm, rows, tables, options, reference_options, references, span)
            seconds[f"{name}_lira"] = time.perf_counter() - t
        t = time.perf_counter()
        utility: dict[str, float] = {}
        decided: dict[str, Any] = {}
        if world is not None:
            span = _span(say, f"{name} scorer", lo + 0.35, lo + 0.42)
            utility = reward_spearman(pm, tables, settings, world, scale, seed, span)
            seconds[f"{name}_scorer"] = time.perf_counter() - t
            if decisions is not None:
                t = time.perf_counter()
                say(f"{name}: the policy arena on the held-out merchants", lo + 0.42)
                decided = decisions(pm)
                seconds[f"{name}_arena"] = time.perf_counter() - t
        runs[name] = {"pm": pm, "attack": attack, "lira": lira, "utility": utility, "decisions": decided,
                      "split": split, "metrics": metrics}  # fmt: skip
    privacy = runs["dp"]["pm"].meta["privacy"]
    sp_dp = runs["dp"]["utility"].get("reward_spearman")
    sp_nondp = runs["nondp"]["utility"].get("reward_spearman")
    cost = utility_cost(sp_nondp, sp_dp)
    n_train = len(runs["dp"]["split"].train)
    auc_dp, auc_nondp = runs["dp"]["attack"]["auc"], runs["nondp"]["attack"]["auc"]
    lira_dp, lira_nondp = (runs[k]["lira"].get("auc") for k in ("dp", "nondp"))
    share_dp, share_nondp = (runs[k]["decisions"].get("oracle_gain_share") for k in ("dp", "nondp"))
    pays = None if share_dp is None or share_nondp is None else share_dp >= DECISION_SHARE_RATIO * share_nondp
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
        "lira_auc_dp": None if lira_dp is None else _finite(lira_dp),
        "lira_auc_nondp": None if lira_nondp is None else _finite(lira_nondp),
        "lira_references": references,
        "dp_oracle_gain_share": None if share_dp is None else _finite(share_dp),
        "nondp_oracle_gain_share": None if share_nondp is None else _finite(share_nondp),
        "dp_utility_cost": _finite(cost),
        "reward_spearman_dp": _finite(sp_dp),
        "reward_spearman_nondp": _finite(sp_nondp),
        "mia_auc_by_objective": {k: v["attack"]["auc_by_objective"] for k, v in runs.items()},
        "lira_auc_by_objective": {k: v["lira"].get("auc_by_objective") for k, v in runs.items()},
        "decisions": {k: v["decisions"] for k, v in runs.items()},
        "decision_metrics": {k: v["utility"] for k, v in runs.items()},
        "acceptance": {
            "epsilon_at_most_target": privacy["epsilon"] <= dp_cfg.epsilon,
            # n: every merchant in the data (training and held out), as the issue counts it
            "delta_at_most_1_over_10n": privacy["delta"] <= 1.0 / (10 * privacy.get("merchants_in_data", n_train)),
            f"mia_auc_dp_at_most_{MIA_AUC_LIMIT}": auc_dp <= MIA_AUC_LIMIT,
            f"lira_auc_dp_at_most_{MIA_AUC_LIMIT}": None if lira_dp is None else lira_dp <= MIA_AUC_LIMIT,
            f"dp_oracle_gain_share_at_least_{DECISION_SHARE_RATIO}_of_nondp": pays,
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
