"""Evaluating a trained merchant-profile encoder on held-out merchants, against the simulator's truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aidg.domain import DEAL_TERMS
from aidg.features.context import OVERRIDE_TYPES, FeatureContext
from aidg.features.geo import city_embeddings, region_silhouette
from aidg.features.panel import cutoff_seconds
from aidg.features.sequences import override_sequences
from aidg.inference.batches import predict_batches
from aidg.inference.encoding import encode_overrides
from aidg.inference.profile_model import ProfileModel, _primary_locations
from aidg.progress import Progress, no_progress
from aidg.training.examples import Examples, override_examples
from aidg.training.profile import downstream_examples, predict_uplift, train_fusion
from aidg.training.sentiment import evaluate_sentiment

ABLATION_EPOCHS = 100  # each variant (the full one included) retrains the fusion with this budget
# ... over at most this many examples; beyond, fewer passes (the memo's scale: ~100k examples, 10 passes; at 100
# passes its 8 variants took ~30 min of a full-scale evaluation on 2 cores)
ABLATION_EXAMPLES = 10_000


def ablation_epochs(n_examples: int) -> int:
    """Passes of each ablation variant's fusion: :data:`ABLATION_EPOCHS` up to :data:`ABLATION_EXAMPLES` examples,
    then as many as keep the same number of examples seen (at least 5).

    >>> ablation_epochs(5_000), ablation_epochs(100_000)
    (100, 10)
    """
    return max(5, min(ABLATION_EPOCHS, round(ABLATION_EPOCHS * ABLATION_EXAMPLES / max(n_examples, 1))))



def personality_probe(
    profiles: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0
) -> tuple[float, float]:
    """(held-out accuracy of a logistic-regression probe, majority-class rate of the held-out labels)."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, random_state=seed))
    probe.fit(profiles[train], labels[train])
    acc = float(probe.score(profiles[test], labels[test]))
    chance = float(pd.Series(labels[test]).value_counts(normalize=True).max())
    return acc, chance


def override_f1(
    pm: ProfileModel, ctx: FeatureContext, tr: np.ndarray, te: np.ndarray, cut: int, seed: int
) -> dict[str, float]:
    test = override_examples(ctx, te, cut, 1_000_000, seed)
    train_y = override_examples(ctx, tr, cut, 1_000_000, seed).y
    if len(test) == 0 or len(train_y) == 0 or "override" not in pm.heads:
        return {"override_type_macro_f1": float("nan"), "override_majority_macro_f1": float("nan")}
    seq = override_sequences(ctx, test.m, test.t)
    head = pm.heads["override"].eval()
    logits = predict_batches(lambda i: head(encode_overrides(pm.override, seq.x[i], seq.mask[i])), len(test))
    present = sorted(set(test.y.tolist()))
    majority = int(np.bincount(train_y, minlength=len(OVERRIDE_TYPES)).argmax())
    return {
        "override_type_macro_f1": float(
            f1_score(test.y, logits.argmax(1), labels=present, average="macro", zero_division=0)
        ),
        "override_majority_macro_f1": float(
            f1_score(test.y, np.full(len(test), majority), labels=present, average="macro", zero_division=0)
        ),
    }


def _true_uplift(truth_world: Any, ctx: FeatureContext, ex: Examples) -> np.ndarray:
    """The oracle's expected uplift of each example deal's terms at its start date."""
    from aidg.sim import Oracle

    oracle = Oracle(truth_world)
    d = ctx.deals.set_index(["m", "t"])
    rows = d.loc[list(zip(ex.m, ex.t, strict=True))]
    out = np.empty(len(ex))
    days = pd.to_datetime(ex.t, unit="s").normalize()
    for day in np.unique(days):
        sel = np.flatnonzero(days == day)
        r = rows.iloc[sel]
        terms = r[list(DEAL_TERMS)].reset_index(drop=True)
        out[sel] = oracle.evaluate(r.merchant_id.to_numpy(), terms, pd.Timestamp(day)).expected_uplift.to_numpy()
    return out


def evaluate_profile(
    pm: ProfileModel,
    tables: dict[str, pd.DataFrame],
    *,
    truth_world: Any | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every evaluation figure of the profile issue (held-out merchants only); truth-based ones need the world."""
    say = progress or no_progress
    as_of = pd.Timestamp(pm.meta["as_of"])
    seed = int(pm.meta.get("seed", 0))
    ctx = FeatureContext.from_tables(tables, as_of)
    train_ids = [m for m in pm.meta["train_merchants"] if m in ctx.merchant_code.index]
    test_ids = [m for m in pm.meta["heldout_merchants"] if m in ctx.merchant_code.index]
    tr, te = ctx.codes(train_ids), ctx.codes(test_ids)
    cut = cutoff_seconds(as_of)
    out: dict[str, Any] = {"profile_dim": int(pm.fusion.config.profile_dim), "heldout_merchants": len(te)}
    say("profiles", 0.05)
    parts = pm.compute_parts(ctx, as_of, seed=seed)
    profiles = pm.profiles(parts)
    if truth_world is not None:
        pers = truth_world.truth["merchants"].set_index("merchant_id").personality.reindex(ctx.merchant_ids)
        acc, chance = personality_probe(profiles, pers.to_numpy(dtype=object), tr, te, seed)
        out["personality_probe_accuracy"], out["personality_chance"] = acc, chance
    say("sentiment", 0.3)
    notes = tables.get("feedback_notes")
    if pm.sentiment is not None and notes is not None:
        s = evaluate_sentiment(pm.sentiment, notes, set(test_ids))
        out["sentiment_accuracy"] = s["sentiment_accuracy"]
        out["sentiment_notes_evaluated"] = s["n"]
    say("overrides", 0.45)
    out.update(override_f1(pm, ctx, tr, te, cut, seed))
    if truth_world is not None and "cities" in truth_world.truth:
        locs = tables.get("merchant_locations", _primary_locations(tables["merchants"]))
        emb = city_embeddings(locs, seed=seed)
        regions = truth_world.truth["cities"].set_index("city_id").region.reindex(emb.index)
        n_regions = regions.nunique()
        # a silhouette needs 2 ≤ regions ≤ cities − 1 (the tiny world has 4 cities in 4 regions)
        out["geo_region_silhouette"] = (
            region_silhouette(emb, regions) if 2 <= n_regions < regions.notna().sum() else float("nan")
        )
    say("ablation", 0.55)
    out["ablation"] = ablation(pm, ctx, tr, te, truth_world, seed, progress=lambda s, f: say(s, 0.55 + 0.45 * f))
    say("done", 1.0)
    return out


def ablation(
    pm: ProfileModel,
    ctx: FeatureContext,
    tr: np.ndarray,
    te: np.ndarray,
    truth_world: Any | None,
    seed: int,
    progress: Progress | None = None,
) -> dict[str, dict[str, float]]:
    """Downstream GP30-uplift error on held-out merchants with each branch removed (fusion retrained each time).

    The target is the oracle's true expected uplift of the held-out deals when
    the simulator's truth is available, else their realized uplift.
    """
    say = progress or no_progress
    window = int(pm.meta.get("window_days", 180))
    start = ctx.as_of - pd.Timedelta(days=window)
    parts = pm.compute_parts(ctx, start, seed=seed)
    ex_tr = downstream_examples(ctx, tr, cutoff_seconds(start), cutoff_seconds(ctx.as_of))
    ex_te = downstream_examples(ctx, te, cutoff_seconds(start), cutoff_seconds(ctx.as_of))
    if len(ex_tr) == 0 or len(ex_te) == 0:
        return {}
    target = _true_uplift(truth_world, ctx, ex_te) if truth_world is not None else ex_te.y
    variants: list[str | None] = [None, *parts]
    rows: dict[str, dict[str, float]] = {}
    for i, branch in enumerate(variants):
        drop = frozenset() if branch is None else frozenset({branch})
        fusion, head = train_fusion(
            parts, ex_tr, profile_dim=int(pm.fusion.config.profile_dim), epochs=ablation_epochs(len(ex_tr)), seed=seed,
            drop=drop,
        )
        p = predict_uplift(fusion, head, parts, ex_te, drop=drop)
        rows["none" if branch is None else branch] = {
            "rmse": float(np.sqrt(np.mean((p - target) ** 2))),
            "mae": float(np.mean(np.abs(p - target))),
        }
        say(f"ablation {branch or 'full'}", (i + 1) / len(variants))
    full = rows["none"]["rmse"]
    for r in rows.values():
        r["rmse_increase"] = r["rmse"] - full
    rows["none"]["target"] = 1.0 if truth_world is not None else 0.0
    return rows
