"""Off-policy evaluation of a log whose late reward part has not landed everywhere yet (GP30 lands 30 days on).

A decision's reward is ``r = e + ℓ``: the parts that land within days (``e``: approval, the rep's edit,
conversion) and the late part (``ℓ``: the weighted GP30 uplift, known 30 days after the deal starts). In a live
log cut at a date, ``ℓ`` is missing for every recent decision and for slow-starting merchants' older ones.
*Complete-case* DR (:func:`aidg.policy.ope.dr` on the rows with ``ℓ``) values the policy on the merchants whose
deals landed early, not on the traffic it will serve.

:func:`censored_dr` keeps every row and completes the late part three ways, by how likely the row was to land:

- every row contributes the reward model's value under π_e, ``Σ_a π_e(a|x) (q̂_e + q̂_ℓ)(x, a)``, and the
  importance-weighted residual of its landed early parts, ``w (e − q̂_e(x, a))``;
- a row whose late part could have landed (its chance ``G = P(landed by the cut | row)`` ≥ ``min_prob``) adds
  its late residual weighted by the inverse probability of censoring, ``Δ/G · w (ℓ − q̂_ℓ(x, a))`` (augmented
  IPCW; Robins & Rotnitzky 1992; Bang & Tsiatis 2000 for censored costs);
- a row that could not have landed yet (``G`` < ``min_prob``) adds the mean of those IPCW residuals: the reward
  model's late-part bias under π_e, learnt where it can be measured and carried to where it cannot (valid when
  the model's error does not drift with the decision date, which the landed rows' own dates can check).

Unbiased when either the reward model or the censoring model is right on the rows that could land, and on
the others as long as the model's late-part bias is the same there. Without ``landed_prob`` the landed rows
are taken as a random sample of all (each landed row keeps its own residual, each other row gets their mean).
The interval is the percentile bootstrap of the whole estimator (rows resampled, the carried bias recomputed).
When the censoring model is estimated from the same log, pass it as a function of the log's rows: each bootstrap
sample then refits it. Held fixed at the log's estimate, the bootstrap values the estimator as if the censoring
model were known, and an estimated one makes inverse-probability weighting *less* variable than the known one
(Robins, Rotnitzky & Zhao 1994): the interval would be too wide.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aidg.errors import DataError
from aidg.policy.ope import N_BOOTSTRAP, Estimate, _check

LandedModel = Callable[[np.ndarray], np.ndarray]  # log rows → each one's landed chance, refitted on those rows


def _terms(
    landed: np.ndarray,
    w: np.ndarray,
    base: np.ndarray,
    res_early: np.ndarray,
    res_late: np.ndarray,
    prob: np.ndarray | None,
    min_prob: float,
) -> np.ndarray:
    """The per-row terms of the estimate (their mean is the value)."""
    if prob is None:
        carried = (w * res_late)[landed].mean() if landed.any() else 0.0
        late_term = np.where(landed, w * res_late, carried)
    else:
        can = prob >= min_prob
        ipcw = np.where(landed & can, w * res_late / np.maximum(prob, min_prob), 0.0)
        carried = ipcw[can].mean() if can.any() else 0.0
        late_term = np.where(can, ipcw, carried)
    return np.asarray(base + w * res_early + late_term)


def censored_dr(
    early: np.ndarray,
    late: np.ndarray,
    action: np.ndarray,
    pscore: np.ndarray,
    action_dist: np.ndarray,
    q_early: np.ndarray,
    q_late: np.ndarray,
    landed_prob: np.ndarray | LandedModel | None = None,
    min_prob: float = 0.1,
    alpha: float = 0.05,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Estimate:
    """Doubly robust value of π_e (``action_dist``) on a log whose late part is NaN where it has not landed.

    Args:
        early: (n,) the reward's early parts of each logged decision (all landed).
        late: (n,) its late part (the weighted GP30 term), NaN where it has not landed.
        action, pscore, action_dist: As :func:`aidg.policy.ope.dr`.
        q_early, q_late: (n, actions) the reward model's predictions of the two parts.
        landed_prob: (n,) each row's chance of having landed by the cut (the censoring model), or None; or the
            censoring model as a function of row indices (a bootstrap sample, repeats included) returning the
            chances of those rows under the model refitted on them.
        min_prob: Rows less likely to have landed than this get the carried bias instead of 1/G weights.
    """
    e, ell = np.asarray(early, float), np.asarray(late, float)
    if not np.isfinite(e).all() or np.isinf(ell).any():
        raise DataError("early parts must be finite and late parts finite or NaN (not landed)")
    e, a, pi, w = _check(e, action, pscore, action_dist)  # the log's own checks, as DR makes them; w = π_e / p
    qe, ql = np.asarray(q_early, float), np.asarray(q_late, float)
    n = len(e)
    if not (len(ell) == n and qe.shape == ql.shape == pi.shape):
        raise DataError("late and the two predictions must have one row per decision "
                        f"({n}) and the predictions action_dist's shape {pi.shape}")  # fmt: skip
    def valid(p: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if p.shape != shape or not ((p >= 0) & (p <= 1)).all():
            raise DataError("landed_prob must hold one probability in [0, 1] per decision")
        return p

    fixed = None if landed_prob is None or callable(landed_prob) else valid(np.asarray(landed_prob, float), (n,))

    def chances(i: np.ndarray) -> np.ndarray | None:  # a given array is checked once; a model at every refit
        if callable(landed_prob):
            return valid(np.asarray(landed_prob(i), float), i.shape)
        return None if fixed is None else fixed[i]

    if not 0 < min_prob <= 1:
        raise DataError(f"min_prob must be in (0, 1], got {min_prob}")
    landed = np.isfinite(ell)
    rows = np.arange(n)
    base = (pi * (qe + ql)).sum(1)
    res_e = e - qe[rows, a]
    res_l = np.where(landed, ell, 0.0) - ql[rows, a]
    value = float(_terms(landed, w, base, res_e, res_l, chances(rows), min_prob).mean())
    rng = np.random.default_rng(seed)
    boot = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        i = rng.integers(0, n, n)
        boot[b] = _terms(landed[i], w[i], base[i], res_e[i], res_l[i], chances(i), min_prob).mean()
    low, high = (float(x) for x in np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    return Estimate("censored_dr", value, low, high, alpha, n)


__all__ = ["LandedModel", "censored_dr"]
