"""The composite reward of memo §2.2, one definition for the oracle and the policy.

``reward = w1·gp30_uplift + w2·approval + w3·conversion − w4·penalty`` with
``penalty = override_frequency × severity × scale`` (memo: scale 0.1).

>>> from aidg.config import RewardSettings
>>> round(float(composite_reward(0.2, 1.0, 0.1, 0.5, 1.0, RewardSettings())), 4)
0.4125
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from aidg.config import RewardSettings
from aidg.errors import DataError

OUTCOME_KEYS = ("gp30_uplift", "mm_approval_rate", "conversion_proxy", "override_frequency", "severity_score")


def composite(
    gp30_uplift: Any, approval: Any, conversion: Any, override_frequency: Any, severity: Any, w: RewardSettings
) -> Any:
    """The reward formula on any array type that supports arithmetic (numpy arrays, torch tensors)."""
    return (
        w.w_gp30 * gp30_uplift
        + w.w_approval * approval
        + w.w_conversion * conversion
        - w.w_risk * override_frequency * severity * w.risk_penalty_scale
    )


def risk_penalty(override_frequency: ArrayLike, severity: ArrayLike, w: RewardSettings) -> np.ndarray:
    """memo §2.2 ``compute_risk_penalty``: override frequency × severity × 0.1."""
    return np.asarray(
        np.asarray(override_frequency, dtype=float) * np.asarray(severity, dtype=float) * w.risk_penalty_scale
    )


def composite_reward(
    gp30_uplift: ArrayLike,
    approval: ArrayLike,
    conversion: ArrayLike,
    override_frequency: ArrayLike,
    severity: ArrayLike,
    w: RewardSettings,
) -> np.ndarray:
    """memo §2.2 ``compute_reward`` on arrays (or scalars)."""
    up, ap, conv, freq, sev = (
        np.asarray(a, dtype=float) for a in (gp30_uplift, approval, conversion, override_frequency, severity)
    )
    return np.asarray(composite(up, ap, conv, freq, sev, w))


def compute_risk_penalty(outcome: Mapping[str, float], w: RewardSettings | None = None) -> float:
    """memo §2.2, by its keys: ``override_frequency`` × ``severity_score`` × 0.1.

    >>> compute_risk_penalty({"override_frequency": 0.5, "severity_score": 1.0})
    0.05
    """
    w = w or RewardSettings()
    return float(risk_penalty(outcome["override_frequency"], outcome["severity_score"], w))


def compute_reward(outcome: Mapping[str, float], w: RewardSettings | None = None) -> float:
    """memo §2.2, by its keys: ``gp30_uplift``, ``mm_approval_rate``, ``conversion_proxy``, ``override_frequency``,
    ``severity_score`` (weights from Settings).

    >>> round(compute_reward({"gp30_uplift": 0.2, "mm_approval_rate": 1.0, "conversion_proxy": 0.1,
    ...                       "override_frequency": 0.5, "severity_score": 1.0}), 6)
    0.4125
    """
    missing = [k for k in OUTCOME_KEYS if k not in outcome]
    if missing:
        raise DataError(f"a deal outcome needs {', '.join(missing)} to compute its reward")
    w = w or RewardSettings()
    return float(
        composite_reward(
            outcome["gp30_uplift"],
            outcome["mm_approval_rate"],
            outcome["conversion_proxy"],
            outcome["override_frequency"],
            outcome["severity_score"],
            w,
        )
    )
