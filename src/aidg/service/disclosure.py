"""What a caller may see of merchants outside its own: similar merchants as anonymised descriptions.

An explanation's "merchants like yours" are real merchants of the same
category (the prototypes, :mod:`aidg.explain.prototypes`). A merchant-manager
key covers its own merchants only, so it gets each of them as a description
that names nobody: the category, the city tier, the traits that made it
similar (the merchant statistics where the two are closest, each rounded) and
its outcome (mean GP30 uplift of its deals, its deal count in a band). An
admin key gets the same description with the merchant's id.

City tiers split the cities by population into thirds (1: the largest); a
data folder without a cities table gives ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from aidg.features.merchant_view import MERCHANT_NAMES

# merchant statistics a merchant manager can read, shown when they are what two merchants share
TRAITS = (
    "habitual_discount", "habitual_duration", "list_price_vs_category", "mean_discount", "mean_uplift",
    "uplift_vs_discount", "mean_redemption", "mean_conversion", "approval_rate", "override_rate", "tenure_years",
)  # fmt: skip
SHOWN_TRAITS = 3
DEAL_BANDS = ((0, "none"), (1, "1-4"), (5, "5-19"), (20, "20-49"), (50, "50+"))


def deal_band(n: int) -> str:
    """A deal count as a band: an exact count could single a merchant out."""
    return [label for low, label in DEAL_BANDS if n >= low][-1]


def city_tiers(cities: pd.DataFrame | None) -> dict[str, int]:
    """city_id -> tier 1 (the largest third by population), 2 or 3."""
    if cities is None or cities.empty or "population" not in cities:
        return {}
    rank = cities.population.rank(pct=True, method="average").to_numpy(float)
    tier = np.where(rank > 2 / 3, 1, np.where(rank > 1 / 3, 2, 3))
    return dict(zip(cities.city_id.astype(str), tier.astype(int).tolist(), strict=True))


class SimilarMerchants:
    """Describes a merchant's similar merchants from the served tables and merchant statistics.

    Args:
        merchants: the merchants table (``merchant_id``, ``category_id``, ``city_id``).
        categories: the categories table (``category_id``, ``name``).
        cities: the cities table (``city_id``, ``population``), or None.
        deals: the deals table (``merchant_id``, ``gp30_uplift``).
        stats: merchant id -> its statistics (``MERCHANT_NAMES`` order), every served merchant.
    """

    def __init__(
        self,
        merchants: pd.DataFrame,
        categories: pd.DataFrame,
        cities: pd.DataFrame | None,
        deals: pd.DataFrame,
        stats: pd.DataFrame,
    ) -> None:
        m = merchants.assign(merchant_id=merchants.merchant_id.astype(str)).set_index("merchant_id")
        names = categories.assign(category_id=categories.category_id.astype(str)).set_index("category_id").name
        self.category = m.category_id.astype(str).map(names).fillna(m.category_id.astype(str)).to_dict()
        tiers = city_tiers(cities)
        self.tier = {k: tiers.get(str(c)) for k, c in m.city_id.items()} if "city_id" in m else {}
        d = deals.assign(merchant_id=deals.merchant_id.astype(str))
        up = d.gp30_uplift if "gp30_uplift" in d else pd.Series(np.nan, index=d.index)
        grouped = up.groupby(d.merchant_id)
        self.n_deals = grouped.size().to_dict()
        self.mean_uplift = grouped.mean().to_dict()
        cols = [MERCHANT_NAMES.index(t) for t in TRAITS]
        self.stats = stats.iloc[:, cols].set_axis(list(TRAITS), axis=1)
        spread = self.stats.std(ddof=0).replace(0.0, np.nan)
        self.spread = spread.fillna(1.0)

    def describe(self, merchant_id: str, similar: list[dict[str, Any]], reveal_ids: bool) -> list[dict[str, Any]]:
        """``similar`` (``merchant_id``, ``similarity``: the explainer's) as descriptions, best first; with
        ``reveal_ids`` each keeps its ``merchant_id``."""
        out = []
        mine = self.stats.loc[merchant_id] if merchant_id in self.stats.index else None
        if isinstance(mine, pd.DataFrame):  # a repeated id: its first row
            mine = mine.iloc[0]
        for rank, s in enumerate(similar, start=1):
            other = str(s["merchant_id"])
            entry: dict[str, Any] = {"rank": rank, "similarity": s["similarity"]}
            if reveal_ids:
                entry["merchant_id"] = other
            entry["category"] = self.category.get(other)
            entry["city_tier"] = self.tier.get(other)
            entry["similar_in"] = self._shared(mine, other)
            mean = self.mean_uplift.get(other)
            entry["outcome"] = {
                "mean_gp30_uplift": None if mean is None or not np.isfinite(mean) else round(float(mean), 2),
                "deals": deal_band(int(self.n_deals.get(other, 0))),
            }
            out.append(entry)
        return out

    def _shared(self, mine: pd.Series | None, other: str) -> list[dict[str, Any]]:
        """The traits where the two merchants are closest (in units of the traits' spread), rounded."""
        if mine is None or other not in self.stats.index:
            return []
        theirs = self.stats.loc[other].to_numpy(float)
        ours = mine.to_numpy(float)
        gap = np.abs(theirs - ours) / self.spread.to_numpy(float)
        known = np.flatnonzero(np.isfinite(gap))
        order = known[np.argsort(gap[known], kind="stable")][:SHOWN_TRAITS]
        return [{"trait": TRAITS[i], "theirs": round(float(theirs[i]), 2), "yours": round(float(ours[i]), 2)}
                for i in order]  # fmt: skip


__all__ = ["SimilarMerchants", "city_tiers", "deal_band"]
