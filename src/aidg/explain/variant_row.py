"""One scored variant as people read it (the API's and ``aidg explain``'s JSON): one typed row, one builder.

Terms are rounded as the marketplace shows them (discount 4 decimals, price 2, whole days), the scorer's outputs
to 5 decimals; an unscored row (the safe answer: the current deal, no model run) has no score, components or risk.
The builder works on columns (NumPy rounding, then one dict per row): the service builds a response's rows with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from aidg.domain import PREDICTED


class TopFeature(TypedDict):
    feature: str
    value: Any
    weight: float


class VariantRow(TypedDict, total=False):
    variant: int
    discount_pct: float
    price: float
    duration_days: int
    category_id: str
    focus: str
    type: str
    score: float | None
    components: dict[str, float]  # gp30_uplift, approval, conversion
    risk: float | None
    top_features: list[TopFeature]
    refused: str  # why the guard refused it (the service's rows)
    expected: dict[str, float]  # the chosen row only: conversion and GP30 uplift corrected per merchant (the service)
    p_override: float  # the explainer's rows
    profile_attention_share: float
    attention_concentration: float  # the explainer's rows (:func:`aidg.explain.reading.attention_concentration`)


def variant_rows(
    terms: Mapping[str, Sequence[Any] | np.ndarray],
    scores: Mapping[str, np.ndarray] | None = None,
    top_features: Sequence[list[TopFeature]] | None = None,
) -> list[VariantRow]:
    """Rows from columns: ``terms`` holds variant, discount_pct, price, duration_days, category_id, focus, type;
    ``scores`` (None: unscored) holds score, uplift, approval, conversion, risk; ``top_features`` one list a row."""
    n = len(terms["variant"])
    variant = np.asarray(terms["variant"]).astype(int).tolist()
    discount = np.round(np.asarray(terms["discount_pct"], float), 4).tolist()
    price = np.round(np.asarray(terms["price"], float), 2).tolist()
    days = np.asarray(terms["duration_days"]).astype(int).tolist()
    labels = {k: [str(v) for v in terms[k]] for k in ("category_id", "focus", "type")}
    s = {k: np.round(np.asarray(scores[k], float), 5).tolist() for k in PREDICTED} if scores is not None else None
    rows: list[VariantRow] = []
    for i in range(n):
        row: VariantRow = {
            "variant": variant[i],
            "discount_pct": discount[i],
            "price": price[i],
            "duration_days": days[i],
            "category_id": labels["category_id"][i],
            "focus": labels["focus"][i],
            "type": labels["type"][i],
            "score": s["score"][i] if s else None,
            "components": (
                {"gp30_uplift": s["uplift"][i], "approval": s["approval"][i], "conversion": s["conversion"][i]}
                if s
                else {}
            ),
            "risk": s["risk"][i] if s else None,
            "top_features": list(top_features[i]) if top_features is not None else [],
        }
        rows.append(row)
    return rows


__all__ = ["TopFeature", "VariantRow", "variant_rows"]
