"""Safety guard and exploration manager (memo §2.3).

:class:`SafetyGuard` checks every variant and says why it refuses one:

- expected GP30 below ``baseline_threshold`` (0.8) × the merchant's baseline GP30
  (expected GP30 = baseline × (1 + predicted uplift): the uplift is relative to
  the merchant's habitual deal, whose expected GP30 the baseline is);
- the merchant's override rate above ``max_override_rate`` (0.3): with
  ``override_clause="no_explore"`` (the default) such a merchant is never
  offered ``explore`` variants (risk throttling); ``"safe_only"`` offers only
  ``safe`` ones (close to the deal that worked); ``"refuse"`` (the memo's
  letter) refuses every variant and the current system's deal is the
  fallback. In the simulated marketplace half the merchants are above 0.3
  (their reps edit a lot whatever is proposed), and refusing them all costs
  most of the GP30 gain: see docs/bandit.md;
- a high-risk category (gambling, tobacco, adult by default).

:class:`ExplorationManager` sets the share of traffic that may take ``explore``
variants: 0.05 at the start, × 1.5 when the success rate of explored variants
beats 0.8, × 0.5 otherwise, kept in [0.01, 0.3].

>>> from aidg.config import ExplorationSettings
>>> m = ExplorationManager(ExplorationSettings())
>>> [round(m.update(s), 5) for s in (0.9, 0.9, 0.5)]
[0.075, 0.1125, 0.05625]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aidg.config import ExplorationSettings, GuardSettings
from aidg.errors import DataError


@dataclass(frozen=True)
class GuardDecision:
    """Per variant: allowed or not, and every reason it was refused ("" when allowed)."""

    allowed: np.ndarray  # (n,) bool
    reasons: list[str]

    def refused(self) -> dict[int, str]:
        return {i: r for i, r in enumerate(self.reasons) if r}


class SafetyGuard:
    """The memo's guard clauses, vectorised over a merchant's variants."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        self.settings = settings or GuardSettings()

    def check(
        self, variants: pd.DataFrame, baseline_gp30: float, override_rate: float, predicted_uplift: np.ndarray
    ) -> GuardDecision:
        """Check ``variants`` (a candidates frame with ``category_id`` and, for the safe-only clause, ``type``)."""
        types = variants["type"].to_numpy(dtype=object) if "type" in variants else None
        return self.check_arrays(
            variants.category_id.astype(str).to_numpy(dtype=object),
            types,
            baseline_gp30,
            override_rate,
            predicted_uplift,
        )

    def check_arrays(
        self,
        categories: np.ndarray,
        types: np.ndarray | None,
        baseline_gp30: float,
        override_rate: float,
        predicted_uplift: np.ndarray,
        shortfall: np.ndarray | None = None,
        delta: float = 0.05,
    ) -> GuardDecision:
        """:meth:`check` on arrays (the per-request path): category id and type (safe/hybrid/explore) per variant.

        ``shortfall``: each variant's posterior P(GP30 < threshold × baseline); given, the GP30 clause refuses
        where it exceeds ``delta`` instead of comparing the point prediction."""
        s = self.settings
        up = np.asarray(predicted_uplift, dtype=float)
        n = len(categories)
        if len(up) != n:
            raise DataError(f"{len(up)} predicted uplifts for {n} variants: give one per variant")
        if not np.isfinite(up).all() or not np.isfinite(baseline_gp30):
            raise DataError("predicted uplift and baseline GP30 must be finite")
        floor = s.baseline_threshold * baseline_gp30
        if shortfall is not None:
            short = np.asarray(shortfall, float)
            low = short > delta
        else:
            expected = baseline_gp30 * (1.0 + up)
            low = expected < floor
        clause = ""
        over = np.zeros(n, bool)
        if override_rate > s.max_override_rate:
            clause = f"merchant override rate {override_rate:.2f} above {s.max_override_rate:g}"
            if s.override_clause == "refuse" or types is None:
                over[:] = True
            elif s.override_clause == "safe_only":
                over = np.asarray(types != "safe", bool)
                clause += ": only safe variants"
            else:
                over = np.asarray(types == "explore", bool)
                clause += ": no explore variants"
        banned = np.isin(np.asarray(categories, dtype=object), list(s.high_risk_categories))
        text = [""] * n
        for i in np.flatnonzero(low | over | banned):  # reasons only where a variant is refused
            r = []
            if low[i]:
                r.append(
                    f"P(GP30 < {s.baseline_threshold:g} × baseline) = {short[i]:.2f} above {delta:g}"
                    if shortfall is not None
                    else f"expected GP30 {expected[i]:.2f} below {s.baseline_threshold:g} × baseline ({floor:.2f})"
                )
            if over[i]:
                r.append(clause)
            if banned[i]:
                r.append(f"high-risk category {categories[i]!r}")
            text[i] = "; ".join(r)
        return GuardDecision(~(low | over | banned), text)


@dataclass
class ExplorationManager:
    """How much traffic may take explore variants, adapted to how well exploration goes."""

    settings: ExplorationSettings = field(default_factory=ExplorationSettings)
    rate: float = -1.0

    def __post_init__(self) -> None:
        if self.rate < 0:
            self.rate = self.settings.initial_rate

    def update(self, success_rate: float) -> float:
        """memo §2.3 ``update_exploration_rate``: ramp up on success, down otherwise; returns the new rate."""
        if not 0 <= success_rate <= 1:
            raise DataError(f"success rate is a share in [0, 1], got {success_rate}")
        s = self.settings
        if success_rate > s.success_threshold:
            self.rate = min(s.max_rate, self.rate * s.ramp_up_factor)
        else:
            self.rate = max(s.min_rate, self.rate * s.ramp_down_factor)
        return self.rate

    def allows_exploration(self, u: float) -> bool:
        """True for the share ``rate`` of requests (``u`` uniform in [0, 1), e.g. a hash of the request)."""
        return u < self.rate
