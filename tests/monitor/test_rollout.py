"""The rollout controller's states, arms and shares, the promotion gate and the triggers, on a real decision log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidg.config import Settings
from aidg.decisionlog.log import DecisionLog
from aidg.decisionlog.rollout import RolloutStore, ShadowRow
from aidg.errors import ConflictError, NotFoundError
from aidg.monitor.alerts import msprt_log_lr, trigger_alpha, triggers, wilson_lower
from aidg.monitor.gate import evaluate_gate
from aidg.monitor.kpis import Recorder, arm_stats, feedback_kpis, totals
from aidg.monitor.rollout import RolloutController, shares_of, unit_hash


@pytest.fixture()
def store(tmp_path: Path) -> RolloutStore:
    return RolloutStore(DecisionLog(f"sqlite:///{tmp_path / 'log.sqlite'}"))


def _controller(store: RolloutStore, **rollout: Any) -> RolloutController:
    return RolloutController(store, Settings(rollout=rollout), "1", versions=lambda: ["1", "2", "3"])


def test_a_rollout_walks_shadow_ab_ramp_full_and_promotes(store: RolloutStore) -> None:
    c = _controller(store)
    assert c.row.state == "idle" and c.view().arm_for("m1", "s") == "champion"
    c.start("2", "admin", "try v2")
    assert c.row.state == "shadow" and c.row.challenger == "2"
    assert c.view().shares == {"champion": 1.0, "challenger": 0.0, "explore": 0.0}
    c.advance("admin", "gate passed", gate=lambda: {"passed": True, "reason": "ok"})
    assert c.row.state == "ab" and c.view().shares == {"champion": 0.85, "challenger": 0.05, "explore": 0.1}
    seen = []
    for _ in range(20):
        if c.row.state == "full":
            break
        c.advance("admin", "next step")
        seen.append(round(1 - c.view().shares["champion"], 2))
    assert seen == [0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 1.0] and c.row.state == "full"
    c.promote("admin", "all good")
    assert (c.row.state, c.row.champion, c.row.challenger) == ("idle", "2", None)
    log = store.transitions()
    assert [t.action for t in log][:2] == ["promote", "advance"] and log[-1].action == "start"
    assert all(t.actor == "admin" and t.reason for t in log)


def test_illegal_moves_say_which_states_allow_them(store: RolloutStore) -> None:
    c = _controller(store)
    with pytest.raises(ConflictError, match="promote works in: ab, ramp, full"):
        c.promote("admin", "")
    with pytest.raises(NotFoundError, match="no model version '9'"):
        c.start("9", "admin", "")
    with pytest.raises(ConflictError, match="already the champion"):
        c.start("1", "admin", "")
    c.start("2", "admin", "")
    with pytest.raises(ConflictError, match="cannot start"):
        c.start("3", "admin", "")
    stale = c.row.revision
    c.pause("admin", "look first")
    with pytest.raises(ConflictError, match="changed meanwhile"):
        store.change(stale, {"state": "ab"}, None)  # a second writer with an old revision loses
    with pytest.raises(ConflictError, match="already paused"):
        c.pause("admin", "")
    c.resume("admin", "")
    c.rollback("admin", "changed my mind")
    assert c.row.state == "rolled_back" and store.transitions()[0].reason == "changed my mind"


def test_the_gate_refuses_with_its_shortfall_unless_forced(store: RolloutStore) -> None:
    c = _controller(store)
    c.start("2", "admin", "")
    refusal = {"passed": False, "reason": "challenger DR lower bound 0.1 is 0.05 under the champion's 0.15"}
    with pytest.raises(ConflictError, match=r"gate refused: .* 0\.05 under"):
        c.advance("admin", "", gate=lambda: refusal)
    assert c.row.state == "shadow" and store.transitions()[0].action == "gate_refused"
    c.advance("admin", "drill", force=True, gate=lambda: refusal)
    assert c.row.state == "ab" and "forced past the gate" in store.transitions()[0].reason


def test_arms_are_a_stable_hash_with_the_configured_shares(store: RolloutStore) -> None:
    c = _controller(store, ab_personalization_share=0.05, ab_exploration_share=0.10)
    c.start("2", "admin", "")
    c.advance("admin", "", force=True)
    ids = [f"m{i}" for i in range(20_000)]
    arms = [c.view().arm_for(m, "salt") for m in ids]
    assert arms == [c.view().arm_for(m, "salt") for m in ids]  # deterministic
    assert abs(arms.count("challenger") / len(ids) - 0.05) < 0.01
    assert abs(arms.count("explore") / len(ids) - 0.10) < 0.01
    on_champion = {m for m, a in zip(ids, arms, strict=True) if a == "champion"}
    c.advance("admin", "")  # ramp: the champion's merchants only shrink, none comes back to it
    now = {m for m in ids if c.view().arm_for(m, "salt") == "champion"}
    assert now < on_champion and abs(len(now) / len(ids) - 0.75) < 0.01
    assert 0 <= unit_hash("x", "s") < 1 and shares_of("shadow", 0, Settings())["champion"] == 1.0


def test_the_ramp_steps_by_itself_when_its_interval_passes(store: RolloutStore) -> None:
    s = Settings(rollout={"ramp_interval_hours": 1.0}, monitor={"time_scale": 36_000.0})  # an hour in 0.1 s
    c = RolloutController(store, s, "1")
    c.start("2", "admin", "")
    c.advance("admin", "", force=True)
    assert c.auto_advance() is None or c.row.state == "ramp"
    time.sleep(0.15)
    assert c.auto_advance() is not None and c.row.state == "ramp"
    c.pause("admin", "hold")
    time.sleep(0.15)
    assert c.auto_advance() is None and c.row.step == 1
    assert store.transitions()[1].actor == "monitor"


def _shadow(choice: int, rng: np.random.Generator, good: bool) -> ShadowRow:
    """Logged: a uniform random policy over 5 actions; the reward of action k is 0.2 k (+ noise)."""
    a = int(rng.integers(5))
    r = 0.2 * a + rng.normal(0, 0.05)
    parts = {"approval": 1.0, "override": 0.0, "conversion": 0.5, "gp30_uplift": r}
    return ShadowRow("d", choice, a, np.array([0.2 * k for k in range(5)]), 0.2, 0.0, dict(parts), parts)


def test_the_gate_passes_a_better_challenger_and_refuses_a_worse_one() -> None:
    rng = np.random.default_rng(0)
    s = Settings(rollout={"gate_min_decisions": 50})
    better = evaluate_gate([_shadow(4, rng, True) for _ in range(600)], s)
    worse = evaluate_gate([_shadow(0, rng, False) for _ in range(600)], s)
    assert better["passed"] and better["challenger_lower"] >= better["champion_lower"]
    assert not worse["passed"] and worse["shortfall"] > 0 and "under the champion's" in worse["reason"]
    few = evaluate_gate([_shadow(4, rng, True) for _ in range(10)], s)
    assert not few["passed"] and "needs 50" in few["reason"]


def _rows(pairs: list[tuple[str, float]]) -> list[tuple[str, int, float]]:
    """KPI rows as the stream worker adds them: each pair counts once."""
    return [(name, 1, value) for name, value in pairs]


def _arm_totals(errors: int, ok: int, proxy_mean: float, n: int, rng: np.random.Generator) -> dict[str, Any]:
    rec = Recorder()
    for _ in range(ok):
        rec.decision("champion", 0.004, 0.1, False, 0, {"approval": 0.6, "conversion": 0.3})
        rec.decision("challenger", 0.004, 0.1, False, 0, {"approval": 0.6, "conversion": 0.3})
    for _ in range(errors):
        rec.add("challenger/errors")
    rows = rec.drain()
    for arm, mean in (("champion", 0.3), ("challenger", proxy_mean)):
        for i in range(n):
            m = f"{arm}-m{i % 80}"  # 80 merchants per arm
            payload = {"chosen": {"discount_pct": 0.2, "price": 10.0, "type": "safe"}, "current_margin": 0.8,
                       "override_expected": 0.28}  # fmt: skip
            rows += _rows(feedback_kpis(arm, m, payload, "approval", 1.0))
            conv = float(np.clip(rng.normal(mean, 0.1), 0, 1))
            rows += _rows(feedback_kpis(arm, m, payload, "conversion", conv))
            rows += _rows(feedback_kpis(arm, m, payload, "override", float(rng.random() < 0.28)))
    t = totals({"bucket": 0, "name": n_, "count": c, "total": v} for n_, c, v in rows)
    return {"realtime": t, "1h": t, "2h": t}


def test_triggers_fire_on_a_faulty_or_worse_challenger_and_not_on_a_healthy_one() -> None:
    rng = np.random.default_rng(1)
    s = Settings(monitor={"min_samples": 100})
    healthy = triggers(s, _arm_totals(0, 400, 0.3, 400, rng))
    faulty = triggers(s, _arm_totals(80, 720, 0.3, 400, rng))  # 10 % failing, 800 requests: clear at α ≈ 6e-6
    worse = triggers(s, _arm_totals(0, 400, 0.15, 400, rng))
    assert healthy == []
    assert [a.rule for a in faulty] == ["error_rate"] and faulty[0].rollback
    assert [a.rule for a in worse] == ["gp30_proxy_drop"] and worse[0].value == pytest.approx(0.5, abs=0.05)
    assert triggers(s, _arm_totals(5, 20, 0.3, 20, rng)) == []  # too few to tell
    # one popular merchant dominating an arm is one sample, not hundreds: no trigger on its bad luck
    rows: list[tuple[str, int, float]] = []
    for arm, merchants, conv in (("champion", [f"c{i}" for i in range(80)], 0.3), ("challenger", ["whale"], 0.1)):
        for i in range(400):
            payload = {"chosen": {"discount_pct": 0.2, "type": "safe"}, "current_margin": 0.8}
            rows += _rows(feedback_kpis(arm, merchants[i % len(merchants)], payload, "approval", 1.0))
            rows += _rows(feedback_kpis(arm, merchants[i % len(merchants)], payload, "conversion", conv))
    t = totals({"bucket": 0, "name": n_, "count": c, "total": v} for n_, c, v in rows)
    assert triggers(s, {"realtime": t, "1h": t, "2h": t}) == []
    st = arm_stats(_arm_totals(0, 10, 0.3, 200, rng)["1h"], ["champion"])
    assert st["gp30_proxy"] == pytest.approx(0.3, abs=0.03) and 0.15 < st["override_rate"] < 0.45
    assert wilson_lower(10, 100, 3.0) < 0.1 < wilson_lower(100, 100, 3.0) + 1


def test_each_trigger_gets_its_share_of_the_rollouts_false_alarm_budget() -> None:
    s = Settings()
    # 1 % per rollout ÷ 3 triggers ÷ 528 one-hour windows (A/B 48 h, then 10 ramp steps of 48 h)
    assert trigger_alpha(s, 1.0) == pytest.approx(0.01 / 3 / 528)
    assert trigger_alpha(s, 2.0) == pytest.approx(0.01 / 3 / 264)


def test_the_sequential_test_keeps_its_false_alarm_rate_over_every_look() -> None:
    """At the threshold itself (H0's edge), looking after every 20 requests up to 4,000, the share of runs that
    ever fire stays under α; the old per-look z ≥ 3 rule (0.13 % a look) fires on over 10 times that."""
    rng = np.random.default_rng(7)
    alpha, limit, runs = 0.05, 0.05, 2000
    n = np.arange(20, 4001, 20)
    fails = rng.binomial(20, limit, size=(runs, n.size)).cumsum(axis=1)
    excess = fails / n - limit
    var = limit * (1 - limit) / n
    llr = np.vectorize(msprt_log_lr)(excess, np.broadcast_to(var, excess.shape), limit)
    fired = ((excess > 0) & (llr >= np.log(1 / alpha))).any(axis=1).mean()
    z_fired = (excess / np.sqrt(var) >= 3.0).any(axis=1).mean()
    assert fired <= alpha
    assert z_fired > 10 * 0.00135  # the old rule's per-look rate adds up over the looks
