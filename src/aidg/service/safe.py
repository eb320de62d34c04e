"""The safe answer: the merchant's current deal as the existing system proposes it, with no model run on it.

Given when AIDG must not or cannot personalize: the merchant has not consented to personalization, or the
served model failed on the request (an exception, a NaN score). It is "safe" in the memo's sense (the deal
the marketplace would propose without AIDG), unscored, and logs no decision, so nothing is learned from it
and no exploration happens. Its variant comes from the merchant's serving bundle (cache → online store →
the in-memory snapshot), so it survives a Redis outage too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aidg.explain.reading import KEEP, keep_verdict
from aidg.explain.variant_row import variant_rows

if TYPE_CHECKING:
    import pandas as pd

    from aidg.service.serving import Served


def safe_answer(
    served: Served, merchant_id: str, n: int, at: pd.Timestamp, degraded: list[str], state: str, why: str
) -> dict[str, Any]:
    """The current deal for the merchant, unscored, with ``why`` (see the module docstring)."""
    b = served.bundle(merchant_id, n, at, degraded)
    i = b.n
    terms = {k: b.terms[k][i : i + 1] for k in ("variant", "discount_pct", "price", "duration_days")}
    chosen = variant_rows({**terms, "category_id": [b.labels["category_id"][i]], "focus": [b.labels["focus"][i]],
                           "type": ["current"]})[0]  # fmt: skip
    return {
        "verdict": keep_verdict(f"{KEEP} (no model ran): {why}"),
        "decision_id": None,
        "merchant_id": merchant_id,
        "as_of": str(at.date()),
        "n_variants": 0,
        "model_version": served.version,
        "rollout_arm": "none",
        "rollout_state": state,
        "personalized": False,
        "why_not_personalized": why,
        "chosen": chosen,
        "current": chosen,
        "propensity": 1.0,
        "why_current": why,
        "variants": [],
        "degraded": bool(degraded),
        "degraded_reasons": degraded,
    }


__all__ = ["safe_answer"]
