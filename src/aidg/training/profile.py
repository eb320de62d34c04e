"""Training the whole merchant-profile encoder: each branch on its own objective, then the fusion.

Objectives (each measured on held-out merchants):

- sentiment extractor: a note's label (positive/negative/neutral) and intensity;
- deal-history encoder: the next deal's GP30 uplift, from earlier deals and its terms;
- override analyzer: the type of the next override on the merchant;
- sequence branch: whether the merchant approves the next proposal;
- graph branch: each deal edge's GP30 uplift from merchant and configuration embeddings;
- fusion (the 512-d profile): GP30 uplift of the deals a merchant ran in the last
  ``window_days`` before the as-of date, from profiles computed as of the start of
  that window (so the targets lie strictly in the profiles' future).

With ``TrainOptions.dp`` the run is differentially private with the merchant as
the privacy unit (:mod:`aidg.privacy.dp`, ``docs/privacy.md``):

- the deal-history, override and sequence branches (with their heads) and the
  fusion (with the uplift head) train by DP-SGD over merchants, all under one
  noise multiplier calibrated so that the composed ε ≤ target at δ;
- the fusion's scaler: columns computed from public data only (geo city
  embeddings and competition, the merchants table's attributes) are standardised
  with statistics over *every* merchant of the data (public, and independent of who
  is in the training set); the DP-trained encoders' outputs (LayerNorm → Linear,
  O(1) by construction) and the empty branches keep the fixed scaler (0, 1);
  the merchants' own-history statistics in ``static`` get a Gaussian-mechanism
  mean and deviation (:func:`aidg.privacy.dp.dp_mean_std`), in the same account;
- not private, hence not used: the graph branch (message passing mixes merchants
  through shared deal-configuration nodes, so no per-merchant clip bounds one
  merchant's influence) is untrained and dropped from the profile; the sentiment
  MiniLM is not fine-tuned (the branch stays neutral, as without labelled notes);
  the geo block's category seasonality (an aggregate of every merchant's deal
  outcomes) is replaced by the neutral profile, and the override steps leave out
  the rep's habits (the rep's overrides on every merchant it edits).

``pm.meta["privacy"]`` records the accounting; the registry copies it into the
version's manifest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from aidg.errors import ConfigError
from aidg.features.context import FeatureContext
from aidg.features.graph import build_graph
from aidg.features.panel import cutoff_seconds
from aidg.features.split import MerchantSplit, split_merchants
from aidg.features.summary import SUMMARY_NAMES
from aidg.inference.batches import predict_batches
from aidg.inference.profile_model import ProfileModel, static_names
from aidg.models.heads import MLPHead
from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
from aidg.models.merchant_profile_encoder import DEFAULT_BRANCHES, MerchantProfileEncoder, ProfileConfig
from aidg.privacy.dp import DPConfig, DPRun, PrivacyBudget, dp_fit, dp_mean_std, sgd_part, statistic_part
from aidg.progress import Progress, no_progress
from aidg.training.branches import BranchBudget, train_branch, train_graph
from aidg.training.examples import Examples, approval_examples, deal_examples, override_examples, uplift_examples
from aidg.training.fitting import fit
from aidg.training.sentiment import train_sentiment

EXAMPLE_BUILDERS: dict[str, Callable[[FeatureContext, np.ndarray, int, int, int], Examples]] = {
    "deal_history": deal_examples,
    "override": override_examples,
    "sequence": approval_examples,
}
Scaler = dict[str, tuple[np.ndarray, np.ndarray]]  # branch → (per-feature mean, deviation)

SEQUENCE_BRANCHES = ("deal_history", "override", "sequence")  # trained on their own objectives
DP_TRAINED_OUTPUTS = ("deal_history", "override_intent", "sequence")  # their profile branches
DP_DROPPED = ("graph",)
# static columns from the merchant's own history (the habitual terms and baseline GP30 of the merchants table
# too: performance figures, kept private to be safe); the rest (category, list price, tenure, city demand) is public
PRIVATE_STATIC = frozenset(
    {"log_deal_count", "habitual_discount", "habitual_duration", "log_baseline_gp30", *SUMMARY_NAMES}
)
NOT_PRIVATE: dict[str, str] = {
    "graph": "not trained and dropped from the profile (zeros): GraphSAGE message passing mixes merchants "
    "through shared deal-configuration nodes, so no per-merchant clip bounds a merchant's influence",
    "sentiment": "MiniLM not fine-tuned: the branch stays neutral (zeros), as when no labelled notes exist",
    "geo.seasonality": "category seasonality aggregates every merchant's deal outcomes: the neutral profile is used",
    "override.rep_habits": "the rep's override mix counts the rep's overrides on every merchant: zeroed in the steps",
    "scorer": "the deal scorer, its baseline and explainers train on the profiles without DP (outside this account)",
}
PUBLIC: dict[str, str] = {
    "geo": "city embeddings (merchant locations) and competition counts (locations, categories) are public",
    "static": "category, list price, tenure and city demand are public; own-history and performance columns "
    "(habitual terms, baseline GP30, history statistics) get a DP scaler",
}


@dataclass
class TrainOptions:
    """What one training run does. Defaults fit the small world in the demo's time budget."""

    seed: int = 0
    holdout: float = 0.2  # share of merchants held out of every objective
    budget: BranchBudget = field(default_factory=lambda: BranchBudget(epochs=3, per_merchant=2))
    sentiment_examples: int = 3000  # memo setting: 100_000 (aidg train --sentiment-full)
    sentiment_epochs: int = 1  # memo setting: 3
    window_days: int = 180  # the fusion's target window before the as-of date
    fusion_epochs: int = 100
    profile_dim: int = 512  # memo: 512-dim merchant profile
    dp: DPConfig | None = None  # differential privacy with the merchant as the unit (None: ordinary training)
    without_branches: tuple[str, ...] = ()  # profile branches left out (Settings.training.without_branches)



def branch_examples(
    ctx: FeatureContext, name: str, train: np.ndarray, test: np.ndarray, cutoff: int, per_merchant: int, seed: int
) -> tuple[Examples, Examples]:
    """Branch ``name``'s training examples (merchant codes ``train``) and held-out ones (``test``) before ``cutoff``."""
    build = EXAMPLE_BUILDERS[name]
    return build(ctx, train, cutoff, per_merchant, seed), build(ctx, test, cutoff, per_merchant, seed + 1)


def downstream_examples(ctx: FeatureContext, codes: np.ndarray, start: int, end: int) -> Examples:
    """Deals of ``codes`` started in [start, end) whose uplift is known by ``end``: the fusion's targets."""
    d = ctx.deals
    ok = (
        np.isin(d.m.to_numpy(), codes)
        & (d.t.to_numpy() >= start)
        & (d.t.to_numpy() < end)
        & (d.t_known.to_numpy() < end)
        & d.gp30_uplift.notna().to_numpy()
    )
    return uplift_examples(ctx, d[ok])


def fusion_loss(
    fusion: MerchantProfileEncoder,
    head: MLPHead,
    tensors: dict[str, torch.Tensor],
    ex: Examples,
    idx: np.ndarray,
    drop: frozenset[str] = frozenset(),
    reduction: str = "mean",
) -> torch.Tensor:
    """The fusion's objective on examples ``idx``: Huber (δ = 0.5) on the uplift predicted from the profile."""
    rows = torch.from_numpy(ex.m[idx])
    prof = fusion({k: v[rows] for k, v in tensors.items()}, drop=drop)
    pred = head(prof, torch.from_numpy(ex.terms[idx]))[:, 0]
    return nn.functional.huber_loss(pred, torch.from_numpy(ex.y[idx]), delta=0.5, reduction=reduction)


def fusion_example_losses(pm: ProfileModel, parts: dict[str, np.ndarray], ex: Examples) -> np.ndarray:
    """Each example's loss under the fusion's objective (eval mode, no gradients)."""
    pm.fusion.eval()
    pm.uplift_head.eval()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in parts.items()}
    drop = pm.dropped_branches()
    return predict_batches(lambda i: fusion_loss(pm.fusion, pm.uplift_head, tensors, ex, i, drop, "none"), len(ex))


def train_fusion(
    parts: dict[str, np.ndarray],
    ex: Examples,
    *,
    profile_dim: int,
    epochs: int,
    seed: int,
    drop: frozenset[str] = frozenset(),
    progress: Progress | None = None,
    scaler: Scaler | None = None,
    dp: DPRun | None = None,
) -> tuple[MerchantProfileEncoder, MLPHead]:
    """Fit the fusion layer and an uplift head on frozen branch embeddings (rows of ``parts`` = merchant codes).

    ``scaler``: the standardisation to use (default: fitted on the rows of ``ex``'s merchants);
    ``dp``: DP-SGD over merchants instead of the ordinary loop.
    """
    torch.manual_seed(seed)
    dims = {k: int(v.shape[1]) for k, v in parts.items()}
    fusion = MerchantProfileEncoder(ProfileConfig(branches=dims, profile_dim=profile_dim))
    head = MLPHead(profile_dim, ex.terms.shape[1], 1, hidden=128)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in parts.items()}
    if scaler is None:
        fitted_on = torch.from_numpy(np.unique(ex.m))
        fusion.fit_scaler({k: v[fitted_on] for k, v in tensors.items()})
    else:
        for k, (mean, std) in scaler.items():
            fusion.get_buffer(f"mean_{k}").copy_(torch.as_tensor(mean, dtype=torch.float32))
            fusion.get_buffer(f"std_{k}").copy_(torch.as_tensor(std, dtype=torch.float32))

    def loss(idx: np.ndarray) -> torch.Tensor:
        return fusion_loss(fusion, head, tensors, ex, idx, drop)

    both = nn.ModuleList([fusion, head])
    if dp is not None:
        dp_fit(both, loss, ex.m, dp, seed=seed, label="fusion", progress=progress)
        return fusion, head
    fit(
        both,
        loss,
        len(ex),
        epochs=epochs,
        batch_size=256,
        lr=2e-3,
        seed=seed,
        weight_decay=1e-2,
        label="fusion",
        progress=progress,
    )
    return fusion, head


def private_scaler(
    parts: dict[str, np.ndarray], ctx: FeatureContext, train: np.ndarray, sigma: float, bound: float, seed: int
) -> Scaler:
    """The DP run's fusion scaler (rows of ``parts`` = merchant codes of ``ctx``; ``train``: training merchants).

    - the DP-trained encoders' outputs and the empty branches: fixed mean 0, deviation 1;
    - public columns (geo; the merchants table's attributes in ``static``): exact statistics
      over every merchant of ``ctx`` (a function of public data only);
    - ``static``'s own-history columns (:data:`PRIVATE_STATIC`): :func:`aidg.privacy.dp.dp_mean_std`
      over the training merchants, noise multiplier ``sigma``.
    """
    out: Scaler = {}
    for k, v in parts.items():
        x = np.asarray(v, dtype=np.float64)
        if k in (*DP_TRAINED_OUTPUTS, *DP_DROPPED, "sentiment"):
            out[k] = (np.zeros(x.shape[1]), np.ones(x.shape[1]))
        else:
            out[k] = (x.mean(0), np.maximum(x.std(0, ddof=1) if len(x) > 1 else np.ones(x.shape[1]), 1e-4))
    names = static_names(ctx)
    if len(names) != parts["static"].shape[1]:
        raise ValueError(f"static block has {parts['static'].shape[1]} columns but {len(names)} names")
    private = np.array([n in PRIVATE_STATIC for n in names])
    if private.any():
        mean, std = dp_mean_std(parts["static"][train][:, private], bound=bound, noise_multiplier=sigma, seed=seed)
        m, s = out["static"]
        m[private], s[private] = mean, std
    return out


def privacy_budget(
    dp: DPConfig, branch_groups: dict[str, np.ndarray], fusion_groups: np.ndarray, n_merchants: int
) -> PrivacyBudget:
    """One calibrated noise multiplier for the run: each sequence branch, the fusion and the fusion's scaler.

    ``branch_groups`` / ``fusion_groups``: the merchant code of each training example; ``n_merchants``: every
    merchant in the data (δ unset: 1 / (10 n) over all of them, not only the training ones, so holding
    merchants out never loosens the guarantee).
    """
    parts = [sgd_part(k, g, dp.batch_merchants, dp.branch_epochs) for k, g in branch_groups.items()]
    parts += [sgd_part("fusion", fusion_groups, dp.batch_merchants, dp.fusion_epochs)]
    parts += [statistic_part("fusion_scaler", dp.stats_noise_factor)]
    return PrivacyBudget.calibrate(parts, dp, dp.resolve_delta(n_merchants))


def privacy_meta(budget: PrivacyBudget, dp: DPConfig, n_train: int, n_merchants: int) -> dict[str, Any]:
    """``meta["privacy"]``: the account (Opacus) and what the guarantee does not cover."""
    s = budget.summary()
    return {
        **{k: s[k] for k in ("epsilon", "target_epsilon", "delta", "noise_multiplier", "max_grad_norm")},
        "accountant": s["accountant"],
        "unit": "merchant",
        "merchants": n_train,
        "merchants_in_data": n_merchants,  # δ's n: every merchant in the data
        "batch_merchants": dp.batch_merchants,
        "sample_rate": {k: v["sample_rate"] for k, v in s["parts"].items()},
        "steps": {k: v["steps"] for k, v in s["parts"].items()},
        "parts": s["parts"],
        "dropped_branches": list(DP_DROPPED),
        "neutral_seasonality": True,
        "not_private": dict(NOT_PRIVATE),
        "public": dict(PUBLIC),
    }


def predict_uplift(
    fusion: MerchantProfileEncoder,
    head: MLPHead,
    parts: dict[str, np.ndarray],
    ex: Examples,
    drop: frozenset[str] = frozenset(),
) -> np.ndarray:
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in parts.items()}
    fusion.eval()
    head.eval()

    def fn(i: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(ex.m[i])
        return head(fusion({k: v[rows] for k, v in tensors.items()}, drop=drop), torch.from_numpy(ex.terms[i]))[:, 0]

    return predict_batches(fn, len(ex))


def train_profile(
    tables: dict[str, pd.DataFrame],
    as_of: pd.Timestamp | str,
    options: TrainOptions | None = None,
    progress: Progress | None = None,
) -> tuple[ProfileModel, dict[str, Any], MerchantSplit]:
    """Train every branch and the fusion on the train merchants; metrics are on held-out merchants."""
    opt = options or TrainOptions()
    unknown = sorted(set(opt.without_branches) - set(DEFAULT_BRANCHES))
    if unknown:  # before an hour of training, not after
        raise ConfigError(f"training.without_branches: unknown {', '.join(unknown)}; the branches are "
                          f"{', '.join(DEFAULT_BRANCHES)}")  # fmt: skip
    say = progress or no_progress
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ctx = FeatureContext.from_tables(tables, as_of)
    split = split_merchants(ctx.merchant_ids, opt.holdout, opt.seed)
    tr, te = ctx.codes(sorted(split.train)), ctx.codes(sorted(split.heldout))
    cut = cutoff_seconds(ctx.as_of)
    b, seed = opt.budget, opt.seed
    metrics: dict[str, Any] = {}
    heads: dict[str, MLPHead] = {}

    def stage(name: str, lo: float, hi: float) -> Progress:
        return lambda s, f: say(f"{name}: {s}", lo + (hi - lo) * f)

    t = time.perf_counter()
    notes = tables.get("feedback_notes")
    sentiment = None
    dp = opt.dp
    if dp is not None:
        say("sentiment: not fine-tuned under differential privacy; the sentiment branch stays neutral", 0.3)
    elif notes is not None and notes.get("sentiment") is not None and notes.sentiment.notna().any():
        sentiment, info = train_sentiment(
            notes,
            split.train,
            max_examples=opt.sentiment_examples,
            epochs=opt.sentiment_epochs,
            seed=seed,
            progress=stage("sentiment", 0.0, 0.3),
        )
        metrics.update({f"sentiment_{k}": v for k, v in info.items() if isinstance(v, int | float)})
    else:
        say("sentiment: no labelled notes; the sentiment branch stays neutral", 0.3)
    timings["sentiment"] = time.perf_counter() - t

    # the sequence-shaped branches (training.branches.BRANCHES) with their progress spans; examples come from
    # EXAMPLE_BUILDERS
    seq_stages = [("deal_history", (0.3, 0.45)), ("override", (0.45, 0.5)), ("sequence", (0.5, 0.7))]
    examples_of = {name: branch_examples(ctx, name, tr, te, cut, b.per_merchant, seed) for name, _ in seq_stages}
    start = ctx.as_of - pd.Timedelta(days=opt.window_days)
    ex_tr = downstream_examples(ctx, tr, cutoff_seconds(start), cut)
    ex_te = downstream_examples(ctx, te, cutoff_seconds(start), cut)
    budget = None
    if dp is not None:
        groups = {k: v[0].m for k, v in examples_of.items()}
        budget = privacy_budget(dp, groups, ex_tr.m, len(ctx.merchant_ids))  # δ over every merchant in the data
        say(f"privacy: σ = {budget.noise_multiplier:.3f} for ε = {budget.epsilon:.3f} at δ = {budget.delta:.2g}", 0.3)
    trained: dict[str, Any] = {}
    for name, (lo, hi) in seq_stages:
        t = time.perf_counter()
        trained[name], heads[name], m = train_branch(
            name,
            ctx,
            *examples_of[name],
            b,
            seed,
            stage(name.replace("_", " "), lo, hi),
            dp=budget.run(name, dp.lr, dp.optimizer) if budget is not None and dp is not None else None,
        )
        metrics.update(m)
        timings[name] = time.perf_counter() - t
    deal, override, sequence = trained["deal_history"], trained["override"], trained["sequence"]
    t = time.perf_counter()
    graph_data = build_graph(ctx, cut)
    if dp is None:
        graph, heads["graph"], m = train_graph(graph_data, tr, te, b, seed, stage("graph branch", 0.7, 0.8))
        metrics.update(m)
    else:  # never trained: its weights come from the seed alone, and the profile drops it
        torch.manual_seed(seed)
        graph = MerchantGraphSAGE(
            GraphConfig(merchant_in=graph_data.x_merchant.shape[1], deal_in=graph_data.x_deal.shape[1])
        )
        say("graph branch: not trainable with merchant-level privacy; dropped from the profile", 0.8)
    timings["graph"] = time.perf_counter() - t

    t = time.perf_counter()
    placeholder = MerchantProfileEncoder(ProfileConfig(profile_dim=opt.profile_dim))
    pm = ProfileModel(
        deal=deal,
        override=override,
        sentiment=sentiment,
        graph=graph,
        sequence=sequence,
        fusion=placeholder,
        uplift_head=MLPHead(opt.profile_dim, 1, 1),
        heads=heads,
    )
    pm.meta["without_branches"] = sorted(opt.without_branches)
    if budget is not None and dp is not None:
        # before any part is computed: it drops the graph
        pm.meta["privacy"] = privacy_meta(budget, dp, len(tr), len(ctx.merchant_ids))
    say("fusion: branch embeddings", 0.8)
    pm.remember_parts()  # the branches are trained: the scorer's last window reuses these parts (same date)
    parts = pm.compute_parts(ctx, start, seed=seed)
    scaler, fusion_dp = None, None
    if budget is not None and dp is not None:
        scaler = private_scaler(parts, ctx, tr, budget.sigma("fusion_scaler"), dp.stats_bound, seed)
        fusion_dp = budget.run("fusion", dp.lr, dp.optimizer)
    pm.fusion, pm.uplift_head = train_fusion(
        parts,
        ex_tr,
        profile_dim=opt.profile_dim,
        epochs=opt.fusion_epochs,
        seed=seed,
        progress=stage("fusion", 0.85, 1.0),
        scaler=scaler,
        dp=fusion_dp,
        drop=pm.dropped_branches(),
    )
    p = predict_uplift(pm.fusion, pm.uplift_head, parts, ex_te, drop=pm.dropped_branches())
    metrics["profile_uplift_mae"] = float(np.mean(np.abs(p - ex_te.y))) if len(ex_te) else float("nan")
    metrics["profile_uplift_mae_mean_baseline"] = (
        float(np.mean(np.abs(ex_te.y - ex_tr.y.mean()))) if len(ex_te) else float("nan")
    )
    timings["fusion"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    if budget is not None:
        metrics.update({"dp_epsilon": budget.epsilon, "dp_delta": budget.delta, "dp_sigma": budget.noise_multiplier})
    pm.meta = {
        **pm.meta,
        "as_of": str(ctx.as_of),
        "seed": seed,
        "holdout": opt.holdout,
        "window_days": opt.window_days,
        "category_ids": [str(c) for c in ctx.category_ids],
        "train_merchants": sorted(split.train),
        "heldout_merchants": sorted(split.heldout),
        "branch_dims": {k: int(v.shape[1]) for k, v in parts.items()},
        "timings": timings,
    }
    metrics["seconds"] = timings
    say("done", 1.0)
    return pm, metrics, split
