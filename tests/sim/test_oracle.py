from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.config import RewardSettings
from aidg.errors import NotFoundError
from aidg.sim import Oracle, World


@pytest.fixture(scope="module")
def oracle(small_world: World) -> Oracle:
    return Oracle(small_world)


def test_habitual_deal_has_zero_uplift(oracle: Oracle, small_world: World) -> None:
    ids = small_world.tables["merchants"].merchant_id[:200]
    res = oracle.evaluate(ids, oracle.baseline_deal(ids), at="2026-02-01")
    assert np.allclose(res.expected_uplift, 0.0)
    assert res.approval_prob.between(0, 1).all() and res.conversion.between(0, 1).all()


def test_realized_gp30_is_unbiased_around_the_truth(oracle: Oracle, small_world: World) -> None:
    """The history's noisy outcomes average to the oracle's expectation for the same deals."""
    deals = small_world.tables["deals"].dropna(subset=["gp30"]).sample(4000, random_state=0)
    expected = np.array(
        [
            oracle.evaluate([r.merchant_id], pd.DataFrame([r._asdict()]), at=r.started_at).expected_gp30[0]
            for r in deals[["merchant_id", "discount_pct", "price", "duration_days", "category_id", "started_at"]]
            .head(400)
            .itertuples(index=False)
        ]
    )
    realized = deals.gp30.head(400).to_numpy()
    assert abs(realized.sum() / expected.sum() - 1) < 0.08
    assert np.corrcoef(np.log(realized + 1), np.log(expected + 1))[0, 1] > 0.8


def test_best_deal_beats_habit_and_current_system(oracle: Oracle, small_world: World) -> None:
    ids = small_world.tables["merchants"].merchant_id[:300]
    at = small_world.as_of
    best = oracle.evaluate(ids, oracle.best_deal(ids, at).drop(columns="expected_gp30"), at)
    cur = oracle.evaluate(ids, oracle.current_system_deal(ids, at), at)
    assert (best.expected_gp30 >= cur.expected_gp30 - 1e-9).mean() > 0.95
    assert (best.expected_uplift >= -1e-9).all()


def test_current_system_follows_last_deal_and_rep_habit(oracle: Oracle, small_world: World) -> None:
    deals = small_world.tables["deals"]
    at = small_world.as_of
    last = deals.sort_values("started_at").groupby("merchant_id").tail(1).set_index("merchant_id")
    reps = small_world.truth["reps"].set_index("rep_id")
    merchants = small_world.tables["merchants"].set_index("merchant_id")
    ids = last.index[:400]
    cur = oracle.current_system_deal(ids, at).set_index(ids)
    up = [i for i in ids if reps.habit[merchants.rep_id[i]] == "discount_up"]
    assert len(up) > 10
    nudged = cur.loc[up, "discount_pct"] - last.loc[up, "discount_pct"]
    assert (nudged > 0).mean() > 0.9  # an add-discount rep's system deal is deeper than the last one
    none_yet = oracle.current_system_deal(ids[:3], "2000-01-01")
    assert (none_yet.duration_days >= 15).all()  # no deal before then: the habitual 30-day deal, nudged


def test_reward_uses_settings_weights(small_world: World) -> None:
    ids = small_world.tables["merchants"].merchant_id[:50]
    o1 = Oracle(small_world)
    o2 = Oracle(small_world, reward=RewardSettings(w_gp30=1.0, w_approval=0, w_conversion=0, w_risk=0))
    terms = o1.best_deal(ids, small_world.as_of)
    r2 = o2.evaluate(ids, terms, small_world.as_of)
    assert np.allclose(r2.reward, r2.expected_uplift)
    assert not np.allclose(o1.evaluate(ids, terms, small_world.as_of).reward, r2.reward)


def test_unknown_ids_are_named(oracle: Oracle) -> None:
    with pytest.raises(NotFoundError, match="m-999999"):
        oracle.baseline_deal(["m-999999"])
    terms = pd.DataFrame({"discount_pct": [0.3], "price": [20.0], "duration_days": [30], "category_id": ["nope"]})
    with pytest.raises(NotFoundError, match="nope"):
        oracle.evaluate(["m-000001"], terms, "2026-01-01")
