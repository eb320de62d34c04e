"""Per-merchant history statistics at a cutoff: cheap, readable, point-in-time correct.

They join the merchant's public attributes in the profile's ``static`` block
(and name the features explanations show): how deep its deals run, how they
did, what it approves and rejects, how seasonal and how urgency-driven its
results look. Only values known before the cutoff count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aidg.features.context import DAY, UPLIFT_CLIP, FeatureContext

SUMMARY_NAMES = [
    "mean_discount",
    "std_discount",
    "mean_uplift",
    "uplift_vs_discount",
    "short_deal_uplift_gap",
    "monthly_uplift_spread",
    "mean_redemption",
    "mean_conversion",
    "mean_log_price_x_list",
    "secondary_focus_share",
    "approval_rate",
    "approved_minus_rejected_discount",
    "recent_uplift",
]


def history_summary(ctx: FeatureContext, cutoff: int) -> np.ndarray:
    """(n_merchants, 13) statistics of each merchant's history strictly before ``cutoff`` (seconds)."""
    n = len(ctx.merchant_ids)
    d = ctx.deals[ctx.deals.t < cutoff]
    known = d.t_known.to_numpy() < cutoff
    up = np.where(known, np.clip(d.gp30_uplift.to_numpy(float), *UPLIFT_CLIP), np.nan)
    conv = np.where(d.t_conv.to_numpy() < cutoff, d.conversion_proxy.to_numpy(float), np.nan)
    red = np.where(known, d.redemption_rate.to_numpy(float), np.nan)
    primary = ctx.tables["merchants"].category_id.astype(str).map(ctx.category_code).to_numpy()
    gp = np.where(known, np.log1p(np.maximum(d.gp30.to_numpy(float), 0)), np.nan)
    frame = pd.DataFrame(
        {
            "gp": gp,
            "m": d.m.to_numpy(),
            "disc": d.discount_pct.to_numpy(float),
            "up": up,
            "conv": conv,
            "red": red,
            "ls": d.log_size.to_numpy(float),
            "short": d.duration_days.to_numpy(float) <= 14,
            "month": pd.to_datetime(d.t.to_numpy(), unit="s").month,
            "sec": d.c.to_numpy() != primary[d.m.to_numpy()],
            "age": (cutoff - d.t.to_numpy()) / DAY,
        }
    )
    g = frame.groupby("m")
    out = pd.DataFrame(index=pd.RangeIndex(n))
    out["mean_discount"] = g.disc.mean()
    out["std_discount"] = g.disc.std()
    out["mean_uplift"] = g.up.mean()
    dc = frame.disc - g.disc.transform("mean")
    uc = frame.up - g.up.transform("mean")
    cov = (dc * uc).groupby(frame.m).mean()
    out["uplift_vs_discount"] = cov / (dc.pow(2).groupby(frame.m).mean() + 1e-3)
    short = frame[frame.short].groupby("m").up.mean()
    long = frame[~frame.short].groupby("m").up.mean()
    out["short_deal_uplift_gap"] = short - long
    out["monthly_uplift_spread"] = frame.groupby(["m", "month"]).up.mean().groupby(level=0).std()
    out["mean_redemption"] = g.red.mean()
    out["mean_conversion"] = g.conv.mean()
    out["mean_log_price_x_list"] = g.ls.mean()
    out["secondary_focus_share"] = g.sec.mean()
    recent = frame[frame.age < 180].groupby("m").up.mean()
    p = ctx.proposals
    if len(p):
        p = p[p.t_known < cutoff]
        out["approval_rate"] = p.groupby("m").approved.mean()
        appr = p[p.approved.astype(bool)].groupby("m").discount_pct.mean()
        rej = p[~p.approved.astype(bool)].groupby("m").discount_pct.mean()
        out["approved_minus_rejected_discount"] = appr - rej
    out["recent_uplift"] = recent
    by_month = frame.groupby(["m", "month"])
    out["monthly_gp30_spread"] = by_month.gp.mean().groupby(level=0).std()
    out["monthly_conversion_spread"] = np.log(by_month.conv.mean() + 1e-3).groupby(level=0).std()
    out["short_deal_conversion_gap"] = (
        frame[frame.short].groupby("m").conv.mean() - frame[~frame.short].groupby("m").conv.mean()
    )
    out = out.reindex(columns=SUMMARY_NAMES)
    return np.nan_to_num(out.to_numpy(float).astype(np.float32))
