"""Membership-inference attacks of the privacy audit (`aidg audit-privacy`): does a model give away who trained it?

**Every merchant's losses** (:func:`objective_losses`). For each objective the
DP run trains (deal-history uplift, override type, approval, the fusion's future
uplift), every merchant's examples, built exactly as training builds them
(training merchants: the training examples; held-out merchants: examples drawn
the same way), get their loss ``ℓ`` under a model.

**Loss attack** (:func:`loss_attack`, Yeom et al. 2018). A model fits its
training merchants better than merchants it never saw, so a low loss hints
"member"; per objective ``o`` and merchant ``m``::

    L_o(m)   = mean of ℓ over m's examples of objective o
    z_o(m)   = (L_o(m) − mean_m' L_o(m')) / std_m' L_o(m')       (over train and held-out merchants)
    score(m) = − mean_o z_o(m)                                    (the objectives m has examples in)

**Likelihood-ratio attack** (:func:`lira_attack`). The loss attack compares
every merchant's loss with the population's; a merchant that is simply hard to
fit looks like a non-member whatever the model learnt. The likelihood-ratio
attack (Carlini et al. 2022, "Membership Inference Attacks From First
Principles", its *offline, fixed-variance* form) calibrates each merchant
against models that never saw it:

1. **Reference models.** ``k`` profiles trained with the audited recipe (same
   scale, same DP setting) on complementary halves of the data's merchants
   (:func:`shadow_halves`: pairs of halves, so every merchant is outside at least
   one reference model's data), each with its own seed.
2. **Statistic.** For model ``j``, objective ``o`` and merchant ``m``, the mean
   loss of ``m``'s examples (the same examples under every model),
   log-transformed and standardised over the merchants within ``(j, o)``:
   ``z_jo(m)``. The standardisation removes what differs between models as a
   whole (a reference model trained on half the data fits everyone less well).
3. **Score.** ``μ_o(m)`` is the mean of ``z_jo(m)`` over the reference models
   that did not train on ``m`` (OUT); ``σ_o`` one pooled deviation of those OUT
   values around their merchant's mean. ``score_o(m) = (μ_o(m) − z_target,o(m)) /
   σ_o``: how much better the audited model fits ``m`` than models that never saw
   it, in units of the OUT spread. A merchant's score is the mean over its
   objectives; ``lira_auc`` is the ROC AUC of it against the audited model's
   membership.

With a Gaussian OUT distribution of fixed variance this is the log-likelihood
ratio test of offline LiRA up to a monotone map, so its ROC is LiRA's. ε-DP
bounds it like any attack: AUC ≤ e^ε / (1 + e^ε).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from aidg.features.context import FeatureContext
from aidg.features.panel import cutoff_seconds
from aidg.inference.profile_model import ProfileModel
from aidg.training.branches import example_losses
from aidg.training.profile import TrainOptions, branch_examples, downstream_examples, fusion_example_losses

BRANCH_OBJECTIVES = {"deal_history": "deal", "override": "override", "sequence": "sequence"}  # → ProfileModel field


def objective_losses(
    pm: ProfileModel,
    tables: dict[str, pd.DataFrame],
    options: TrainOptions,
    population: ProfileModel | None = None,
) -> pd.DataFrame:
    """Every example's loss under each objective the DP run trains, for training and held-out merchants.

    ``population``: the model whose training and held-out merchants (and so whose examples) are scored; ``pm``
    itself by default. A reference model scores the audited model's population this way, on the same examples.

    Returns:
        One row per example: ``objective``, ``merchant`` (code), ``member`` (a training merchant of
        ``population``), ``loss``, ``merchant_id``.
    """
    meta = (population or pm).meta
    ctx = FeatureContext.from_tables(tables, pd.Timestamp(meta["as_of"]))
    tr = ctx.codes([m for m in meta["train_merchants"] if m in ctx.merchant_code.index])
    te = ctx.codes([m for m in meta["heldout_merchants"] if m in ctx.merchant_code.index])
    cut = cutoff_seconds(ctx.as_of)
    frames = []
    with torch.inference_mode():
        for name, field in BRANCH_OBJECTIVES.items():
            ex_tr, ex_te = branch_examples(ctx, name, tr, te, cut, options.budget.per_merchant, options.seed)
            enc, head = getattr(pm, field), pm.heads[name]
            for ex, member in ((ex_tr, True), (ex_te, False)):
                loss = example_losses(name, enc, head, ctx, ex, private=pm.is_private())
                frames.append(pd.DataFrame({"objective": name, "merchant": ex.m, "member": member, "loss": loss}))
        start = ctx.as_of - pd.Timedelta(days=int(meta.get("window_days", options.window_days)))
        parts = pm.compute_parts(ctx, start, seed=options.seed)
        for codes, member in ((tr, True), (te, False)):
            ex = downstream_examples(ctx, codes, cutoff_seconds(start), cut)
            loss = fusion_example_losses(pm, parts, ex)
            frames.append(pd.DataFrame({"objective": "fusion", "merchant": ex.m, "member": member, "loss": loss}))
    out = pd.concat(frames, ignore_index=True)
    out["merchant_id"] = np.asarray(ctx.merchant_ids, dtype=object)[out["merchant"].to_numpy(int)]
    return out


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




def shadow_halves(merchant_ids: Sequence[str], k: int, seed: int) -> list[frozenset[str]]:
    """``k`` merchant sets for the reference models: ``k // 2`` random halves and their complements (an odd ``k``
    adds one more random half), so every merchant is outside at least one set when ``k ≥ 2``.

    >>> sets = shadow_halves([f"m{i}" for i in range(10)], 2, 0)
    >>> len(sets), sets[0] | sets[1] == frozenset(f"m{i}" for i in range(10)), sets[0] & sets[1]
    (2, True, frozenset())
    """
    if k < 1:
        raise ValueError(f"the attack needs at least one reference model, got {k}")
    ids = np.array(sorted(set(merchant_ids)), dtype=object)
    rng = np.random.default_rng(seed)
    out: list[frozenset[str]] = []
    while len(out) < k:
        mask = rng.random(len(ids)) < 0.5
        out.append(frozenset(ids[mask]))
        if len(out) < k:
            out.append(frozenset(ids[~mask]))
    return out


def _standardised(losses: pd.DataFrame) -> pd.Series:
    """Per (objective, merchant): the log of the mean loss, standardised over the merchants of each objective."""
    per = losses.groupby(["objective", "merchant"], sort=True)["loss"].mean()
    log = np.log(per.clip(lower=1e-8))
    g = log.groupby(level="objective")
    std = g.transform("std").replace(0.0, 1.0).fillna(1.0)
    z: pd.Series = (log - g.transform("mean")) / std
    return z


def lira_attack(
    target: pd.DataFrame,
    references: Sequence[tuple[pd.DataFrame, frozenset[int]]],
) -> dict[str, object]:
    """Offline LiRA (module docstring) of the audited model's losses against the reference models' losses.

    Args:
        target: the audited model's rows, as :func:`aidg.compliance.audit.objective_losses` gives them
            (``objective``, ``merchant`` code, ``member``, ``loss``).
        references: each reference model's rows on the same examples, with the merchant codes it trained on.

    Returns:
        ``auc`` (combined), ``auc_by_objective``, ``merchants`` (scored), ``references``.

    >>> rows = lambda losses: pd.DataFrame({"objective": "a", "merchant": [0, 1, 2, 3],
    ...                                     "member": [True, True, False, False], "loss": losses})
    >>> target, ref = rows([0.6, 0.2, 0.5, 0.1]), rows([0.9, 0.3, 0.5, 0.1])  # merchant 0: a hard member
    >>> lira_attack(target, [(ref, frozenset())])["auc"]  # the loss attack's AUC here is 0.25
    1.0
    """
    if not references:
        raise ValueError("the attack needs at least one reference model")
    z_t = _standardised(target)
    member = target.groupby(["objective", "merchant"], sort=True)["member"].first()
    outs = []
    for rows, trained_on in references:
        z = _standardised(rows)
        outside = ~z.index.get_level_values("merchant").isin(list(trained_on))
        outs.append(z[outside])
    out = pd.concat(outs)
    mu = out.groupby(level=["objective", "merchant"]).mean()
    resid = (out - mu.reindex(out.index)).groupby(level=["objective", "merchant"])
    n_out = resid.size()
    # pooled OUT deviation per objective, from merchants with ≥ 2 OUT values (unbiased: ddof 1 per merchant)
    ss = resid.apply(lambda r: float((r**2).sum())) if len(out) else pd.Series(dtype=float)
    dof = (n_out - 1).clip(lower=0)
    by_obj = pd.DataFrame({"ss": ss, "dof": dof}).groupby(level="objective").sum()
    sigma = (by_obj["ss"] / by_obj["dof"].where(by_obj["dof"] > 0)).pow(0.5).fillna(1.0).clip(lower=1e-3)
    common = z_t.index.intersection(mu.index)
    obj = common.get_level_values("objective")
    score = (mu.loc[common] - z_t.loc[common]) / sigma.reindex(obj).to_numpy()
    frame = pd.DataFrame({"score": score.to_numpy(), "member": member.loc[common].to_numpy(bool)}, index=common)

    def auc(f: pd.DataFrame) -> float:
        m = f["member"].to_numpy(bool)
        return float(roc_auc_score(m, f["score"].to_numpy(float))) if 0 < m.sum() < len(m) else float("nan")

    per_merchant = frame.groupby(level="merchant").agg(score=("score", "mean"), member=("member", "first"))
    return {
        "auc": auc(per_merchant),
        "auc_by_objective": {str(o): auc(f) for o, f in frame.groupby(level="objective")},
        "merchants": len(per_merchant),
        "references": len(references),
    }


__all__ = ["BRANCH_OBJECTIVES", "lira_attack", "loss_attack", "objective_losses", "shadow_halves"]
