"""What the rule surrogate reads and what it is asked (memo §2.2: a decision-tree surrogate a rep can read).

**Asked** (:data:`LABEL_BEATS`): does the scorer expect this variant to beat the merchant's current (habitual)
deal, a score above the current deal's? It is the question the explanation's first line answers
(:func:`aidg.explain.reading.verdict`), so a variant's rule and the verdict never talk past each other. Versions
trained before asked whether the variant's score was in the top 20 % of every merchant's candidates
(:data:`LABEL_TOP_SHARE`): that cut mixed merchants, so a merchant's best variant could read "do not recommend"
because the whole merchant scored low; they still load and explain as they were trained.

**Read**: the merchant's named features and the variant's terms (:func:`rule_frame`) and, for
:data:`LABEL_BEATS`, the response model's predicted effects of the variant relative to the current deal
(:data:`RELATIVE`: the scorer's predicted GP30 uplift, approval, conversion and risk for the variant minus its
predictions for the current deal). A rule then reads like ``IF approval_vs_current > -0.04 AND
gp30_uplift_vs_current > 0.02 THEN beats the current deal``: which trade-off of approval against GP30 makes the
variant worth it for this merchant, in the model's own terms, beside the merchant's features and the terms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from aidg.features.candidates import current_deals
from aidg.features.context import FeatureContext
from aidg.inference.scoring import score_candidates
from aidg.inference.snapshot import Snapshot

if TYPE_CHECKING:
    from aidg.models.deal_scorer import ContextualDealScorer

LABEL_BEATS = "beats_current"  # the label since the surrogate was asked what the verdict answers
LABEL_TOP_SHARE = "top_share"  # versions trained before: a score in the top 20 % of all training candidates
POSITIVE, NEGATIVE = "beats the current deal", "does not beat the current deal"
RELATIVE = {"uplift": "gp30_uplift_vs_current", "approval": "approval_vs_current",
            "conversion": "conversion_vs_current", "risk": "risk_vs_current"}  # fmt: skip

RULE_TERMS = [
    "discount",
    "size_x_list_price",
    "duration_days",
    "focus",
    "discount_vs_habitual",
    "discount_gap",
    "size_gap",
]


def rule_frame(ctx: FeatureContext, snap: Snapshot, candidates: pd.DataFrame) -> pd.DataFrame:
    """Readable rows for the rule surrogate: the merchant's named features and the variant's terms."""
    rows = ctx.codes(candidates.merchant_id.astype(str).to_numpy())
    merchant = snap.view.frame(ctx.category_ids).iloc[rows].reset_index(drop=True)
    m = ctx.tables["merchants"].iloc[rows]
    lp = (m.list_price if "list_price" in m else m.baseline_price).astype(float).to_numpy()
    terms = pd.DataFrame(
        {
            "discount": candidates.discount_pct.to_numpy(float),
            "size_x_list_price": candidates.price.to_numpy(float) / np.maximum(lp, 1e-3),
            "duration_days": candidates.duration_days.to_numpy(float),
            "focus": candidates.focus.astype(str).to_numpy() if "focus" in candidates else "primary",
            "discount_vs_habitual": candidates.discount_pct.to_numpy(float)
            - m.baseline_discount_pct.astype(float).to_numpy(),
        }
    )
    terms["discount_gap"] = terms.discount_vs_habitual.abs()  # how far from the habitual discount, either way
    terms["size_gap"] = np.abs(np.log(np.maximum(terms.size_x_list_price, 1e-3)))  # how far from one list price
    out = pd.concat([merchant, terms], axis=1)
    num = out.columns.difference(["category", "focus"])
    out[num] = out[num].astype(float).fillna(0.0)  # unknown history reads as 0 in rules, as in the scorer
    return out


def surrogate_inputs(
    scorer: ContextualDealScorer, ctx: FeatureContext, snap: Snapshot, scored: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rule surrogate's rows for scored candidates (:func:`rule_frame` and :data:`RELATIVE`) and each one's
    label: the variant's score above its merchant's current deal's (the merchants' current deals are scored
    here, with the same scorer and snapshot)."""
    ids = [str(m) for m in pd.unique(scored.merchant_id.astype(str))]
    by_id = ctx.tables["merchants"].set_index(ctx.tables["merchants"].merchant_id.astype(str))
    cur = score_candidates(scorer, ctx, snap, current_deals(by_id, ids)).table.set_index("merchant_id")
    frame = rule_frame(ctx, snap, scored)
    mids = scored.merchant_id.astype(str).to_numpy()
    for part, name in RELATIVE.items():
        frame[name] = scored[part].to_numpy(float) - cur[part].reindex(mids).to_numpy(float)
    return frame, scored.score.to_numpy(float) > cur.score.reindex(mids).to_numpy(float)


__all__ = ["LABEL_BEATS", "LABEL_TOP_SHARE", "NEGATIVE", "POSITIVE", "RELATIVE", "RULE_TERMS", "rule_frame",
           "surrogate_inputs"]  # fmt: skip
