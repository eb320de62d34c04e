"""The bandit's context vector φ: the scorer's 128-d representation, reduced and whitened.

The neural-linear posterior (:mod:`aidg.policy.bandit`) learns a linear
correction of the scorer's score on φ. On the raw 128-d representation that
is 128 weights to learn from delayed rewards, and a 128 × 128 precision to
factorise every round; the representation's variance sits in a few
directions anyway. So φ is an intercept followed by the top ``k`` principal
components (scikit-learn's PCA), whitened and scaled by 1/√k so that
E‖φ‖² ≈ 2 whatever ``k`` is: a prior N(0, σ²·I) on the weights then means
"the scorer is off by about σ", which is what the prior should say.

The projection is fitted without rewards (on the representations of the
variants the policy will see, or of the training merchants), so it uses no
outcome it should not.

>>> import numpy as np
>>> rep = np.random.default_rng(0).normal(size=(500, 16))
>>> p = ContextProjector(k=4).fit(rep)
>>> phi = p.transform(rep)
>>> phi.shape, bool(np.allclose(phi[:, 0], 1.0)), round(float((phi[:, 1:] ** 2).sum(1).mean()), 2)
((500, 5), True, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from aidg.errors import DataError


class ContextProjector:
    """Intercept + whitened top-k principal components of the representation, scaled by 1/√k."""

    def __init__(self, k: int = 32) -> None:
        if k < 1:
            raise DataError(f"the projection needs at least one component, got k={k}")
        self.k = k
        self._pca: PCA | None = None
        self._w: np.ndarray | None = None  # (features, k): whitening and 1/√k in one matrix

    @property
    def dim(self) -> int:
        return 1 + (self._pca.n_components_ if self._pca is not None else self.k)

    def fit(self, representation: np.ndarray) -> ContextProjector:
        rep = np.asarray(representation, np.float64)
        if rep.ndim != 2 or len(rep) < 2:
            raise DataError(f"fit the projection on a (rows, features) array with 2+ rows, got shape {rep.shape}")
        if not np.isfinite(rep).all():
            raise DataError("the representation holds non-finite values: the scorer is broken")
        k = min(self.k, rep.shape[1], len(rep) - 1)
        self._pca = PCA(n_components=k, whiten=True, random_state=0).fit(rep)
        self._w = None
        return self

    def state(self) -> dict[str, Any]:
        """The fitted projection as plain arrays (what a model version stores; :meth:`from_state` reads it)."""
        if self._pca is None:
            raise DataError("the context projection is not fitted: call fit() on representations first")
        p = self._pca
        return {"k": self.k, "mean": p.mean_.tolist(), "components": p.components_.tolist(),
                "explained_variance": p.explained_variance_.tolist()}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ContextProjector:
        """A projection fitted elsewhere (:meth:`state`); it transforms exactly as the fitted one did."""
        out = cls(int(state["k"]))
        pca = PCA(n_components=len(state["components"]), whiten=True)
        pca.mean_ = np.asarray(state["mean"], np.float64)
        pca.components_ = np.asarray(state["components"], np.float64)
        pca.explained_variance_ = np.asarray(state["explained_variance"], np.float64)
        pca.n_components_ = len(pca.components_)
        out._pca = pca
        return out

    def transform(self, representation: np.ndarray) -> np.ndarray:
        if self._pca is None:
            raise DataError("the context projection is not fitted: call fit() on representations first")
        rep = np.asarray(representation, np.float64)
        if self._w is None:  # sklearn's whitened transform as one matrix: its per-call checks cost ~1 ms a request
            p = self._pca
            self._w = (p.components_ / np.sqrt(p.explained_variance_)[:, None]).T / np.sqrt(p.n_components_)
        z = (rep.reshape(-1, rep.shape[-1]) - self._pca.mean_) @ self._w
        out = np.concatenate([np.ones((len(z), 1)), z], 1)
        return out.reshape(*rep.shape[:-1], out.shape[1])
