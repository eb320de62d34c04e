"""Partial pooling for one reward part: population → category → merchant (a hierarchical Bayesian linear model).

A part's error of the scorer (observed − predicted) on a deal with term
features ψ (:func:`term_features`) is modelled as ``ψᵀθ + noise`` with

    θ = θ_population + η_category + δ_merchant,

each level Gaussian around the one above (prior standard deviations
``prior_sd``, per level and per feature). The posterior is the classic
empirical-Bayes plug-in, level by level: the population's θ from every
merchant's data, the category's η from its merchants' data with the
population's mean taken out, the merchant's δ from its own. A merchant with
no data gets its category's correction with its category's uncertainty plus
its own prior; a merchant with a long record gets mostly its own.

Everything is kept as sufficient statistics (``Σ ψψᵀ`` and ``Σ ψ y`` per
merchant, summed up the levels), so updates commute: any order of the same
events gives the same posterior, and a repeated event is caught by the caller
(:class:`~aidg.policy.merchant_posterior.MerchantPosterior`) before it gets
here.

Term features (one row per deal, relative to the merchant's current deal so
that "no history" means "far from what the merchant runs"):
``1``, the discount step ``Δd / 0.1`` and its size, the package-size step
``Δ ln(price) / ln 1.5`` and its size, the duration step ``Δ ln(days) / ln 2``,
and 1 for a deal in the merchant's secondary category. The sizes (``|Δ|``)
let an error grow on both sides of the current deal (a response peaked
where the scorer did not put its peak) while extrapolating only linearly:
squares, tried first, made a far variant's correction explode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aidg.errors import DataError

TERM_FEATURES = ("intercept", "discount", "discount_abs", "size", "size_abs", "duration", "secondary")
K = len(TERM_FEATURES)
DISCOUNT_STEP, SIZE_STEP, DURATION_STEP = 0.1, float(np.log(1.5)), float(np.log(2.0))
CURRENT_FEATURES = np.eye(K)[0]  # the current deal's own term features: the intercept alone (every step is 0)
CURRENT_FEATURES.flags.writeable = False


def term_features(
    discount: np.ndarray,
    price: np.ndarray,
    duration: np.ndarray,
    secondary: np.ndarray,
    current: tuple[float, float, float],
) -> np.ndarray:
    """(n, K) term features of n deals of one merchant relative to its current deal ``(discount, price, days)``."""
    return term_features_rows(discount, price, duration, secondary, *current)


def term_features_rows(
    discount: np.ndarray,
    price: np.ndarray,
    duration: np.ndarray,
    secondary: np.ndarray,
    d0: np.ndarray | float,
    p0: np.ndarray | float,
    t0: np.ndarray | float,
) -> np.ndarray:
    """:func:`term_features` with each row's own current deal ``(d0, p0, t0)`` (arrays, or scalars for all)."""
    p0, t0 = np.asarray(p0, float), np.asarray(t0, float)
    if (p0 <= 0).any() or (t0 <= 0).any():
        raise DataError(f"the current deal needs a positive price and duration, got {p0.min()} and {t0.min()}")
    dd = (np.asarray(discount, float) - d0) / DISCOUNT_STEP
    ds = np.log(np.maximum(np.asarray(price, float), 1e-6) / p0) / SIZE_STEP
    dt = np.log(np.maximum(np.asarray(duration, float), 1.0) / t0) / DURATION_STEP
    return np.column_stack([np.ones_like(dd), dd, np.abs(dd), ds, np.abs(ds), dt, np.asarray(secondary, float)])


@dataclass
class _Stats:
    A: np.ndarray  # Σ ψψᵀ
    b: np.ndarray  # Σ ψ y

    @staticmethod
    def zero(k: int) -> _Stats:
        return _Stats(np.zeros((k, k)), np.zeros(k))


class PooledLinear:
    """One part's correction ``ψᵀθ`` with population → category → merchant pooling (module docstring).

    Args:
        noise: the standard deviation of one observation around its expectation.
        prior_sd: (population, category, merchant) prior standard deviations of θ's change at each level;
            each a scalar or one value per term feature.
    """

    def __init__(self, noise: float, prior_sd: tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]):
        if noise <= 0:
            raise DataError(f"the observation noise must be positive, got {noise}")
        self.noise2 = float(noise) ** 2
        self._base_prec = [np.diag(1.0 / np.broadcast_to(np.asarray(s, float), (K,)) ** 2) for s in prior_sd]
        self._top: tuple[np.ndarray, np.ndarray] | None = None
        self._cat: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        # each merchant's posterior as last computed (three K×K inversions a request): valid until any level's
        # statistics or prior change, which a replica does in batches (its posterior reload), not per request
        self._own: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.reset()

    def _changed(self) -> None:
        """A level's statistics or prior changed: every cached posterior is stale."""
        self._top = None
        self._cat.clear()
        self._own.clear()

    def widen(self, factor: float) -> None:
        """Every level's prior standard deviation × ``factor`` (the prior's scale fitted to the data at hand)."""
        self.factor = float(factor)
        self.prior_prec = [p / factor**2 for p in self._base_prec]
        self._changed()

    def reset(self) -> None:
        self.prior_prec = list(self._base_prec)
        self.factor = 1.0
        self.population_ = _Stats.zero(K)
        self.categories_: dict[str, _Stats] = {}
        self.merchants_: dict[str, _Stats] = {}
        self.category_of_: dict[str, str] = {}
        self.online_: dict[str, _Stats] = {}  # what set_online last brought per merchant
        self._changed()

    def add(self, merchant: str, category: str, psi: np.ndarray, y: float, first: bool) -> None:
        """One observation's change: ``y`` joins Σψy; ``first`` (its first value) adds ψψᵀ too."""
        self._accumulate(merchant, category, np.outer(psi, psi) if first else None, psi * y)

    def add_many(
        self, merchant: str, category: str, psi: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None
    ) -> None:
        """Many first observations of one merchant at once (its record: :meth:`add` for each, summed), each
        weighted (``weight``, default 1: an observation of weight w has noise variance ``noise² ÷ w``)."""
        psi = np.atleast_2d(np.asarray(psi, float))
        if len(psi):
            w = np.ones(len(psi)) if weight is None else np.asarray(weight, float)
            if w.shape != (len(psi),) or (w < 0).any() or not np.isfinite(w).all():
                raise DataError(f"one finite, non-negative weight per observation is needed, got shape {w.shape}")
            self._accumulate(merchant, category, psi.T @ (psi * w[:, None]), psi.T @ (np.asarray(y, float) * w))

    def _accumulate(self, merchant: str, category: str, A: np.ndarray | None, b: np.ndarray) -> None:
        """Add to the sums of every level the observation reaches (the caches of the posteriors are then stale)."""
        self.category_of_.setdefault(merchant, category)
        for s in (
            self.population_,
            self.categories_.setdefault(category, _Stats.zero(K)),
            self.merchants_.setdefault(merchant, _Stats.zero(K)),
        ):
            if A is not None:
                s.A += A
            s.b += b
        self._changed()

    def set_online(self, merchant: str, category: str, A: np.ndarray, b: np.ndarray) -> None:
        """The merchant's online statistics as the stream workers last saved them (``Σψψᵀ``, ``Σψy`` of its
        decisions' landed parts): replaces what the previous call brought, so reloading the same sums twice
        changes nothing."""
        old = self.online_.get(merchant) or _Stats.zero(K)
        A, b = np.asarray(A, float), np.asarray(b, float)
        self._accumulate(merchant, category, A - old.A, b - old.b)
        self.online_[merchant] = _Stats(A.copy(), b.copy())

    def forget(self, merchant: str) -> bool:
        """Take a merchant's observations out of every level (an erasure); False when it had none."""
        self.online_.pop(merchant, None)
        own = self.merchants_.pop(merchant, None)
        category = self.category_of_.pop(merchant, None)
        if own is None or category is None:
            return False
        for s in (self.population_, self.categories_[category]):
            s.A -= own.A
            s.b -= own.b
        self._changed()
        return True

    def _level(
        self, s: _Stats | None, prior_prec: np.ndarray, above: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior of this level's total θ given the level above's (mean, cov) as its prior centre."""
        m_above, c_above = above
        if s is None:  # no data here: the level above, widened by this level's prior
            return m_above, c_above + np.linalg.inv(prior_prec)
        prec = prior_prec + s.A / self.noise2
        cov = np.linalg.inv(prec)
        dev = cov @ ((s.b - s.A @ m_above) / self.noise2)
        g = cov @ prior_prec  # how much of the level above's uncertainty passes through
        return m_above + dev, cov + g @ c_above @ g.T

    def posterior(self, merchant: str, category: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean, covariance) of the merchant's total θ (read-only arrays, cached until the statistics change)."""
        own = self._own.get((merchant, category))
        if own is not None:
            return own
        top = self._top
        if top is None:
            top = self._top = self._level(self.population_, self.prior_prec[0], (np.zeros(K), np.zeros((K, K))))
        cat = self._cat.get(category)
        if cat is None:
            cat = self._cat[category] = self._level(self.categories_.get(category), self.prior_prec[1], top)
        mean, cov = self._level(self.merchants_.get(merchant), self.prior_prec[2], cat)
        mean, cov = mean.copy(), cov.copy()  # (a level without data hands back the level above's own arrays)
        mean.setflags(write=False)
        cov.setflags(write=False)
        self._own[(merchant, category)] = (mean, cov)
        return mean, cov
