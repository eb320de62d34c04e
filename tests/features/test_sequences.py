"""Sequence features are point-in-time correct: nothing from the cutoff on leaks in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.features.context import FeatureContext
from aidg.features.panel import to_seconds
from aidg.features.sequences import deal_sequences, event_sequences, override_sequences
from aidg.sim import World


@pytest.fixture(scope="module")
def ctx(tiny_world: World) -> FeatureContext:
    return FeatureContext.from_tables(tiny_world.tables, tiny_world.as_of)


def _queries(ctx: FeatureContext, at: str) -> tuple[np.ndarray, np.ndarray]:
    n = len(ctx.merchant_ids)
    return np.arange(n), np.full(n, int(to_seconds(np.array([pd.Timestamp(at)]))[0]))


def test_deal_sequences_hold_only_earlier_deals(ctx: FeatureContext) -> None:
    q_m, q_t = _queries(ctx, "2025-06-01")
    b = deal_sequences(ctx, q_m, q_t)
    assert b.x.shape[1:] == (50, 29)
    before = ctx.deals[ctx.deals.started_at < pd.Timestamp("2025-06-01")].groupby("m").size()
    counts = b.mask.sum(1)
    assert (counts == np.minimum(before.reindex(range(len(q_m))).fillna(0).to_numpy(), 50)).all()
    assert (b.age_days[b.mask] > 0).all()


def test_future_outcomes_do_not_change_features(tiny_world: World) -> None:
    cut = pd.Timestamp("2025-06-01")
    tables = {k: v.copy() for k, v in tiny_world.tables.items()}
    a = FeatureContext.from_tables(tables, tiny_world.as_of)
    late = tables["deals"].gp30_known_at >= cut
    tables["deals"].loc[late, "gp30_uplift"] = 99.0  # outcomes not known at the cutoff
    tables["deals"].loc[tables["deals"].started_at >= cut, "discount_pct"] = 0.99  # deals not started yet
    b = FeatureContext.from_tables(tables, tiny_world.as_of)
    q_m, q_t = _queries(a, "2025-06-01")
    for build in (deal_sequences, override_sequences, event_sequences):
        np.testing.assert_array_equal(build(a, q_m, q_t).x, build(b, q_m, q_t).x)


def test_override_steps_are_64_wide(ctx: FeatureContext) -> None:
    q_m, q_t = _queries(ctx, "2026-01-01")
    b = override_sequences(ctx, q_m, q_t)
    assert b.x.shape[2] == 64 and b.mask.any()
    assert np.isfinite(b.x).all()
