"""What-if: change one term of a variant and see the predicted change in score, GP30 uplift and risk.

The point estimate is the scorer in evaluation mode. The interval comes from
Monte-Carlo dropout (Gal & Ghahramani, 2016): the same dropout masks are
applied to the original and the changed variant in each of ``samples``
passes, so the interval is about the *change*, not about each score alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from aidg.domain import DEAL_TERMS
from aidg.errors import DataError
from aidg.features.context import FeatureContext
from aidg.inference.scoring import merchant_inputs
from aidg.inference.snapshot import Snapshot
from aidg.models.deal_scorer import ContextualDealScorer

TERMS = DEAL_TERMS
REPORTED = ("score", "uplift", "risk", "approval", "conversion")


@dataclass
class WhatIf:
    term: str
    before: Any
    after: Any
    change: dict[str, float]  # predicted after − before, per output
    low: dict[str, float]
    high: dict[str, float]
    level: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "from": self.before,
            "to": self.after,
            "level": self.level,
            "samples": self.samples,
            **{
                k: {"change": round(self.change[k], 5), "low": round(self.low[k], 5), "high": round(self.high[k], 5)}
                for k in REPORTED
            },
        }


def _check(term: str, value: Any, ctx: FeatureContext) -> Any:
    if term not in TERMS:
        raise DataError(f"what-if changes one of {', '.join(TERMS)}; got {term!r}")
    if term == "category_id":
        if str(value) not in ctx.category_code.index:
            raise DataError(f"unknown category {value!r}; known: {', '.join(map(str, ctx.category_ids))}")
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{term} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise DataError(f"{term} must be finite, got {value!r}")
    if term == "discount_pct" and not 0 <= v < 1:
        raise DataError(f"discount_pct is a fraction in [0, 1) (e.g. 0.4 for 40 %), got {v}")
    if term == "price" and v <= 0:
        raise DataError(f"price must be positive, got {v}")
    if term == "duration_days" and not 1 <= v <= 365:
        raise DataError(f"duration_days must be in [1, 365], got {v}")
    return int(v) if term == "duration_days" else v


def what_if(
    scorer: ContextualDealScorer,
    ctx: FeatureContext,
    snap: Snapshot,
    variant: pd.Series,
    term: str,
    value: Any,
    samples: int = 32,
    level: float = 0.9,
    seed: int = 0,
) -> WhatIf:
    """Predicted change from setting ``term`` of ``variant`` (a candidates row) to ``value``."""
    new_value = _check(term, value, ctx)
    before = variant.copy()
    after = variant.copy()
    after[term] = new_value
    pair = pd.DataFrame([before, after]).reset_index(drop=True)
    inp = merchant_inputs(ctx, snap, pair)
    with torch.inference_mode():
        scorer.eval()
        out = scorer(*inp.args())
        point = {k: float(out[k][0, 1] - out[k][0, 0]) for k in REPORTED}
        torch.manual_seed(seed)
        scorer.train()  # dropout on: one mask per pass, shared by both variants of the pair
        try:
            draws = {k: np.zeros(samples) for k in REPORTED}
            for s in range(samples):
                o = scorer(*inp.args())
                for k in REPORTED:
                    draws[k][s] = float(o[k][0, 1] - o[k][0, 0])
        finally:
            scorer.eval()
    tail = (1 - level) / 2
    low = {k: float(min(np.quantile(v, tail), point[k])) for k, v in draws.items()}
    high = {k: float(max(np.quantile(v, 1 - tail), point[k])) for k, v in draws.items()}
    b = variant[term]
    return WhatIf(term, b.item() if hasattr(b, "item") else b, new_value, point, low, high, level, samples)
