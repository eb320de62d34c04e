"""Calibrating the scorer's approval probability on training merchants kept out of fitting.

Two steps, both fitted on the calibration merchants' logged proposals (their
approvals, never the simulator's truth):

1. Platt scaling ``σ(a·logit + b)`` (two parameters, strictly monotone);
2. with ``method="isotonic"`` (the default), an isotonic regression of the
   approvals on the Platt probability (scikit-learn's ``IsotonicRegression``),
   stored as the shifts of ``APPROVAL_KNOTS`` knots at quantiles of the
   calibration probabilities (:func:`aidg.models.deal_scorer.monotone_map`).
   Platt's sigmoid cannot bend: on the development world it over-predicted the
   lowest approvals (0.15 predicted where 0.09 was true); the isotonic step
   follows the calibration data's own curve. A tiny ramp keeps the map strictly
   increasing, so it never ties two variants the logit told apart.

``expected_calibration_error`` is the figure both are judged by.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression
from torch import Tensor, nn

from aidg.models.deal_scorer import APPROVAL_KNOTS, ContextualDealScorer, identity_knots

Method = Literal["platt", "isotonic"]
MIN_ISOTONIC_EXAMPLES = 500  # fewer calibration examples: Platt alone (isotonic overfits small samples)
RAMP = 1e-4  # the knots' added slope: strictly increasing


def platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the log loss of ``σ(a·logit + b)`` against ``y``; (1, 0) when the fit is degenerate."""
    z, t = torch.from_numpy(logit).float(), torch.from_numpy(y).float()
    ab = torch.tensor([1.0, 0.0], requires_grad=True)
    opt = torch.optim.LBFGS([ab], lr=0.5, max_iter=100)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(ab[0] * z + ab[1], t)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = (float(v) for v in ab.detach())
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0:
        return 1.0, 0.0
    return a, b


def isotonic_knots(p: np.ndarray, y: np.ndarray, k: int = APPROVAL_KNOTS) -> Tensor:
    """(2, k) knots (x on [0, 1], shift y − x) of the isotonic regression of ``y`` on ``p``: the inner knots at
    quantiles of ``p``, the ends at 0 and 1."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    x = np.quantile(p, np.linspace(0.0, 1.0, k))
    x[0], x[-1] = 0.0, 1.0
    x = np.maximum.accumulate(x + np.arange(k) * 1e-9)  # distinct, increasing
    fitted = np.clip(iso.predict(x) + RAMP * np.arange(k) / (k - 1), 0.0, 1.0)
    fitted = np.maximum.accumulate(fitted)
    return torch.tensor(np.stack([x, fitted - x]), dtype=torch.float32)


def calibrate_approval(
    scorer: ContextualDealScorer, logit: np.ndarray, approved: np.ndarray, method: Method = "isotonic"
) -> dict[str, float]:
    """Set the scorer's approval calibration from the calibration merchants' logits and approvals; returns the
    Platt parameters and the knots' largest shift."""
    if method not in ("platt", "isotonic"):
        raise ValueError(f"approval calibration must be 'platt' or 'isotonic', got {method!r}")
    a, b = platt(logit, approved) if len(logit) else (1.0, 0.0)
    scorer.approval_calibration.copy_(torch.tensor([a, b]))
    knots = identity_knots()
    if method == "isotonic" and len(logit) >= MIN_ISOTONIC_EXAMPLES:
        p = 1.0 / (1.0 + np.exp(-(a * logit.astype(np.float64) + b)))
        knots = isotonic_knots(p, approved.astype(np.float64))
    scorer.approval_knots.copy_(knots)
    return {"a": a, "b": b, "max_shift": float(knots[1].abs().max())}


def expected_calibration_error(prob: np.ndarray, target: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins: Σ_b (n_b / n) · |mean prob_b − mean target_b| (targets may be probabilities).

    >>> round(expected_calibration_error(np.array([0.2, 0.2, 0.8, 0.8]), np.array([0, 0.4, 1, 0.6])), 3)
    0.0
    """
    p, t = np.asarray(prob, float), np.asarray(target, float)
    if len(p) == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(p[sel].mean() - t[sel].mean())
    return float(total)
