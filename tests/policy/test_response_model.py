"""The response model: a predictor's outputs corrected per merchant by its record (aidg.policy.response_model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.config import PosteriorSettings, Settings
from aidg.errors import DataError
from aidg.policy.merchant_posterior import record_weights
from aidg.policy.response_model import corrected, current_terms

MERCHANTS = pd.DataFrame(
    {
        "merchant_id": ["a", "b"],
        "category_id": ["food", "food"],
        "baseline_discount_pct": [0.3, 0.3],
        "baseline_price": [40.0, 40.0],
        "baseline_duration_days": [30, 30],
    }
)


def _variants() -> pd.DataFrame:
    d = np.array([0.2, 0.3, 0.4, 0.5])
    rows = [
        {"merchant_id": m, "discount_pct": x, "price": 40.0, "duration_days": 30, "focus": "primary",
         "score": 1.0 - abs(x - 0.3), "approval": 0.6, "conversion": 0.05, "uplift": 0.1}
        for m in ("a", "b")
        for x in d
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _record(merchant: str, gp30_error: float, n: int = 12) -> pd.DataFrame:
    """n past deals of ``merchant`` around its current deal whose GP30 the predictor under-predicted."""
    rng = np.random.default_rng(0)
    d = rng.uniform(0.2, 0.5, n)
    pred = np.full(n, 0.1)
    return pd.DataFrame(
        {"merchant_id": merchant, "discount_pct": d, "price": 40.0, "duration_days": 30, "focus": "primary",
         "part": "gp30_uplift", "observed": pred + gp30_error, "predicted": pred}
    )  # fmt: skip


def test_without_a_record_the_predictions_stand_with_the_priors_spread() -> None:
    s = Settings()
    v = _variants()
    out = corrected(v, current_terms(MERCHANTS, ["a", "b"]), None, s)
    np.testing.assert_allclose(out.score, v.score)
    np.testing.assert_allclose(out.uplift, v.uplift)
    assert (out.uplift_sd > s.posterior.uplift_sd).all()  # the prior's spread plus what terms cannot explain


def test_a_record_that_shows_the_predictor_low_moves_that_merchant_only_and_narrows_its_interval() -> None:
    s = Settings()
    v = _variants()
    cur = current_terms(MERCHANTS, ["a", "b"])
    plain = corrected(v, cur, None, s)
    out = corrected(v, cur, _record("a", 0.3), s)
    a, b = out.merchant_id == "a", out.merchant_id == "b"
    assert (out.uplift[a] > v.uplift[a] + 0.1).all()  # learnt: GP30 is higher than predicted for a
    assert (out.score[a] > v.score[a]).all()  # and so is the reward
    assert (out.uplift_sd[a] < plain.uplift_sd[a]).all()  # and it is surer of it
    # b has no record: only the population and category levels moved, by the pooled share of a's evidence
    moved_a = np.abs(out.uplift[a] - v.uplift[a]).to_numpy()
    moved_b = np.abs(out.uplift[b] - v.uplift[b]).to_numpy()
    assert (moved_b < moved_a / 5).all()


def test_an_unknown_merchant_is_refused_with_its_id() -> None:
    with pytest.raises(DataError, match="'zz'"):
        current_terms(MERCHANTS, ["a", "zz"])


def test_old_approvals_move_the_merchant_less_than_the_same_approvals_today_and_gp30s_do_not_age() -> None:
    s = Settings(posterior=PosteriorSettings(approval_half_life_days=60.0))
    v = _variants()
    cur = current_terms(MERCHANTS, ["a", "b"])
    a = (v.merchant_id == "a").to_numpy()
    approvals = _record("a", 0.0).assign(part="approval", observed=1.0, predicted=0.6)  # approved more than predicted
    moved = {}
    for age in (0.0, 120.0, 1200.0):
        out = corrected(v, cur, approvals.assign(age_days=age), s)
        moved[age] = float(np.mean(out.approval[a] - v.approval[a]))
    assert moved[0.0] > moved[120.0] > moved[1200.0] > 0
    assert moved[1200.0] < 0.2 * moved[0.0]  # twenty half-lives old: next to nothing
    # GP30s answer to the merchant's traits: their age does not matter, as without ages at all
    gp30 = _record("a", 0.3)
    old = corrected(v, cur, gp30.assign(age_days=1200.0), s)
    np.testing.assert_allclose(old.uplift, corrected(v, cur, gp30, s).uplift)
    # without a half-life old approvals count in full
    plain = Settings(posterior=PosteriorSettings(approval_half_life_days=None))
    aged = corrected(v, cur, approvals.assign(age_days=1200.0), plain)
    np.testing.assert_allclose(aged.approval, corrected(v, cur, approvals, plain).approval)


def test_record_weights_halve_every_half_life_and_ignore_future_dates() -> None:
    np.testing.assert_allclose(record_weights(np.array([0.0, 30.0, 60.0, -5.0]), 30.0), [1.0, 0.5, 0.25, 1.0])
    np.testing.assert_allclose(record_weights(np.array([0.0, 999.0]), None), [1.0, 1.0])
