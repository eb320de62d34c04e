"""Decision quality of the scorer and the quality of its explanations, on held-out merchants.

Every held-out merchant gets its candidates at the as-of date; the oracle (the
simulator's truth, never seen in training) gives each candidate's true
expected reward and approval probability. The decision figures are those of
the response model decisions are made with: the scorer's predictions
corrected by each merchant's own record before its first decision
(:mod:`aidg.policy.response_model`, the per-merchant posterior's mean);
``scorer_alone`` holds the same figures for the scorer's raw predictions.
Keys (``aidg evaluate --json``):

- ``reward_spearman``: Spearman of the predicted composite score against the true
  expected reward, over all candidates of all held-out merchants (pooled);
  ``reward_spearman_within_merchant``: the mean of the per-merchant Spearmans;
- ``ndcg_at_5``: NDCG@5 of each merchant's candidate ranking, relevance = true
  reward − the merchant's worst candidate's (non-negative), averaged;
- ``approval_ece``: expected calibration error (10 bins) of the predicted approval
  probability against the true approval probability of the candidates;
- ``surrogate_fidelity`` / ``surrogate_leaves``: agreement of the rule tree with the
  scorer's recommend / not label on held-out merchants' candidates;
  ``surrogate_majority_fidelity``: what always answering the majority label gets;
- ``attribution_faithfulness_ratio``: over held-out merchants' best variants,
  mean |Δscore| removing the top-5 IG features ÷ mean |Δscore| removing 5 random ones;
- ``prototype_type_agreement``: share of each held-out merchant's 5 most similar
  training merchants with the same latent personality type (needs the truth);
- ``scorer_vs_baseline``: the same decision metrics for the gradient-boosted baseline, corrected by the same
  per-merchant posterior from its own errors on the records (``gbm``, beside ``ours``), and both raw
  (``gbm_alone``, ``ours_alone``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import ndcg_score

from aidg.config import Settings
from aidg.explain.attribution import faithfulness, integrated_gradients
from aidg.explain.explainer import load_explainer
from aidg.features.candidates import CandidateGenerator
from aidg.features.context import FeatureContext
from aidg.inference.history import Predict, merchant_record, scorer_predict
from aidg.inference.profile_model import ProfileModel
from aidg.inference.scoring import merchant_inputs, score_candidates
from aidg.inference.snapshot import Snapshot, candidate_features, snapshot
from aidg.policy.response_model import corrected, current_terms
from aidg.progress import Progress, no_progress
from aidg.training.calibration import expected_calibration_error
from aidg.training.explainers import load_baseline
from aidg.training.gbm_baseline import GBMBaseline

FAITHFULNESS_MERCHANTS = 200


def decision_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Ranking and calibration of predicted ``score`` / ``approval`` against ``true_reward`` / ``true_approval``."""
    out = {"reward_spearman": float(spearmanr(frame.score, frame.true_reward).statistic)}
    nd, sp = [], []
    for _, g in frame.groupby("merchant_id", sort=False):
        rel = g.true_reward.to_numpy() - g.true_reward.min()
        if len(g) > 1 and rel.max() > 0:
            nd.append(ndcg_score(rel[None], g.score.to_numpy()[None], k=5))
            sp.append(spearmanr(g.score, g.true_reward).statistic)
    out["ndcg_at_5"] = float(np.mean(nd)) if nd else float("nan")
    out["reward_spearman_within_merchant"] = float(np.nanmean(sp)) if sp else float("nan")
    out["approval_ece"] = expected_calibration_error(frame.approval.to_numpy(), frame.true_approval.to_numpy())
    return out


def _response_metrics(
    frame: pd.DataFrame,
    predicted: pd.DataFrame,
    predict: Predict,
    current: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    ids: list[str],
    as_of: pd.Timestamp,
    settings: Settings,
) -> dict[str, float]:
    """:func:`decision_metrics` of a predictor corrected by each merchant's record (the response model,
    :func:`aidg.policy.response_model.corrected`); ``frame``: the candidates with the truth; ``predicted``: the
    same rows with the predictor's outputs; ``predict``: the predictor, for the records."""
    record = merchant_record(predict, tables, ids, as_of)
    resp = corrected(predicted, current, record, settings)
    out = decision_metrics(frame.assign(score=resp.score.to_numpy(), approval=resp.approval.to_numpy()))
    out["record_merchants"] = int(record.merchant_id.nunique()) if len(record) else 0
    return out


def _gbm_predict(baseline: GBMBaseline, ctx: FeatureContext, snap: Snapshot) -> Predict:
    """The gradient-boosted baseline as a :data:`~aidg.inference.history.Predict`."""

    def predict(terms: pd.DataFrame) -> pd.DataFrame:
        rows, feats, codes = candidate_features(ctx, snap, terms)
        pred = baseline.predict(snap.tensors(rows), feats, codes)
        keep = ("score", "approval", "conversion", "uplift")
        return terms.reset_index(drop=True).assign(**{k: pred[k] for k in keep})

    return predict


def evaluate_scorer(
    pm: ProfileModel,
    tables: dict[str, pd.DataFrame],
    settings: Settings,
    *,
    truth_world: Any | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every figure of the scorer issue on held-out merchants (truth-based ones need the simulated world)."""
    say = progress or no_progress
    explainer = load_explainer(pm, settings)
    scorer = explainer.scorer
    as_of = pd.Timestamp(pm.meta["as_of"])
    ctx = FeatureContext.from_tables(tables, as_of)
    te = ctx.codes([m for m in pm.meta["heldout_merchants"] if m in ctx.merchant_code.index])
    say("scorer: merchant snapshot", 0.05)
    snap = snapshot(pm, ctx, as_of, seed=int(pm.meta.get("seed", 0)))
    gen = CandidateGenerator(tables["merchants"], tables["deals"], settings.candidates)
    say("scorer: candidates of held-out merchants", 0.3)
    cand = gen.generate_many(ctx.merchant_ids[te], as_of, settings.bandit.n_candidates)
    scored = score_candidates(scorer, ctx, snap, cand)
    t = scored.table
    out: dict[str, Any] = {
        "scorer_heldout_merchants": len(te),
        "scorer_candidates": len(t),
        "example_merchant": str(ctx.merchant_ids[te[0]]) if len(te) else None,
    }
    baseline = load_baseline(pm)
    if truth_world is not None:
        from aidg.sim.oracle import Oracle

        say("scorer: oracle", 0.4)
        truth = Oracle(truth_world, settings.reward).evaluate(t.merchant_id.to_numpy(), t, at=as_of)
        frame = t.assign(true_reward=truth.reward.to_numpy(), true_approval=truth.approval_prob.to_numpy())
        ids = [str(ctx.merchant_ids[c]) for c in te]
        current = current_terms(tables["merchants"], ids)
        say("scorer: the merchants' records", 0.45)
        alone = decision_metrics(frame)
        ours = _response_metrics(frame, frame, scorer_predict(scorer, ctx, snap), current, tables, ids, as_of, settings)
        out.update(ours)
        out["scorer_alone"] = alone
        if baseline is not None:
            gbm = _gbm_predict(baseline, ctx, snap)
            g = gbm(t)
            b_alone = decision_metrics(frame.assign(score=g.score.to_numpy(), approval=g.approval.to_numpy()))
            b = _response_metrics(frame, g, gbm, current, tables, ids, as_of, settings)
            out["scorer_vs_baseline"] = {
                "ours": ours,
                "gbm": b,
                "ours_alone": alone,
                "gbm_alone": b_alone,
                "ours_beats_gbm_on_reward_spearman": bool(ours["reward_spearman"] > b["reward_spearman"]),
            }
        say("prototypes", 0.55)
        if explainer.memory is not None:
            ptype = truth_world.truth["merchants"].set_index("merchant_id").personality
            emb = explainer.embedding(ctx, snap, te)
            cats = tables["merchants"].category_id.astype(str).to_numpy()[te]
            agree = []
            for i, code in enumerate(te):
                mid = str(ctx.merchant_ids[code])
                if cats[i] not in explainer.memory.categories():
                    continue
                for other, _ in explainer.memory.find_similar_merchants(emb[i], cats[i], 5, exclude=mid):
                    agree.append(ptype.get(other) == ptype.get(mid))
            out["prototype_type_agreement"] = float(np.mean(agree)) if agree else float("nan")
    say("surrogate", 0.7)
    frame, labels = explainer.surrogate_rows(ctx, snap, t) if explainer.surrogate is not None else (t, None)
    if explainer.surrogate is not None and labels is not None:
        out["surrogate_fidelity"] = explainer.surrogate.fidelity(frame, labels)
        out["surrogate_label"] = explainer.surrogate_label
        out["surrogate_leaves"] = explainer.surrogate.n_leaves
        out["surrogate_majority_fidelity"] = float(max(labels.mean(), 1 - labels.mean()))
        out["surrogate_rules"] = [r.text() for r in explainer.surrogate.rules()[:5]]
    say("attributions", 0.8)
    tops, rands = [], []
    for code in te[:FAITHFULNESS_MERCHANTS]:
        sel = t[t.merchant_id == ctx.merchant_ids[code]].reset_index(drop=True)
        inp = merchant_inputs(ctx, snap, sel)
        best = int(np.argmax(sel.score.to_numpy()))
        attr = integrated_gradients(scorer, inp, best)
        d_top, d_rand = faithfulness(scorer, inp, best, attr, k=settings.explain.top_features, seed=int(code))
        tops.append(d_top)
        rands.append(d_rand)
    ratio = float(np.mean(tops)) / max(float(np.mean(rands)), 1e-12) if tops else float("nan")
    out["attribution_faithfulness_ratio"] = ratio
    out["attribution_merchants"] = len(tops)
    say("scorer evaluation done", 1.0)
    return out
