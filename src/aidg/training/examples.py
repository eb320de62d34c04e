"""Training examples of each branch's objective, drawn point-in-time from the logged history.

- deal history: predict the GP30 uplift of a merchant's next deal from the
  deals before it (outcomes masked until known) and the next deal's terms;
- override analyzer: predict the type of the next override on a merchant;
- sequence branch: predict whether the merchant approves the next proposal,
  given every earlier event and the proposal's terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidg.features.context import UPLIFT_CLIP, FeatureContext, log_price
from aidg.features.sequences import terms_of


@dataclass
class Examples:
    m: np.ndarray  # merchant code
    t: np.ndarray  # cutoff (seconds): the history strictly before it
    terms: np.ndarray  # (n, T) terms of the predicted event (empty for overrides)
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.m)

    def take(self, idx: np.ndarray) -> Examples:
        return Examples(self.m[idx], self.t[idx], self.terms[idx], self.y[idx])


def _sample(rng: np.random.Generator, groups: np.ndarray, per_group: int) -> np.ndarray:
    """Up to ``per_group`` random rows of each group (rows are positions into ``groups``)."""
    order = rng.permutation(len(groups))
    g = groups[order]
    rank = np.zeros(len(g), dtype=np.int64)
    srt = np.argsort(g, kind="stable")
    gs = g[srt]
    starts = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(gs)])
    rank[srt] = np.arange(len(gs)) - np.repeat(starts, counts)
    return np.sort(order[rank < per_group])


def deal_examples(ctx: FeatureContext, codes: np.ndarray, cutoff: int, per_merchant: int, seed: int) -> Examples:
    d = ctx.deals
    ok = np.isin(d.m.to_numpy(), codes) & (d.t_known.to_numpy() < cutoff) & d.gp30_uplift.notna().to_numpy()
    ok &= ctx.deal_stream.count_before(d.m.to_numpy(), d.t.to_numpy()) > 0
    rows = np.flatnonzero(ok)
    rows = rows[_sample(np.random.default_rng(seed), d.m.to_numpy()[rows], per_merchant)]
    return uplift_examples(ctx, d.iloc[rows])


def uplift_examples(ctx: FeatureContext, s: pd.DataFrame) -> Examples:
    """Examples "predict the GP30 uplift of these deals from the history before each and its terms"."""
    terms = terms_of(ctx, s)
    y = np.clip(s.gp30_uplift.to_numpy(float), *UPLIFT_CLIP).astype(np.float32)
    return Examples(s.m.to_numpy(np.int64), s.t.to_numpy(np.int64), terms, y)


def override_examples(ctx: FeatureContext, codes: np.ndarray, cutoff: int, per_merchant: int, seed: int) -> Examples:
    o = ctx.overrides
    ok = np.isin(o.m.to_numpy(), codes) & (o.t.to_numpy() < cutoff) & (o["type"].to_numpy() >= 0)
    ok &= ctx.override_stream.count_before(o.m.to_numpy(), o.t.to_numpy()) > 0
    rows = np.flatnonzero(ok)
    rows = rows[_sample(np.random.default_rng(seed), o.m.to_numpy()[rows], per_merchant)]
    s = o.iloc[rows]
    return Examples(
        s.m.to_numpy(np.int64), s.t.to_numpy(np.int64), np.zeros((len(s), 0), np.float32), s["type"].to_numpy(np.int64)
    )


def approval_examples(ctx: FeatureContext, codes: np.ndarray, cutoff: int, per_merchant: int, seed: int) -> Examples:
    p = ctx.proposals
    if len(p) == 0:
        return Examples(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, 4 + ctx.n_categories), np.float32),
            np.zeros(0, np.float32),
        )
    ok = np.isin(p.m.to_numpy(), codes) & (p.t_known.to_numpy() < cutoff)
    rows = np.flatnonzero(ok)
    rows = rows[_sample(np.random.default_rng(seed), p.m.to_numpy()[rows], per_merchant)]
    s = p.iloc[rows]
    terms = terms_of(ctx, s)
    return Examples(
        s.m.to_numpy(np.int64), s.t.to_numpy(np.int64), terms, s.approved.astype(float).to_numpy(np.float32)
    )


__all__ = ["Examples", "approval_examples", "deal_examples", "log_price", "override_examples"]
