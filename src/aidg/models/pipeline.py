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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from aidg.features.context import FeatureContext
from aidg.features.graph import build_graph
from aidg.features.split import MerchantSplit, split_merchants
from aidg.models.branches import BranchBudget, train_deal_history, train_graph, train_override, train_sequence
from aidg.models.examples import Examples, approval_examples, deal_examples, override_examples, uplift_examples
from aidg.models.fitting import Progress, fit, predict_batches
from aidg.models.heads import MLPHead
from aidg.models.merchant_profile_encoder import MerchantProfileEncoder, ProfileConfig
from aidg.models.profile_model import ProfileModel, cutoff_seconds
from aidg.models.sentiment_training import train_sentiment


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


def _noop(stage: str, fraction: float) -> None:
    return None


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


def train_fusion(
    parts: dict[str, np.ndarray],
    ex: Examples,
    *,
    profile_dim: int,
    epochs: int,
    seed: int,
    drop: frozenset[str] = frozenset(),
    progress: Progress | None = None,
) -> tuple[MerchantProfileEncoder, MLPHead]:
    """Fit the fusion layer and an uplift head on frozen branch embeddings (rows of ``parts`` = merchant codes)."""
    torch.manual_seed(seed)
    dims = {k: int(v.shape[1]) for k, v in parts.items()}
    fusion = MerchantProfileEncoder(ProfileConfig(branches=dims, profile_dim=profile_dim))
    head = MLPHead(profile_dim, ex.terms.shape[1], 1, hidden=128)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in parts.items()}
    fitted_on = torch.from_numpy(np.unique(ex.m))
    fusion.fit_scaler({k: v[fitted_on] for k, v in tensors.items()})

    def loss(idx: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(ex.m[idx])
        prof = fusion({k: v[rows] for k, v in tensors.items()}, drop=drop)
        return nn.functional.huber_loss(
            head(prof, torch.from_numpy(ex.terms[idx]))[:, 0], torch.from_numpy(ex.y[idx]), delta=0.5
        )

    fit(
        nn.ModuleList([fusion, head]),
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
    say = progress or _noop
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
    if notes is not None and notes.get("sentiment") is not None and notes.sentiment.notna().any():
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

    # the sequence-shaped branches: (name, trainer, example builder, progress span)
    seq_stages = [
        ("deal_history", train_deal_history, deal_examples, (0.3, 0.45)),
        ("override", train_override, override_examples, (0.45, 0.5)),
        ("sequence", train_sequence, approval_examples, (0.5, 0.7)),
    ]
    trained: dict[str, Any] = {}
    for name, trainer, examples, (lo, hi) in seq_stages:
        t = time.perf_counter()
        trained[name], heads[name], m = trainer(  # type: ignore[operator]
            ctx,
            examples(ctx, tr, cut, b.per_merchant, seed),  # type: ignore[operator]
            examples(ctx, te, cut, b.per_merchant, seed + 1),  # type: ignore[operator]
            b,
            seed,
            stage(name.replace("_", " "), lo, hi),
        )
        metrics.update(m)
        timings[name] = time.perf_counter() - t
    deal, override, sequence = trained["deal_history"], trained["override"], trained["sequence"]
    t = time.perf_counter()
    graph, heads["graph"], m = train_graph(build_graph(ctx, cut), tr, te, b, seed, stage("graph branch", 0.7, 0.8))
    metrics.update(m)
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
    start = ctx.as_of - pd.Timedelta(days=opt.window_days)
    say("fusion: branch embeddings", 0.8)
    parts = pm.compute_parts(ctx, start, seed=seed)
    ex_tr = downstream_examples(ctx, tr, cutoff_seconds(start), cut)
    ex_te = downstream_examples(ctx, te, cutoff_seconds(start), cut)
    pm.fusion, pm.uplift_head = train_fusion(
        parts,
        ex_tr,
        profile_dim=opt.profile_dim,
        epochs=opt.fusion_epochs,
        seed=seed,
        progress=stage("fusion", 0.85, 1.0),
    )
    p = predict_uplift(pm.fusion, pm.uplift_head, parts, ex_te)
    metrics["profile_uplift_mae"] = float(np.mean(np.abs(p - ex_te.y))) if len(ex_te) else float("nan")
    metrics["profile_uplift_mae_mean_baseline"] = (
        float(np.mean(np.abs(ex_te.y - ex_tr.y.mean()))) if len(ex_te) else float("nan")
    )
    timings["fusion"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    pm.meta = {
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
