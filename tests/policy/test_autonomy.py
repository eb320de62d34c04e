"""The autonomy dial (aidg.policy.autonomy): graduation, demotion and pinning, at their edges."""

from __future__ import annotations

import pytest

from aidg.config import AutonomySettings
from aidg.errors import DataError
from aidg.policy.autonomy import APPRENTICE, AUTOPILOT, COPILOT, AutonomyDial, wilson

S = AutonomySettings(min_decisions=30, min_window=8)


def _feed(dial: AutonomyDial, seg: str, n: int, level: str, agreed: bool, day0: float = 0.0, per_day: int = 4) -> float:
    day = day0
    for i in range(n):
        day = day0 + i / per_day
        dial.observe(seg, day, level, agreed)
    return day


def test_apprentice_graduates_only_after_enough_decisions_and_a_lower_bound_over_the_bar() -> None:
    dial = AutonomyDial(S)
    _feed(dial, "a", 29, APPRENTICE, True)
    assert dial.review(8.0) == [] and dial.level("a") == APPRENTICE  # 29 < min_decisions
    _feed(dial, "a", 1, APPRENTICE, True, day0=8.0)
    (c,) = dial.review(8.5)
    assert (c.from_level, c.to_level, c.segment) == (APPRENTICE, COPILOT, "a")
    assert c.evidence["decisions"] == 30 and c.evidence["agreement_lower"] >= S.graduate_agreement
    coin = AutonomyDial(S)  # agreement of a coin: never graduates, however long
    for i in range(400):
        coin.observe("b", i / 4, APPRENTICE, i % 2 == 0)
    assert coin.review(100.0) == [] and coin.level("b") == APPRENTICE
    assert wilson(0, 0, 1.0) == (0.0, 1.0)


def test_copilot_is_demoted_fast_when_acceptance_collapses_and_observations_of_a_past_level_are_ignored() -> None:
    dial = AutonomyDial(S)
    _feed(dial, "a", 40, APPRENTICE, True)
    dial.review(10.0)
    assert dial.level("a") == COPILOT
    _feed(dial, "a", 7, COPILOT, False, day0=10.0)
    assert dial.review(12.0) == []  # under min_window decisions: not yet
    dial.observe("a", 12.1, APPRENTICE, True)  # a late event of the apprentice era changes nothing
    _feed(dial, "a", 3, COPILOT, False, day0=12.2)
    (c,) = dial.review(13.0)
    assert (c.from_level, c.to_level) == (COPILOT, APPRENTICE) and c.evidence["acceptance_upper"] < S.demote_acceptance
    assert c.day - 10.0 <= S.window_days


def test_demotion_on_realised_gp30_and_the_window_forgets_old_harm() -> None:
    dial = AutonomyDial(S)
    _feed(dial, "a", 40, APPRENTICE, True)
    dial.review(10.0)
    for i in range(10):
        dial.observe("a", 10 + i / 4, COPILOT, True)
        dial.observe_uplift("a", 10 + i / 4, COPILOT, -0.5 + 0.01 * i)
    (c,) = dial.review(13.0)
    assert c.to_level == APPRENTICE and "GP30" in c.reason
    old = AutonomyDial(S)
    _feed(old, "b", 40, APPRENTICE, True)
    old.review(10.0)
    _feed(old, "b", 10, COPILOT, False, day0=10.0)
    _feed(old, "b", 40, COPILOT, True, day0=30.0)  # the bad days are out of the 14-day window by day 44
    assert old.review(44.0) == [] and old.level("b") == COPILOT


def test_autopilot_needs_kept_picks_and_a_positive_uplift_bound_and_only_for_low_override_merchants() -> None:
    dial = AutonomyDial(S)
    _feed(dial, "a", 40, APPRENTICE, True)
    dial.review(10.0)
    _feed(dial, "a", 60, COPILOT, True, day0=10.0)
    assert dial.review(26.0) == []  # no realised GP30 yet: the uplift bound is unknown
    for i in range(20):
        dial.observe_uplift("a", 26 + i / 10, COPILOT, 0.2 + 0.01 * (i % 3))
    (c,) = dial.review(28.0)
    assert c.to_level == AUTOPILOT and c.evidence["uplift_lower"] >= 0
    assert dial.level("a", override_rate=0.1) == AUTOPILOT
    assert dial.level("a", override_rate=0.6) == COPILOT  # a high-risk merchant stays in copilot


def test_a_pin_holds_whatever_the_record_says_until_unpinned_and_is_logged() -> None:
    dial = AutonomyDial(S)
    dial.pin("a", APPRENTICE, day=1.0)
    _feed(dial, "a", 100, APPRENTICE, True)
    assert dial.review(30.0) == [] and dial.level("a") == APPRENTICE
    dial.pin("a", None, day=30.0)
    assert dial.review(31.0)[0].to_level == COPILOT  # the record decides again (counts restart at the pin)
    pinned = AutonomyDial(S)
    pinned.pin("b", AUTOPILOT)
    _feed(pinned, "b", 30, AUTOPILOT, False)
    assert pinned.review(10.0) == [] and pinned.level("b") == AUTOPILOT  # pinned: no demotion either
    assert [c.reason for c in dial.changes][:2] == ["pinned by admin", "unpinned by admin"]
    with pytest.raises(DataError, match="unknown autonomy level 'boss'"):
        dial.pin("a", "boss")


def test_disabled_dial_keeps_every_segment_in_copilot() -> None:
    dial = AutonomyDial(AutonomySettings(enabled=False))
    _feed(dial, "a", 50, COPILOT, False)
    assert dial.review(20.0) == [] and dial.level("a") == COPILOT
