"""What the deal scorer reads about a merchant and about a candidate deal, with readable names.

Merchant side (:func:`merchant_view`): the merchant's public attributes, its
history statistics (:mod:`aidg.features.summary`), its override record and the
mood of its latest notes, each a named scalar, as of a cutoff. Explanations
show these names, so each is something a merchant manager can read.

Deal side (:func:`deal_view`): the candidate's terms, absolute and relative to
the merchant's habitual deal (the reference of GP30 uplift) and to what the
merchant usually runs.

>>> from aidg.sim.world import simulate
>>> from aidg.features.context import FeatureContext
>>> w = simulate("tiny", seed=3)
>>> ctx = FeatureContext.from_tables(w.tables)
>>> v = merchant_view(ctx, ctx.as_of)
>>> v.numeric.shape[1] == len(MERCHANT_NAMES), v.names[:3]
(True, ['log_list_price', 'list_price_vs_category', 'habitual_discount'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidg.features.context import FeatureContext
from aidg.features.graph import STATIC_NAMES, merchant_static
from aidg.features.panel import to_seconds
from aidg.features.summary import SUMMARY_NAMES, history_summary

OVERRIDE_NAMES = ["override_rate", "override_severity", "recent_approval_rate", "last_discount", "mm_mood"]
MERCHANT_NAMES = [
    *STATIC_NAMES,
    *SUMMARY_NAMES,
    *OVERRIDE_NAMES,
]
DEAL_NAMES = [
    "discount",
    "log_size",
    "duration",
    "secondary_focus",
    "other_category",
    "discount_vs_habitual",
    "discount_vs_usual",
    "log_price_vs_habitual",
    "duration_vs_habitual",
    "short_deal",
    "abs_discount_vs_habitual",
    "abs_discount_vs_usual",
    "abs_log_size",
]
SEVERITY_SCALE = 0.75  # |edit| in field units (discount ÷ 0.2) that counts as the most severe override
RECENT_PROPOSALS = 5


@dataclass
class MerchantView:
    """Named merchant features at a cutoff, rows in ``FeatureContext`` merchant-code order."""

    numeric: np.ndarray  # (n, len(MERCHANT_NAMES)) float32
    category: np.ndarray  # (n,) category code of the primary category (-1 unknown)
    secondary: np.ndarray  # (n,) category code of the secondary category (-1 none)
    names: list[str]

    def frame(self, category_ids: np.ndarray) -> pd.DataFrame:
        """The readable table (one row per merchant) the rule surrogate and the API show."""
        df = pd.DataFrame(self.numeric, columns=self.names)
        cats = np.asarray(category_ids, dtype=object)
        df.insert(0, "category", np.where(self.category >= 0, cats[np.maximum(self.category, 0)], "unknown"))
        return df


def override_counts(ctx: FeatureContext, cutoff: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,) answered proposals and (n,) overrides of each merchant before ``cutoff`` (the override rate's terms)."""
    n = len(ctx.merchant_ids)
    p = ctx.proposals
    p = p[p.t_known.to_numpy() < cutoff] if len(p) else p
    n_prop = np.bincount(p.m.to_numpy(np.int64), minlength=n) if len(p) else np.zeros(n, np.int64)
    o = ctx.overrides
    n_over = np.bincount(o.m.to_numpy(np.int64)[o.t.to_numpy() < cutoff], minlength=n)
    return n_prop, n_over


def override_record(ctx: FeatureContext, cutoff: int) -> np.ndarray:
    """(n, 4): override rate, mean severity in [0, 1], approval rate of the last proposals, last discount."""
    n = len(ctx.merchant_ids)
    out = np.zeros((n, 4), np.float32)
    n_prop, n_over = override_counts(ctx, cutoff)
    p = ctx.proposals
    p = p[p.t_known.to_numpy() < cutoff] if len(p) else p
    o = ctx.overrides
    o = o[o.t.to_numpy() < cutoff]
    out[:, 0] = np.where(n_prop > 0, np.minimum(n_over / np.maximum(n_prop, 1), 1.0), 0.0)
    sev = np.bincount(o.m.to_numpy(np.int64), weights=np.abs(o.delta.to_numpy(float)), minlength=n)
    out[:, 1] = np.where(n_over > 0, np.clip(sev / np.maximum(n_over, 1) / SEVERITY_SCALE, 0, 1), 0.0)
    if len(p):
        last = p.sort_values("t", kind="stable").groupby("m").tail(RECENT_PROPOSALS)
        rate = last.groupby("m").approved.mean()
        out[rate.index.to_numpy(np.int64), 2] = rate.to_numpy(float)
        out[n_prop == 0, 2] = np.nan
        d = ctx.deals[ctx.deals.t.to_numpy() < cutoff].sort_values("t", kind="stable").groupby("m").tail(1)
        out[d.m.to_numpy(np.int64), 3] = d.discount_pct.to_numpy(float)
    else:
        out[:, 2] = np.nan
    no_deal = ctx.deal_stream.count_before(np.arange(n), np.full(n, cutoff)) == 0
    out[no_deal, 3] = np.nan
    return out


def merchant_view(ctx: FeatureContext, at: pd.Timestamp | str, mood: np.ndarray | None = None) -> MerchantView:
    """Readable merchant features from what was known before ``at``.

    ``mood`` is each merchant's note mood in [-1, 1] (positive − negative
    probability of its latest notes, from the sentiment extractor); zeros
    when there is no sentiment model. Missing history values are NaN here;
    the scorer standardises them and reads NaN as "unknown" (zero).
    """
    cut = int(to_seconds(np.array([pd.Timestamp(at)], dtype="datetime64[ns]"))[0])
    static, _ = merchant_static(ctx, cut)
    n_cat = ctx.n_categories
    summary = history_summary(ctx, cut)
    rec = override_record(ctx, cut)
    n = len(ctx.merchant_ids)
    m = mood if mood is not None else np.zeros(n, np.float32)
    numeric = np.column_stack([static[:, n_cat:], summary, rec, np.asarray(m, np.float32).reshape(n, 1)])
    merchants = ctx.tables["merchants"]
    cat = merchants.category_id.astype(str).map(ctx.category_code).fillna(-1).astype(int).to_numpy()
    sec = (
        merchants.secondary_category_id.map(ctx.category_code).fillna(-1).astype(int).to_numpy()
        if "secondary_category_id" in merchants
        else np.full(n, -1)
    )
    return MerchantView(numeric.astype(np.float32), cat.astype(np.int64), sec.astype(np.int64), list(MERCHANT_NAMES))


def deal_view(
    merchants: pd.DataFrame,
    view: MerchantView,
    rows: np.ndarray,
    discount: np.ndarray,
    price: np.ndarray,
    duration: np.ndarray,
    category: np.ndarray,
) -> np.ndarray:
    """(len(rows), len(DEAL_NAMES)) features of deal terms for the merchants at ``rows`` (codes into ``view``).

    ``category`` holds category codes; ``merchants`` is the merchants table in
    code order (its list price and habitual deal are the references).
    """
    m = merchants.iloc[rows]
    lp = m.list_price.astype(float).to_numpy() if "list_price" in m else m.baseline_price.astype(float).to_numpy()
    base_d = m.baseline_discount_pct.astype(float).to_numpy()
    base_p = m.baseline_price.astype(float).to_numpy()
    base_dur = m.baseline_duration_days.astype(float).to_numpy()
    usual = view.numeric[rows, MERCHANT_NAMES.index("mean_discount")]
    usual = np.where(np.isfinite(usual) & (usual > 0), usual, base_d)
    d = np.asarray(discount, float)
    p = np.maximum(np.asarray(price, float), 1e-3)
    dur = np.asarray(duration, float)
    cat = np.asarray(category)
    primary, secondary = view.category[rows], view.secondary[rows]
    log_size = np.log(p / np.maximum(lp, 1e-3))
    return np.column_stack(
        [
            d,
            log_size,
            dur / 60.0,
            (cat == secondary) & (cat != primary),
            (cat != primary) & (cat != secondary),
            d - base_d,
            d - usual,
            np.log(p / np.maximum(base_p, 1e-3)),
            np.log(dur / np.maximum(base_dur, 1.0)),
            dur <= 14,
            np.abs(d - base_d),
            np.abs(d - usual),
            np.abs(log_size),
        ]
    ).astype(np.float32)


__all__ = [
    "DEAL_NAMES",
    "MERCHANT_NAMES",
    "MerchantView",
    "deal_view",
    "merchant_view",
    "override_counts",
    "override_record",
]
