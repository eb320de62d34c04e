"""The composite reward of memo §2.2, one definition for the oracle and the policy.

``reward = w1·gp30_uplift + w2·approval + w3·conversion − w4·penalty`` with
``penalty = override_frequency × severity × scale`` (memo: scale 0.1).

>>> from aidg.config import RewardSettings
>>> round(float(composite_reward(0.2, 1.0, 0.1, 0.5, 1.0, RewardSettings())), 4)
0.4125
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from aidg.config import RewardSettings


def risk_penalty(override_frequency: ArrayLike, severity: ArrayLike, w: RewardSettings) -> np.ndarray:
    """memo §2.2 ``compute_risk_penalty``: override frequency × severity × 0.1."""
    freq, sev = np.asarray(override_frequency, dtype=float), np.asarray(severity, dtype=float)
    return np.asarray(freq * sev * w.risk_penalty_scale)


def composite_reward(
    gp30_uplift: ArrayLike,
    approval: ArrayLike,
    conversion: ArrayLike,
    override_frequency: ArrayLike,
    severity: ArrayLike,
    w: RewardSettings,
) -> np.ndarray:
    """memo §2.2 ``compute_reward`` on arrays (or scalars)."""
    return np.asarray(
        w.w_gp30 * np.asarray(gp30_uplift, dtype=float)
        + w.w_approval * np.asarray(approval, dtype=float)
        + w.w_conversion * np.asarray(conversion, dtype=float)
        - w.w_risk * risk_penalty(override_frequency, severity, w)
    )
