"""Safety guard refusals with their reasons, and the exploration rate's ramp."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.config import ExplorationSettings, GuardSettings
from aidg.errors import DataError
from aidg.policy.guard import ExplorationManager, SafetyGuard


def _variants(*cats: str) -> pd.DataFrame:
    return pd.DataFrame({"category_id": list(cats), "discount_pct": np.linspace(0.1, 0.5, len(cats))})


def test_each_clause_refuses_with_its_reason() -> None:
    g = SafetyGuard()
    d = g.check(_variants("restaurant", "gambling", "spa"), 100.0, 0.1, np.array([0.1, 0.3, -0.25]))
    assert d.allowed.tolist() == [True, False, False]
    assert "high-risk category 'gambling'" in d.reasons[1]
    assert "expected GP30 75.00 below 0.8 × baseline (80.00)" in d.reasons[2]
    assert d.refused() == {1: d.reasons[1], 2: d.reasons[2]}


def test_a_merchant_whose_reps_override_a_lot_gets_nothing_new() -> None:
    d = SafetyGuard().check(_variants("restaurant", "spa"), 100.0, 0.45, np.array([0.5, 0.2]))
    assert not d.allowed.any()
    assert all("override rate 0.45 above 0.3" in r for r in d.reasons)


def test_reasons_accumulate_and_settings_apply() -> None:
    g = SafetyGuard(GuardSettings(baseline_threshold=1.0, high_risk_categories=("spa",)))
    d = g.check(_variants("spa"), 50.0, 0.5, np.array([-0.1]))
    assert d.reasons[0].count(";") == 2  # three reasons, all said


def test_guard_refuses_misaligned_or_broken_input() -> None:
    with pytest.raises(DataError, match="one per variant"):
        SafetyGuard().check(_variants("spa", "bar"), 10.0, 0.0, np.array([0.1]))
    with pytest.raises(DataError, match="finite"):
        SafetyGuard().check(_variants("spa"), 10.0, 0.0, np.array([np.nan]))


def test_exploration_rate_ramps_within_bounds() -> None:
    m = ExplorationManager(ExplorationSettings())
    assert m.rate == 0.05
    for _ in range(20):
        m.update(0.95)
    assert m.rate == 0.3
    for _ in range(20):
        m.update(0.2)
    assert m.rate == 0.01
    m.rate = 0.1
    assert m.update(0.8) == pytest.approx(0.05)  # exactly 0.8 is not "above" the threshold: ramp down
    assert m.allows_exploration(0.005) and not m.allows_exploration(0.5)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        m.update(1.5)
