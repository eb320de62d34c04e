"""Reps in the arena's loop (aidg.policy.arena_reps) on the tiny trained world: own reps per policy, the dial, a
drill's demotion, the week-by-week report."""

from __future__ import annotations

from typing import Any

import pytest

from aidg import workflows
from aidg.errors import DataError

RUN = {"rounds": 3000, "days": 90, "seed": 0, "seeds": 1, "policies": ("current", "risk_aware_ts")}


@pytest.fixture(scope="module")
def looped(trained: dict[str, Any]) -> dict[str, Any]:
    return workflows.simulate_policy(trained["settings"], trained["data"], **RUN)


def test_each_policy_meets_its_own_reps_and_the_report_runs_week_by_week(looped: dict[str, Any]) -> None:
    cur, ours = looped["policies"]["current"], looped["policies"]["risk_aware_ts"]
    assert looped["reps_in_loop"] and looped["rep_trust"] == "on"
    assert cur["mean_rep_trust_end"] == 0.0 and cur["share_legacy"] == 1.0  # the legacy system earns no trust
    assert ours["mean_rep_trust_end"] != 0.0 and ours["share_legacy"] == 0.0
    assert ours["share_apprentice"] + ours["share_copilot"] + ours["share_autopilot"] == pytest.approx(1.0)
    assert ours["segments_graduated_share"] > 0 and ours["autonomy_changes"]
    c = ours["autonomy_changes"][0]
    assert set(c) == {"day", "segment", "from_level", "to_level", "reason", "evidence"} and c["evidence"]
    weeks = ours["timeline"]
    assert len(weeks) == 13 and sum(w["decisions"] for w in weeks) == RUN["rounds"]
    assert {"override_rate", "gp30_uplift_vs_current", "safety_violation_rate", "share_apprentice",
            "share_copilot", "share_autopilot"} <= set(weeks[0])  # fmt: skip
    assert weeks[0]["share_apprentice"] == 1.0  # every segment starts as an apprentice
    assert 0 <= ours["override_floor"] <= ours["override_rate"] <= 1


@pytest.mark.heavy  # 8,000 decisions (~20 s): make faults / make test-all; the dial's demotion rules have unit tests
def test_a_drilled_segment_is_demoted_within_two_weeks(trained: dict[str, Any], looped: dict[str, Any]) -> None:
    first = looped["policies"]["risk_aware_ts"]["autonomy_changes"][0]  # the first segment to graduate
    drill = f"{first['segment']}@{first['day'] + 5}"
    # the small world's traffic per segment (≈ 50,000 requests over ~36 segments); the tiny world has 22 segments
    dense = RUN | {"policies": ("risk_aware_ts",), "rounds": 8000}
    res = workflows.simulate_policy(trained["settings"], trained["data"], **dense, drill=drill)
    d = res["policies"]["risk_aware_ts"]["drill"]
    assert d["level_at_drill"] == "copilot" and d["demoted_after_days"] is not None
    assert d["demoted_after_days"] <= 14, d


def test_a_drill_of_an_unknown_segment_says_which_exist(trained: dict[str, Any]) -> None:
    with pytest.raises(DataError, match="no arena merchant is in segment 'nowhere'; segments: "):
        workflows.simulate_policy(trained["settings"], trained["data"], **RUN, drill="nowhere@3")
    with pytest.raises(DataError, match="SEGMENT@DAY"):
        workflows.simulate_policy(trained["settings"], trained["data"], **RUN, drill="spa|1@soon")
