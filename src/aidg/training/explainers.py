"""Training the deal scorer with its explainers and baseline on top of a trained profile encoder.

``aidg train`` runs :func:`fit_scorer_bundle` after the encoders: the scorer
(on logged proposals), the gradient-boosted baseline (same rows), the
prototypical memory (behaviour fingerprints of the training merchants) and the
rule surrogate (the scorer's recommendations on the training merchants'
candidates). Everything lands in the ProfileModel, so one registered version
holds all of it; :func:`load_explainer` rebuilds the Explainer from it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from aidg.config import Settings
from aidg.explain.prototypes import PrototypicalMemory
from aidg.explain.rule_inputs import LABEL_BEATS, NEGATIVE, POSITIVE, surrogate_inputs
from aidg.explain.surrogate import RuleSurrogate
from aidg.features.candidates import CandidateGenerator
from aidg.features.context import FeatureContext
from aidg.inference.profile_model import ProfileModel
from aidg.inference.scoring import behaviour_fingerprint, score_candidates
from aidg.inference.snapshot import Snapshot, snapshot
from aidg.progress import Progress, no_progress
from aidg.training import distributed
from aidg.training.gbm_baseline import GBMBaseline
from aidg.training.scorer import ScorerOptions, train_scorer

SURROGATE_MERCHANTS = 1000  # training merchants whose candidates teach the rule surrogate



def fit_prototypes(
    pm: ProfileModel, ctx: FeatureContext, snap: Snapshot, codes: np.ndarray, settings: Settings
) -> tuple[PrototypicalMemory, np.ndarray]:
    """The prototypical memory over the centred behaviour fingerprints of the merchants ``codes``, and their mean."""
    assert pm.scorer is not None
    raw = behaviour_fingerprint(pm.scorer, ctx, snap, codes)
    mean = raw.mean(0)
    emb = raw - mean
    cats = ctx.tables["merchants"].category_id.astype(str).to_numpy()[codes]
    e = settings.explain
    memory = PrototypicalMemory(k=e.prototypes_k, refresh_hours=e.prototype_refresh_hours, seed=settings.seed)
    return memory.fit(emb, list(ctx.merchant_ids[codes]), list(cats), now=datetime.now(UTC)), mean


def fit_surrogate(
    pm: ProfileModel, ctx: FeatureContext, snap: Snapshot, codes: np.ndarray, settings: Settings, seed: int
) -> tuple[RuleSurrogate, float]:
    """The rule surrogate on ``codes``' candidates, asked whether the scorer expects each to beat its merchant's
    current deal (:mod:`aidg.explain.rule_inputs`); (tree, training fidelity)."""
    assert pm.scorer is not None
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(codes, size=min(len(codes), SURROGATE_MERCHANTS), replace=False))
    gen = CandidateGenerator(ctx.tables["merchants"], ctx.tables["deals"], settings.candidates)
    cand = gen.generate_many(ctx.merchant_ids[pick], snap.at, settings.bandit.n_candidates)
    frame, labels = surrogate_inputs(pm.scorer, ctx, snap, score_candidates(pm.scorer, ctx, snap, cand).table)
    tree = RuleSurrogate(max_leaves=settings.explain.surrogate_max_leaves, seed=seed, positive=POSITIVE,
                         negative=NEGATIVE).fit(frame, labels)  # fmt: skip
    return tree, tree.fidelity(frame, labels)


class ScorerBundle(NamedTuple):
    """What fitting the scorer bundle reports: its metrics, and the as-of snapshot the explainers were fitted on
    (with the merchant ids of its rows: serving reuses it when it serves the same merchants)."""

    metrics: dict[str, Any]
    snapshot: Snapshot | None  # None on a rank other than 0 (it fits no explainers)
    merchant_ids: list[str]


def fit_scorer_bundle(
    pm: ProfileModel,
    tables: dict[str, pd.DataFrame],
    settings: Settings,
    options: ScorerOptions,
    progress: Progress | None = None,
) -> ScorerBundle:
    """Train the scorer, baseline and explainers into ``pm``; returns their metrics and the as-of snapshot."""
    say = progress or no_progress
    ctx = FeatureContext.from_tables(tables, pd.Timestamp(pm.meta["as_of"]))
    tr = ctx.codes([m for m in pm.meta["train_merchants"] if m in ctx.merchant_code.index])
    te = ctx.codes([m for m in pm.meta["heldout_merchants"] if m in ctx.merchant_code.index])
    scorer, metrics, data = train_scorer(
        pm, ctx, tr, te, options, settings.reward, lambda s, f: say(f"scorer: {s}", 0.6 * f)
    )
    pm.scorer = scorer
    if not distributed.is_main():  # under torchrun, rank 0 alone fits the explainers and registers
        return ScorerBundle(metrics, None, [])
    distributed.last_step_done()
    say("baseline: gradient-boosted trees on flat features", 0.65)
    baseline = GBMBaseline.fit(data.stack, data.fit, settings.reward, seed=options.seed)
    say("explainers: merchant snapshot as of the as-of date", 0.75)
    snap = snapshot(pm, ctx, ctx.as_of, seed=options.seed)
    say("explainers: prototypical memory", 0.85)
    memory, fingerprint_mean = fit_prototypes(pm, ctx, snap, tr, settings)
    say("explainers: rule surrogate", 0.9)
    tree, fidelity = fit_surrogate(pm, ctx, snap, tr, settings, options.seed)
    pm.artifacts = {
        "baseline": baseline.to_bytes(),
        "prototypes": memory.state(),
        "fingerprint_mean": fingerprint_mean.tolist(),
        "surrogate": tree.to_bytes(),
        "surrogate_label": LABEL_BEATS,
    }
    metrics.update({"surrogate_train_fidelity": fidelity, "surrogate_leaves": tree.n_leaves})
    say("scorer bundle done", 1.0)
    return ScorerBundle(metrics, snap, [str(m) for m in ctx.merchant_ids])


def load_baseline(pm: ProfileModel) -> GBMBaseline | None:
    b = pm.artifacts.get("baseline")
    return GBMBaseline.from_bytes(b) if b is not None else None
