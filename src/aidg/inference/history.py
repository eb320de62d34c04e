"""A merchant's own record as evidence about the scorer's errors for that merchant.

Before a merchant's first AIDG decision its history already says how it
responds: every proposal the merchant manager approved or rejected, and
every deal's 3-day conversion and GP30 uplift once known. :func:`merchant_record`
scores those past terms with the version's scorer and returns, per outcome,
what was observed beside what the scorer predicts for the same terms today.
The bandit's per-merchant posterior
(:class:`~aidg.policy.merchant_posterior.MerchantPosterior`) starts from
these errors (:meth:`~aidg.policy.merchant_posterior.MerchantPosterior.warm_start`),
so "learning each merchant" begins with the merchant's record instead of
with nothing. Only outcomes known at the as-of date count.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from aidg.features.candidates import CANDIDATE_COLUMNS
from aidg.features.context import FeatureContext
from aidg.inference.scoring import score_candidates
from aidg.inference.snapshot import Snapshot
from aidg.models.deal_scorer import ContextualDealScorer

Predict = Callable[[pd.DataFrame], pd.DataFrame]  # candidate terms -> the same rows with approval, conversion, uplift
RECORD_COLUMNS = [
    "merchant_id", "discount_pct", "price", "duration_days", "focus", "part", "observed", "predicted", "age_days",
]  # fmt: skip


def scorer_predict(scorer: ContextualDealScorer, ctx: FeatureContext, snap: Snapshot) -> Predict:
    """The scorer as a :data:`Predict` (its outputs at the snapshot's date)."""
    return lambda terms: score_candidates(scorer, ctx, snap, terms).table


def merchant_record(
    predict: Predict,
    tables: dict[str, pd.DataFrame],
    merchant_ids: list[str],
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """Observed outcomes of the merchants' past proposals and deals beside a predictor's predictions for their terms
    (:func:`scorer_predict`, or the gradient-boosted baseline's; columns :data:`RECORD_COLUMNS`; ``part`` is
    ``approval``, ``conversion`` or ``gp30_uplift``; ``age_days``: days from the proposal's decision or the deal's
    start to ``as_of``)."""
    ids = set(merchant_ids)
    primary = tables["merchants"].set_index("merchant_id").category_id
    props = tables["proposals"]
    props = props[props.merchant_id.isin(ids) & (props.approved_at <= as_of)]
    deals = tables["deals"]
    deals = deals[deals.merchant_id.isin(ids) & (deals.gp30_known_at <= as_of)]
    terms = ["merchant_id", "discount_pct", "price", "duration_days", "category_id", "at"]
    past = pd.concat([props.assign(at=props.approved_at)[terms], deals.assign(at=deals.started_at)[terms]],
                     ignore_index=True)  # fmt: skip
    if past.empty:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    past["focus"] = np.where(past.category_id.to_numpy() == primary.reindex(past.merchant_id).to_numpy(),
                             "primary", "secondary")  # fmt: skip
    past = past.assign(variant=np.arange(len(past)), type="safe", distance=0.0)
    scored = predict(past[CANDIDATE_COLUMNS])
    n_p = len(props)
    age = (as_of - pd.to_datetime(past["at"])).dt.total_seconds().to_numpy() / 86400.0
    base = scored[["merchant_id", "discount_pct", "price", "duration_days", "focus"]].assign(age_days=age)
    parts = [
        base.iloc[:n_p].assign(part="approval", observed=props.approved.to_numpy(float),
                               predicted=scored.approval.to_numpy()[:n_p]),
        base.iloc[n_p:].assign(part="conversion", observed=deals.conversion_proxy.to_numpy(float),
                               predicted=scored.conversion.to_numpy()[n_p:]),
        base.iloc[n_p:].assign(part="gp30_uplift", observed=deals.gp30_uplift.to_numpy(float),
                               predicted=scored.uplift.to_numpy()[n_p:]),
    ]  # fmt: skip
    out = pd.concat(parts, ignore_index=True)
    return out[np.isfinite(out.observed.to_numpy(float))].reset_index(drop=True)[RECORD_COLUMNS]
