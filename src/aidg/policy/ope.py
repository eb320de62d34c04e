"""Off-policy evaluation on a decision log: IPS, SNIPS and doubly robust, with bootstrap confidence intervals.

A log row *i* holds the context's chosen action ``a_i``, the logging policy's
propensity ``p_i = π_b(a_i | x_i)`` and the observed reward ``r_i``. For an
evaluation policy π_e given as ``action_dist[i, a] = π_e(a | x_i)``:

- IPS   ``V = mean_i( w_i r_i )`` with ``w_i = π_e(a_i | x_i) / p_i``
- SNIPS ``V = Σ w_i r_i / Σ w_i``
- DR    ``V = mean_i( Σ_a π_e(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i)) )``
  with a reward model ``q̂`` (e.g. the scorer's predicted reward)

The conventions are Open Bandit Pipeline's (``obp.ope``; the tests check that
the estimates agree to 1e-6 on the same data): the interval is the
percentile bootstrap of the per-row terms' mean (SNIPS: of the self-normalised
terms ``w_i r_i / mean(w)``), ``n_bootstrap`` resamples, level ``1 − alpha``.

>>> import numpy as np
>>> r, a, p = np.array([1.0, 0.0, 1.0]), np.array([0, 1, 0]), np.array([0.5, 0.5, 0.5])
>>> pi = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
>>> round(ips(r, a, p, pi).value, 3), round(snips(r, a, p, pi).value, 3)
(1.333, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aidg.errors import DataError

N_BOOTSTRAP = 10_000


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    low: float
    high: float
    alpha: float
    n: int

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "alpha": self.alpha,
            "n": self.n,
        }


def _check(
    reward: np.ndarray, action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked (reward, action, action_dist, importance weight π_e(a_i|x_i) / p_i) of a log."""
    r, a, p, pi = (np.asarray(x) for x in (reward, action, pscore, action_dist))
    n = len(r)
    if n == 0:
        raise DataError("the decision log is empty: nothing to evaluate")
    if not (len(a) == len(p) == n and pi.ndim == 2 and pi.shape[0] == n):
        raise DataError(
            f"reward ({n}), action ({len(a)}), pscore ({len(p)}) and action_dist rows ({pi.shape[0]}) must align"
        )
    if not np.isfinite(r).all():
        raise DataError("rewards must be finite (a reward part that never arrived is not a reward: leave the row out)")
    if not ((p > 0) & (p <= 1)).all():
        raise DataError("propensities must be in (0, 1]: a logged action with propensity 0 cannot be re-weighted")
    a = a.astype(np.int64)
    if (a < 0).any() or (a >= pi.shape[1]).any():
        raise DataError(f"actions must index action_dist's {pi.shape[1]} columns")
    if not np.allclose(pi.sum(1), 1.0, atol=1e-6) or (pi < 0).any():
        raise DataError("each row of action_dist must be a probability distribution over actions")
    pi = pi.astype(float)
    return r.astype(float), a, pi, pi[np.arange(n), a] / p.astype(float)


def bootstrap_interval(terms: np.ndarray, alpha: float, n_bootstrap: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``terms`` (obp's ``estimate_confidence_interval_by_bootstrap``)."""
    rng = np.random.default_rng(seed)
    means = np.array([rng.choice(terms, size=len(terms), replace=True).mean() for _ in range(n_bootstrap)])
    return float(np.percentile(means, 100 * alpha / 2)), float(np.percentile(means, 100 * (1 - alpha / 2)))


def _estimate(name: str, terms: np.ndarray, value: float, alpha: float, n_bootstrap: int, seed: int) -> Estimate:
    low, high = bootstrap_interval(terms, alpha, n_bootstrap, seed)
    return Estimate(name, float(value), low, high, alpha, len(terms))


def ips(
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    alpha: float = 0.05,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Estimate:
    """Inverse propensity scoring."""
    r, _, _, w = _check(reward, action, pscore, action_dist)
    terms = w * r
    return _estimate("ips", terms, terms.mean(), alpha, n_bootstrap, seed)


def snips(
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    alpha: float = 0.05,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Estimate:
    """Self-normalised inverse propensity scoring."""
    r, _, _, w = _check(reward, action, pscore, action_dist)
    terms = w * r / w.mean()
    return _estimate("snips", terms, terms.mean(), alpha, n_bootstrap, seed)


def dr(
    reward: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    estimated_rewards: np.ndarray,
    alpha: float = 0.05,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Estimate:
    """Doubly robust: the reward model's value under π_e, corrected by the weighted residuals of the logged rows."""
    r, a, pi, w = _check(reward, action, pscore, action_dist)
    q = np.asarray(estimated_rewards, dtype=float)
    if q.shape != pi.shape:
        raise DataError(f"estimated_rewards must have action_dist's shape {pi.shape}, got {q.shape}")
    terms = (pi * q).sum(1) + w * (r - q[np.arange(len(r)), a])
    return _estimate("dr", terms, terms.mean(), alpha, n_bootstrap, seed)
