"""risk_aware_ts end to end on one request: guard, exploration share, bandit, gate, and the current deal as fallback."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.config import BanditSettings, GuardSettings, PosteriorSettings
from aidg.errors import DataError
from aidg.policy.bandit import RiskAwareThompsonSampling
from aidg.policy.pooled import CURRENT_FEATURES, term_features
from aidg.policy.risk_aware import CURRENT, Candidates, MerchantTerms, RiskAwarePolicy

D, N = 6, 8


def _request(risk: float = 0.02, uplift: float = 0.3, category: str = "food") -> tuple[Candidates, np.ndarray]:
    variants = pd.DataFrame({"type": ["safe"] * 4 + ["hybrid"] * 2 + ["explore"] * 2, "category_id": category})
    phi = np.eye(N, D)
    pred = pd.DataFrame(
        {
            "score": np.linspace(1.0, 0.8, N),
            "risk": np.full(N, risk),
            "uplift": np.full(N, uplift),
            "approval": 0.8,
            "conversion": 0.1,
        }
    )
    return Candidates.from_frames(variants, pred), phi


CURRENT_PRED = {"score": 0.5, "risk": 0.02, "uplift": 0.0, "approval": 0.8, "conversion": 0.1}


def _warm(policy: RiskAwarePolicy, rounds: int = 60) -> None:
    """Bank some budget: the gate plays the current deal until it can afford a variant."""
    c_, phi = _request()
    for t in range(rounds):
        policy.select_action(f"w{t}", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)


def test_a_confident_policy_plays_variants_and_logs_propensity_and_type() -> None:
    p = RiskAwarePolicy(D, seed=0)
    _warm(p)
    c_, phi = _request()
    d = p.select_action("x", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
    assert d.index != CURRENT and d.why_current == ""
    assert 0 < d.pscore <= 1 and d.action_type in ("safe", "hybrid")  # explore only on the exploration share
    assert d.lcb < c_.score[d.index]


def test_the_gate_plays_the_current_deal_before_any_budget_is_banked() -> None:
    p = RiskAwarePolicy(D, seed=0)
    c_, phi = _request()
    d = p.select_action("first", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
    assert d.index == CURRENT and "conservative gate" in d.why_current and d.action_type == "current"


def test_all_variants_refused_by_the_guard_gives_the_current_deal_with_every_reason() -> None:
    p = RiskAwarePolicy(D, guard=GuardSettings(high_risk_categories=("gambling",)), seed=0)
    _warm(p)
    c_, phi = _request(category="gambling")
    d = p.select_action("g", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
    assert d.index == CURRENT and d.why_current == "the safety guard refused every variant"
    assert sorted(d.refused) == list(range(N)) and all("high-risk category" in r for r in d.refused.values())
    c_, phi = _request(uplift=-0.5)  # expected GP30 under 0.8 × baseline everywhere
    d = p.select_action("u", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
    assert d.index == CURRENT and all("below 0.8 × baseline" in r for r in d.refused.values())
    d = p.select_action("o", *_request(), 0.45, np.ones(D) / D, CURRENT_PRED)  # a merchant who overrides too often
    assert d.action_type != "explore" and sorted(d.refused) == [6, 7]  # throttled: no explore variants
    assert all("override rate 0.45 above 0.3: no explore variants" in r for r in d.refused.values())
    safe = RiskAwarePolicy(D, guard=GuardSettings(override_clause="safe_only"), seed=0)
    _warm(safe)
    d = safe.select_action("o", *_request(), 0.45, np.ones(D) / D, CURRENT_PRED)
    assert d.action_type == "safe" and sorted(d.refused) == list(range(4, N))
    strict = RiskAwarePolicy(D, guard=GuardSettings(override_clause="refuse"), seed=0)  # the memo's letter
    _warm(strict)
    d = strict.select_action("o", *_request(), 0.45, np.ones(D) / D, CURRENT_PRED)
    assert d.index == CURRENT and all("override rate 0.45 above 0.3" in r for r in d.refused.values())


def test_no_eligible_variant_gives_the_current_deal() -> None:
    p = RiskAwarePolicy(D, bandit=BanditSettings(risk_threshold=0.1), seed=0)
    _warm(p)
    c_, phi = _request(risk=0.4)
    d = p.select_action("r", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
    # the threshold bounds the risk added to the current deal's (0.02): 0.4 is far above
    assert d.index == CURRENT and d.why_current == "no allowed variant is under the risk limit" and not d.refused
    absolute = RiskAwarePolicy(D, bandit=BanditSettings(relative_risk=False), seed=0)
    _warm(absolute)
    d = absolute.select_action("a", *_request(risk=0.11), 0.1, np.ones(D) / D, {**CURRENT_PRED, "risk": 0.3})
    assert d.index == CURRENT and d.why_current == "no allowed variant is under the risk limit"
    d = p.select_action("b", *_request(risk=0.11), 0.1, np.ones(D) / D, {**CURRENT_PRED, "risk": 0.3})
    assert d.index != CURRENT  # relative: 0.11 adds nothing to a current deal at 0.3


def test_rewards_twice_or_out_of_order_count_once_and_a_missing_gp30_keeps_the_prediction() -> None:
    a, b = RiskAwarePolicy(D, seed=0), RiskAwarePolicy(D, seed=0)
    for p in (a, b):
        _warm(p)
        c_, phi = _request()
        p.select_action("x", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
    parts = [("approval", 1.0), ("override", 0.0), ("conversion", 0.12), ("gp30_uplift", 0.4)]
    for part, value in parts:
        assert a.update_params("x", part, value)
    for part, value in [*reversed(parts[:3]), parts[2], parts[0]]:
        b.update_params("x", part, value)
    assert not b.update_params("x", "conversion", 0.12)  # a repeat changes nothing
    b.update_params("x", "gp30_uplift", 0.4)
    assert not b.update_params("x", "gp30_uplift", 0.4)  # the GP30 again, after the decision closed
    np.testing.assert_allclose(a.bandit.b_, b.bandit.b_)
    np.testing.assert_allclose(a.bandit.A_, b.bandit.A_)
    assert a.gate.budget == pytest.approx(b.gate.budget)
    # a GP30 that never arrives: closing settles the gate with the scorer's prediction standing in
    c = RiskAwarePolicy(D, seed=0)
    _warm(c)
    c_, phi = _request()
    d = c.select_action("y", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
    c.update_params("y", "approval", 0.0)
    before = c.gate.budget
    c.close("y")
    assert c.gate.budget != before and "y" not in c.bandit.pending_
    assert d.index != CURRENT


def test_decision_ids_are_unique() -> None:
    p = RiskAwarePolicy(D, seed=0)
    p.select_action("same", *_request(), 0.1, np.ones(D) / D, CURRENT_PRED)
    with pytest.raises(DataError, match="already made"):
        p.select_action("same", *_request(), 0.1, np.ones(D) / D, CURRENT_PRED)


def test_the_batched_stream_update_equals_one_by_one() -> None:
    rng = np.random.default_rng(0)
    one, many = RiskAwareThompsonSampling(D), RiskAwareThompsonSampling(D)
    events = []
    for t in range(50):
        phi = rng.normal(size=D)
        pred = {"approval": 0.5, "conversion": 0.1, "gp30_uplift": 0.1, "override": 0.0}
        for m in (one, many):
            m.register(f"d{t}", phi, 0.5, pred)
        events += [(f"d{t}", "approval", float(rng.random() < 0.5)), (f"d{t}", "gp30_uplift", float(rng.normal()))]
    events += events[:10]  # repeats
    rng.shuffle(events)
    for e in events:
        one.update_params(*e)
    assert many.update_batch(events) == 100
    np.testing.assert_allclose(one.A_, many.A_)
    np.testing.assert_allclose(one.b_, many.b_)


def test_the_exploration_share_follows_how_explored_variants_fare() -> None:
    from aidg.config import ExplorationSettings

    def run(approved: float) -> float:
        p = RiskAwarePolicy(D, exploration=ExplorationSettings(initial_rate=0.9, max_rate=1.0), seed=0)
        _warm(p, 200)
        c, phi = _request()
        explore = Candidates(np.full(N, "explore", dtype=object), *list(vars(c).values())[1:])
        n = 0
        for t in range(200):
            d = p.select_action(f"e{t}", explore, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
            if d.action_type == "explore":
                n += 1
                p.update_params(f"e{t}", "approval", approved)
                p.update_params(f"e{t}", "override", 0.0)
        assert n >= 20  # explore variants were played on the exploration share only
        return p.end_of_period()

    assert run(1.0) == pytest.approx(1.0)  # all approved unedited: × 1.5, capped at the maximum
    assert run(0.0) == pytest.approx(0.45)  # none: halved


def test_a_bad_event_rejects_its_batch_and_changes_nothing() -> None:
    ts = RiskAwareThompsonSampling(D)
    ts.register("d", np.ones(D), 0.5, {"approval": 0.5, "conversion": 0.1, "gp30_uplift": 0.1, "override": 0.0})
    with pytest.raises(DataError, match="must be finite"):
        ts.update_batch([("d", "approval", 1.0), ("d", "gp30_uplift", float("nan"))])
    assert not ts.pending_["d"].parts and not ts.b_.any()
    assert ts.update_batch([("d", "approval", 1.0)]) == 1


def test_every_policy_speaks_one_vocabulary_and_reset_forgets_what_it_learnt() -> None:
    """OBP's select_action / update_params (+ close), learned state with a trailing underscore, reset()."""
    from aidg.config import Settings
    from aidg.policy.baselines import POLICIES, make_policy

    for name in POLICIES:
        pol = make_policy(name, D, Settings(), seed=0)
        for verb in ("select_action", "update_params", "close", "reset"):
            assert callable(getattr(pol, verb)), (name, verb)
    p = RiskAwarePolicy(D, seed=0)
    _warm(p)
    c_, phi = _request()
    d = p.select_action("learnt", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED)
    p.update_params("learnt", "approval", 1.0)
    assert p.bandit.b_.any() and p.open_ and p.gate.budget != 0
    p.reset()
    fresh = RiskAwarePolicy(D, seed=0)
    assert not p.bandit.b_.any() and not p.bandit.pending_ and not p.open_ and not p.closed_
    np.testing.assert_array_equal(p.bandit.A_, fresh.bandit.A_)
    assert p.gate.budget == fresh.gate.budget
    assert d.index != CURRENT


def _terms(merchant: str = "m1") -> MerchantTerms:
    """Variants 0-3 at the current deal's terms, 4-7 at 30 points more discount and twice the package."""
    d = np.r_[np.full(4, 0.2), np.full(4, 0.5)]
    price = np.r_[np.full(4, 30.0), np.full(4, 60.0)]
    psi = term_features(d, price, np.full(N, 14), np.zeros(N), (0.2, 30.0, 14.0))
    return MerchantTerms(merchant, "food", psi, CURRENT_FEATURES)


def test_the_posterior_guards_gp30_far_from_the_current_deal_and_says_so() -> None:
    p = RiskAwarePolicy(D, seed=0, posterior=PosteriorSettings(delta=0.05))
    c_, phi = _request(uplift=0.0)  # every variant predicted as good as the baseline: 20 % above the 0.8 floor
    d = p.select_action("far", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED, terms=_terms())
    far = [r for i, r in d.refused.items() if i >= 4]
    assert len(far) == 4 and all("P(GP30 < 0.8 × baseline)" in r for r in far)  # uncertain far away: refused
    assert not any(i < 4 for i in d.refused)  # at the current deal's terms the scorer is trusted that far


def test_a_merchant_s_own_outcomes_move_its_choice_and_not_another_s() -> None:
    settings = PosteriorSettings(caution=0.0, sample_scale=0.01, delta=0.9)  # the posterior mean chooses
    p = RiskAwarePolicy(D, seed=0, posterior=settings)
    p.gate.budget = 1e6  # a banked budget: the gate lets variants through
    c_, phi = _request()
    c_ = Candidates(**{**c_.__dict__, "score": np.r_[np.full(4, 0.9), np.full(4, 1.0)]})  # the scorer likes far
    pick = p.select_action("m1-0", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED, terms=_terms("m1")).index
    assert pick >= 4
    for t in range(60):  # merchant m1's far deals flop: rejected, GP30 −60 %
        did = f"m1-{t + 1}"
        pick = p.select_action(did, c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED, terms=_terms("m1")).index
        if pick < 4:
            break
        for part, v in (("approval", 0.0), ("gp30_uplift", -0.6)):
            p.update_params(did, part, v)
    assert pick < 4  # m1 has learnt the scorer is wrong about it far from its current deal
    other = p.select_action("m2-0", c_, phi, 0.1, np.ones(D) / D, CURRENT_PRED, terms=_terms("m2"))
    assert other.index >= 4  # m2 borrows only a little of m1's record (pooled through its category)
    p.reset()
    assert not p.merchants.parts["gp30_uplift"].merchants_
