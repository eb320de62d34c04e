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

from aidg.errors import DataError


class ContextProjector:
    """Intercept + whitened top-k principal components of the representation, scaled by 1/√k."""

    def __init__(self, k: int = 32) -> None:
        if k < 1:
            raise DataError(f"the projection needs at least one component, got k={k}")
        self.k = k
        # the fitted PCA's mean, components and their variances (plain arrays: serving reads them back without
        # importing scikit-learn)
        self._pca: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._w: np.ndarray | None = None  # (features, k): whitening and 1/√k in one matrix

    @property
    def dim(self) -> int:
        return 1 + (len(self._pca[1]) if self._pca is not None else self.k)

    def fit(self, representation: np.ndarray) -> ContextProjector:
        from sklearn.decomposition import PCA  # at fitting only: a stored projection reads back without it

        rep = np.asarray(representation, np.float64)
        if rep.ndim != 2 or len(rep) < 2:
            raise DataError(f"fit the projection on a (rows, features) array with 2+ rows, got shape {rep.shape}")
        if not np.isfinite(rep).all():
            raise DataError("the representation holds non-finite values: the scorer is broken")
        k = min(self.k, rep.shape[1], len(rep) - 1)
        pca = PCA(n_components=k, whiten=True, random_state=0).fit(rep)
        self._pca = (pca.mean_, pca.components_, pca.explained_variance_)
        self._w = None
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._pca is None:
            raise DataError("the context projection is not fitted: call fit() on representations first")
        return self._pca

    def state(self) -> dict[str, Any]:
        """The fitted projection as plain arrays (what a model version stores; :meth:`from_state` reads it)."""
        mean, components, variance = self._fitted()
        return {"k": self.k, "mean": mean.tolist(), "components": components.tolist(),
                "explained_variance": variance.tolist()}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ContextProjector:
        """A projection fitted elsewhere (:meth:`state`); it transforms exactly as the fitted one did."""
        out = cls(int(state["k"]))
        names = ("mean", "components", "explained_variance")
        mean, components, variance = (np.asarray(state[k], np.float64) for k in names)
        out._pca = (mean, components, variance)
        return out

    def transform(self, representation: np.ndarray) -> np.ndarray:
        mean, components, variance = self._fitted()
        rep = np.asarray(representation, np.float64)
        if self._w is None:  # sklearn's whitened transform as one matrix: its per-call checks cost ~1 ms a request
            self._w = (components / np.sqrt(variance)[:, None]).T / np.sqrt(len(components))
        z = (rep.reshape(-1, rep.shape[-1]) - mean) @ self._w
        out = np.concatenate([np.ones((len(z), 1)), z], 1)
        return out.reshape(*rep.shape[:-1], out.shape[1])
