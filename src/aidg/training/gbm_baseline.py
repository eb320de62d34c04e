"""The baseline the scorer must beat: scikit-learn HistGradientBoosting on flat features.

Same training rows and the same information as the scorer, flattened: the
readable merchant features, the primary category (categorical), the 512-d
profile, the candidate's features and category (categorical). One model per
component: GP30 uplift (regression, where known), approval and override
(classification), conversion (regression, where known); the composite score
uses the same reward formula and weights. Severity is the merchant's
historical override severity (the scorer learns it).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from aidg.config import RewardSettings
from aidg.features.merchant_view import MERCHANT_NAMES
from aidg.inference.snapshot import ScorerExamples, SnapshotStack
from aidg.models.scorer_config import MerchantTensors
from aidg.reward import composite_reward

MAX_ITER = 300


def flat_features(m: MerchantTensors, deal: np.ndarray, deal_category: np.ndarray) -> np.ndarray:
    """(n, F + 1 + P + D + 1): merchant rows and their deal rows side by side."""
    return np.column_stack(
        [m.x.numpy(), m.category.numpy()[:, None], m.profile.numpy(), deal, np.asarray(deal_category)[:, None]]
    ).astype(np.float32)


@dataclass
class GBMBaseline:
    models: dict[str, Any]
    reward: dict[str, float]
    n_features: int

    @staticmethod
    def fit(stack: SnapshotStack, ex: ScorerExamples, reward: RewardSettings, seed: int = 0) -> GBMBaseline:
        rows = stack.rows(ex.snap, ex.m)
        X = flat_features(rows, ex.deal, ex.deal_category)
        Xr = flat_features(rows, ex.risk_deal, ex.deal_category)
        cats = np.zeros(X.shape[1], bool)
        f = stack.all.view.numeric.shape[1]
        cats[f] = True
        cats[-1] = True
        kw: dict[str, Any] = {"max_iter": MAX_ITER, "learning_rate": 0.05, "categorical_features": cats,
                              "random_state": seed, "early_stopping": True}  # fmt: skip
        up, conv = np.isfinite(ex.uplift), np.isfinite(ex.conversion)
        models = {
            "uplift": HistGradientBoostingRegressor(**kw).fit(X[up], ex.uplift[up]),
            "approval": HistGradientBoostingClassifier(**kw).fit(X, ex.approved.astype(int)),
            "conversion": HistGradientBoostingRegressor(**kw).fit(X[conv], ex.conversion[conv]),
            "override": HistGradientBoostingClassifier(**kw).fit(Xr, ex.overridden.astype(int)),
        }
        return GBMBaseline(models, reward.model_dump(), X.shape[1])

    def predict(self, m: MerchantTensors, deal: np.ndarray, deal_category: np.ndarray) -> dict[str, np.ndarray]:
        X = flat_features(m, deal, deal_category)
        out = {
            "uplift": self.models["uplift"].predict(X),
            "approval": self.models["approval"].predict_proba(X)[:, 1],
            "conversion": np.clip(self.models["conversion"].predict(X), 0, 1),
            "p_override": self.models["override"].predict_proba(X)[:, 1],
        }
        sev = np.nan_to_num(m.x.numpy()[:, MERCHANT_NAMES.index("override_severity")])
        out["score"] = composite_reward(
            out["uplift"], out["approval"], out["conversion"], out["p_override"], sev, RewardSettings(**self.reward)
        )
        return out

    def to_bytes(self) -> bytes:
        return pickle.dumps(self)

    @staticmethod
    def from_bytes(b: bytes) -> GBMBaseline:
        obj = _Unpickler(io.BytesIO(b)).load()
        if not isinstance(obj, GBMBaseline):
            raise TypeError("not a GBMBaseline")
        return obj


class _Unpickler(pickle.Unpickler):
    """Versions registered before the architecture issue pickled this class as ``aidg.models.gbm_baseline``."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED.get(module, module), name)


MOVED = {"aidg.models.gbm_baseline": "aidg.training.gbm_baseline"}
