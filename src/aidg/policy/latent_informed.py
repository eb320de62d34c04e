"""``latent_informed``: the arena's diagnostic ceiling for what a perfect merchant profile could reach.

A gradient-boosted model (scikit-learn's ``HistGradientBoostingRegressor``)
predicts a deal's true expected reward from the simulator's *hidden* merchant
traits (elasticity, preferred discount and package size, capacity, the rep's
habit, …: :meth:`aidg.sim.oracle.Oracle.traits`) and the deal's terms. It is
fitted on the version's *training* merchants only (their candidates and
habitual deals, with the oracle's expectations as targets, never a noisy
draw) and, in the arena, chooses each held-out merchant's variant of highest
predicted reward, never learning. Our policies never see these traits: the
gap between ``latent_informed``'s ``oracle_gain_share`` and ours is what a
better profile could still buy; the gap between it and 1 is what even the
traits cannot tell from one week's terms (season, a shared model's error).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aidg.errors import DataError


def latent_features(traits: pd.DataFrame, terms: pd.DataFrame, category: np.ndarray) -> np.ndarray:
    """One row per deal: its merchant's hidden traits (``traits``, row for row) and its terms in the merchant's
    coordinates (discount, package size × list price, duration, primary / secondary category)."""
    if len(traits) != len(terms) or len(category) != len(terms):
        raise DataError(f"{len(traits)} trait rows and {len(category)} categories for {len(terms)} deals")
    size = terms.price.to_numpy(float) / traits.list_price.to_numpy(float)
    deal = np.column_stack(
        [
            terms.discount_pct.to_numpy(float),
            size,
            np.log(np.maximum(size, 1e-3)),
            terms.duration_days.to_numpy(float),
            category == traits.primary_cat.to_numpy(),
            (category == traits.secondary_cat.to_numpy()) & (category != traits.primary_cat.to_numpy()),
        ]
    )
    return np.column_stack([traits.to_numpy(float), deal])


class LatentRewardModel:
    """The traits-and-terms → true reward regression (module docstring)."""

    def __init__(self, seed: int = 0, max_iter: int = 300) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        self.model_ = HistGradientBoostingRegressor(max_iter=max_iter, learning_rate=0.1, random_state=seed)

    def fit(self, features: np.ndarray, reward: np.ndarray) -> LatentRewardModel:
        if len(features) < 50:
            raise DataError(f"the latent-informed reference needs at least 50 training deals, got {len(features)}")
        self.model_.fit(features, reward)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict(features), float)
