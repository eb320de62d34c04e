"""Scoring candidate deals with a trained ContextualDealScorer: checked inputs in, a scored table out.

``score_candidates(scorer, ctx, snapshot, candidates).table`` is the candidates
frame with the outputs as columns (score, uplift, approval, conversion,
p_override, severity, risk); bad input raises a DataError / NotFoundError that
says what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aidg.domain import SCORER_OUTPUTS
from aidg.errors import DataError, NotFoundError
from aidg.features.context import FeatureContext
from aidg.inference.snapshot import Snapshot, candidate_features
from aidg.models.deal_scorer import ContextualDealScorer
from aidg.models.scorer_config import MerchantTensors

OUTPUTS = SCORER_OUTPUTS


@dataclass
class ScoredCandidates:
    """The candidates with the scorer's outputs as columns, plus per-row attention and representation."""

    table: pd.DataFrame  # candidates + OUTPUTS columns
    attention: np.ndarray  # (n, T) over ScorerConfig.token_names
    representation: np.ndarray  # (n, R)
    token_names: list[str]


@dataclass
class MerchantInputs:
    """One merchant's scorer inputs and its candidates' features, as tensors (batch of one)."""

    merchant: MerchantTensors  # each (1, ...)
    deal: torch.Tensor  # (1, N, D)
    deal_category: torch.Tensor  # (1, N)

    @property
    def x(self) -> torch.Tensor:
        return self.merchant.x

    def args(self) -> tuple[torch.Tensor, ...]:
        return (*self.merchant, self.deal, self.deal_category)


def merchant_inputs(ctx: FeatureContext, snap: Snapshot, candidates: pd.DataFrame) -> MerchantInputs:
    """Checked inputs for one merchant's candidates (all rows must share one merchant id)."""
    if len(candidates) == 0:
        raise DataError("the candidate set is empty: give at least one deal variant to score")
    ids = candidates.merchant_id.astype(str).unique()
    if len(ids) != 1:
        raise DataError(f"merchant_inputs takes one merchant's candidates; got {len(ids)} merchants")
    return batch_inputs(ctx, snap, candidates, len(candidates))


def batch_inputs(ctx: FeatureContext, snap: Snapshot, candidates: pd.DataFrame, n: int) -> MerchantInputs:
    """Checked inputs for several merchants' candidates, ``n`` rows each, each merchant's rows together (a batch
    of ``len(candidates) // n``)."""
    ids = candidates.merchant_id.astype(str).to_numpy()[::n]
    index = ctx.merchant_code.index
    known = index.get_indexer(pd.Index(ids)) >= 0 if index.is_unique else np.asarray(pd.Index(ids).isin(index))
    if not known.all():
        raise NotFoundError(f"unknown merchant {ids[~known][0]!r}: it is not in the merchants table")
    rows, feats, cats = candidate_features(ctx, snap, candidates)
    r = rows[::n]
    finite = np.isfinite(snap.profile[r]).all(1) & np.isfinite(snap.intent[r]).all(1)
    if not finite.all():
        raise DataError(f"merchant {ids[~finite][0]!r} has a non-finite profile: recompute its features (aidg train)")
    x = snap.view.numeric[r]
    inf = np.isinf(x)
    if inf.any():
        j = int(np.flatnonzero(inf.any(1))[0])
        bad = [name for name, v in zip(snap.view.names, inf[j], strict=True) if v]
        raise DataError(f"merchant {ids[j]!r} has infinite feature values: {', '.join(bad)}")
    b = len(r)
    return MerchantInputs(
        snap.tensors(r),
        torch.from_numpy(feats.reshape(b, n, -1)),
        torch.from_numpy(cats.reshape(b, n).astype(np.int64)),
    )


BATCH_ROWS = 4096  # candidates per forward pass: merchants with as many candidates each are scored together


@torch.inference_mode()
def score_candidates(
    scorer: ContextualDealScorer, ctx: FeatureContext, snap: Snapshot, candidates: pd.DataFrame
) -> ScoredCandidates:
    """Score every candidate; rows keep the input order. Merchants with the same number of candidates go through
    one forward pass together (up to :data:`BATCH_ROWS` rows): one pass per merchant cost minutes at the memo's
    scale (40k current deals of one row each)."""
    if len(candidates) == 0:
        raise DataError("the candidate set is empty: give at least one deal variant to score")
    scorer.eval()
    cand = candidates.reset_index(drop=True)
    n_tok = len(scorer.config.token_names)
    cols = {k: np.zeros(len(cand), np.float64) for k in OUTPUTS}
    attention = np.zeros((len(cand), n_tok), np.float32)
    rep = np.zeros((len(cand), scorer.config.representation_dim), np.float32)
    by_count: dict[int, list[np.ndarray]] = {}
    for idx in cand.groupby(cand.merchant_id.astype(str), sort=False).indices.values():
        by_count.setdefault(len(idx), []).append(np.asarray(idx))
    for n, merchants in by_count.items():
        per = max(1, BATCH_ROWS // n)
        for lo in range(0, len(merchants), per):
            flat = np.concatenate(merchants[lo : lo + per])
            out = scorer(*batch_inputs(ctx, snap, cand.iloc[flat], n).args())
            for k in OUTPUTS:
                cols[k][flat] = out[k].reshape(-1).double().numpy()
            attention[flat] = out["attention"].reshape(len(flat), n_tok).numpy()
            rep[flat] = out["representation"].reshape(len(flat), -1).numpy()
    if not all(np.isfinite(v).all() for v in cols.values()):
        raise DataError("the scorer produced non-finite scores: the model is broken; load another version")
    table = cand.copy()
    for k in OUTPUTS:
        table[k] = cols[k]
    return ScoredCandidates(table, attention, rep, scorer.config.token_names)


FINGERPRINT_DISCOUNTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
FINGERPRINT_SIZES = (0.5, 1.0, 2.0)
FINGERPRINT_DURATIONS = (7, 30)


@torch.inference_mode()
def behaviour_fingerprint(
    scorer: ContextualDealScorer, ctx: FeatureContext, snap: Snapshot, rows: np.ndarray
) -> np.ndarray:
    """(len(rows), 108): the scorer's predicted uplift, approval and conversion over 36 standard deals.

    The standard deals are absolute (discount 10 %–60 % × size 0.5/1/2 × list
    price × 7 or 30 days, primary category), so two merchants are close when
    the scorer expects them to respond alike to the same offers: the
    embedding the prototypical memory compares ("merchants like yours").
    """
    from aidg.features.merchant_view import deal_view

    scorer.eval()
    rows = np.asarray(rows, np.int64)
    merchants = ctx.tables["merchants"]
    lp = (merchants.list_price if "list_price" in merchants else merchants.baseline_price).astype(float).to_numpy()
    m = snap.tensors(rows)
    cat = snap.view.category[rows]
    feats = []
    for d in FINGERPRINT_DISCOUNTS:
        for s in FINGERPRINT_SIZES:
            for t in FINGERPRINT_DURATIONS:
                n = len(rows)
                feats.append(deal_view(merchants, snap.view, rows, np.full(n, d), s * lp[rows], np.full(n, t), cat))
    deal = torch.from_numpy(np.stack(feats, 1))  # (B, 36, D)
    dcat = torch.from_numpy(np.repeat(cat[:, None], deal.shape[1], 1).astype(np.int64))
    out = scorer(*m, deal, dcat)
    return np.concatenate([out[k].numpy() for k in ("uplift", "approval", "conversion")], 1).astype(np.float32)
