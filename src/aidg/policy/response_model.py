"""The response model decisions are made with: a predictor's outputs corrected per merchant by its own record.

A predictor (the scorer, or the gradient-boosted baseline for comparison)
predicts each reward part of each deal. Before a merchant's first AIDG
decision its record (:func:`aidg.inference.history.merchant_record`: past
approvals, conversions and GP30s beside the predictor's predictions for the
same terms) already says where the predictor errs for that merchant. The
per-merchant posterior (:class:`~aidg.policy.merchant_posterior.MerchantPosterior`,
pooled population → category → merchant) learns those errors as a function of
the terms relative to the merchant's current deal; its mean corrects every
variant's parts and composite score, its spread gives the interval of the
expected GP30 uplift. This is what ``risk_aware_ts`` starts from in the arena
and what ``aidg evaluate`` reports as the response model.

The current deal of a merchant is its habitual deal (the merchants table's
``baseline_*`` terms), the reference of GP30 uplift.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import numpy as np
import pandas as pd

from aidg.config import Settings
from aidg.errors import DataError
from aidg.policy.merchant_posterior import MerchantPosterior, PartRecord, Record
from aidg.policy.pooled import term_features, term_features_rows


def current_terms(merchants: pd.DataFrame, ids: Iterable[str]) -> pd.DataFrame:
    """Each merchant's current (habitual) deal: ``category_id``, ``discount_pct``, ``price``, ``duration_days``,
    indexed by ``merchant_id``."""
    m = merchants.assign(merchant_id=merchants.merchant_id.astype(str)).set_index("merchant_id")
    ids = [str(i) for i in ids]
    missing = [i for i in ids if i not in m.index]
    if missing:
        raise DataError(f"merchant {missing[0]!r} is not in the merchants table")
    m = m.loc[ids]
    return pd.DataFrame(
        {
            "category_id": m.category_id.astype(str).to_numpy(),
            "discount_pct": m.baseline_discount_pct.to_numpy(float),
            "price": m.baseline_price.to_numpy(float),
            "duration_days": m.baseline_duration_days.to_numpy(float),
        },
        index=pd.Index(ids, name="merchant_id"),
    )


def deal_features(deals: pd.DataFrame, current: tuple[float, float, float]) -> np.ndarray:
    """Term features (:func:`~aidg.policy.pooled.term_features`) of one merchant's deals (``discount_pct``,
    ``price``, ``duration_days``, optional ``focus``) relative to its current deal."""
    return term_features(deals.discount_pct.to_numpy(float), deals.price.to_numpy(float),
                         deals.duration_days.to_numpy(float), _secondary(deals), current)  # fmt: skip


def deal_features_rows(deals: pd.DataFrame, current: pd.DataFrame) -> np.ndarray:
    """:func:`deal_features` of several merchants' deals at once, each row relative to its own merchant's current
    deal (``current``: :func:`current_terms`)."""
    c = current.loc[list(deals.merchant_id.astype(str))]
    return term_features_rows(
        deals.discount_pct.to_numpy(float), deals.price.to_numpy(float), deals.duration_days.to_numpy(float),
        _secondary(deals), c.discount_pct.to_numpy(float), c.price.to_numpy(float), c.duration_days.to_numpy(float),
    )  # fmt: skip


def _secondary(deals: pd.DataFrame) -> np.ndarray:
    return (deals.focus == "secondary").to_numpy() if "focus" in deals else np.zeros(len(deals), bool)


def current_deals(current: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """merchant -> its current deal's (discount, price, days), from :func:`current_terms`."""
    terms = current[["discount_pct", "price", "duration_days"]].to_numpy(float)
    return {str(m): (float(d), float(p), float(t)) for m, (d, p, t) in zip(current.index, terms, strict=True)}


def merchant_records(record: pd.DataFrame | None, current: pd.DataFrame) -> list[tuple[str, str, Record]]:
    """(merchant, category, record) of each merchant of ``current`` (:func:`current_terms`) with a record in
    ``record`` (:func:`~aidg.inference.history.merchant_record`'s frame; None: none), each observation with its age
    (a frame without ``age_days``: all of today; the posterior weighs approvals by it)."""
    if record is None or record.empty:
        return []
    mids = record.merchant_id.astype(str)
    keep = mids.isin(current.index).to_numpy()
    record, mids = record[keep], mids[keep]
    psi = deal_features_rows(record, current)  # every record's features at once
    err = record.observed.to_numpy(float) - record.predicted.to_numpy(float)
    age = record.age_days.to_numpy(float) if "age_days" in record else np.zeros(len(record))
    cats = current.category_id.astype(str).to_dict()
    out: dict[str, Record] = {}
    groups = pd.Series(0, index=pd.MultiIndex.from_arrays([mids.to_numpy(), record.part.astype(str).to_numpy()]))
    for key, idx in groups.groupby(level=[0, 1], sort=False).indices.items():
        m, part = (str(k) for k in cast(tuple[str, str], key))
        out.setdefault(m, {})[part] = PartRecord(psi[idx], err[idx], age[idx])
    return [(m, cats[m], rec) for m, rec in out.items()]


def warmed_posterior(settings: Settings, records: Iterable[tuple[str, str, Record]]) -> MerchantPosterior:
    """A posterior warm-started from (merchant, category, record) triples: each part's prior widened by the
    records' errors (:meth:`~aidg.policy.merchant_posterior.MerchantPosterior.calibrate`), then every record
    learnt. ``posterior.widened`` holds the widening per part."""
    post = MerchantPosterior(settings.posterior, settings.reward)
    post.warm_start_many(list(records))
    return post


def corrected(
    scored: pd.DataFrame, current: pd.DataFrame, record: pd.DataFrame | None, settings: Settings
) -> pd.DataFrame:
    """``scored`` (one row per deal: ``merchant_id``, terms, and the predictor's ``score``, ``approval``,
    ``conversion``, ``uplift``) with those columns corrected by each merchant's posterior, plus ``uplift_sd``
    (the expected GP30 uplift's posterior sd). ``current``: :func:`current_terms`; ``record``: the predictor's
    :func:`~aidg.inference.history.merchant_record` (None or empty: population and category priors only)."""
    ids = list(dict.fromkeys(scored.merchant_id.astype(str)))
    cats = current.category_id.astype(str).to_dict()
    post = warmed_posterior(
        settings, merchant_records(record, current.loc[ids])
    )
    out = scored.reset_index(drop=True).copy()
    cols = {c: out[c].to_numpy(float).copy() for c in ("score", "approval", "conversion", "uplift")}
    psi_all = deal_features_rows(out, current)
    sd = np.full(len(out), np.nan)
    # every merchant's rows corrected in arrays, written back once: per-merchant writes into a frame of
    # millions of rows cost minutes at the memo's scale
    for key, idx in out.groupby(out.merchant_id.astype(str), sort=False).indices.items():
        m = str(key)
        psi = psi_all[idx]
        parts = post.part_posteriors(m, cats[m])
        shift, _ = post.correction(parts, psi)
        mean, sd[idx] = post.uplift_interval(parts, psi, cols["uplift"][idx])
        cols["score"][idx] += shift
        cols["uplift"][idx] = mean
        for part in ("approval", "conversion"):
            cols[part][idx] = np.clip(cols[part][idx] + psi @ parts[part][0], 0, 1)
    for col, values in cols.items():
        out[col] = values
    out["uplift_sd"] = sd
    return out
