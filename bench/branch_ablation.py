"""Does each profile branch earn its place on the decision metric? (issue 19, point 5)

For a trained version (``AIDG_HOME``) and its simulated world, runs the arena's
``risk_aware_ts`` (with the current deals as the reference) once with the full
profile, once with each branch switched off for every merchant, and once with
the whole profile switched off (the scorer then sees only the hand-built
merchant statistics, the override intent and the deal memory), and reports
each run's ``oracle_gain_share`` and its change against the full profile.

A branch is switched off as the fusion does for a merchant missing that
modality (zeros, the way branch dropout trained it), without retraining: the
figure says how much the trained system relies on the branch, which is what a
decision to make it optional needs first. Runs are paired (same requests).

    AIDG_HOME=H python bench/branch_ablation.py --data W [--rounds 50000] [--days 90] [--seeds 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aidg.cli.common import progress_bar
from aidg.config import load_settings
from aidg.models.merchant_profile_encoder import DEFAULT_BRANCHES
from aidg.workflows import simulate_policy

KEYS = ("oracle_gain_share", "gp30_uplift_vs_current", "safety_violation_rate", "cumulative_reward")


def ablate(data: Path, rounds: int, days: int, seeds: int, branches: list[str]) -> dict[str, Any]:
    settings = load_settings()
    variants: list[tuple[str, tuple[str, ...]]] = [("none", ())]
    variants += [(b, (b,)) for b in branches]
    variants += [("whole_profile", tuple(branches))]
    rows: dict[str, dict[str, float]] = {}
    for i, (name, without) in enumerate(variants):
        with progress_bar(f"[{i + 1}/{len(variants)}] without {name}") as say:
            rep = simulate_policy(settings, data, rounds=rounds, days=days, seeds=seeds,
                                  policies=("current", "risk_aware_ts"), without=without, progress=say)  # fmt: skip
        ours = rep["policies"]["risk_aware_ts"]
        rows[name] = {k: float(ours[k]) for k in KEYS}
    full = rows["none"]["oracle_gain_share"]
    for r in rows.values():
        r["share_change"] = r["oracle_gain_share"] - full
    return {"rounds": rounds, "days": days, "seeds": seeds, "without": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--branches", default=",".join(DEFAULT_BRANCHES), help="comma-separated branches to ablate")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out = ablate(a.data, a.rounds, a.days, a.seeds, [b for b in a.branches.split(",") if b])
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'without':<16}{'share':>8}{'change':>9}{'GP30 vs current':>17}{'violations':>12}")
    for name, r in out["without"].items():
        print(f"{name:<16}{r['oracle_gain_share']:>8.3f}{r['share_change']:>+9.3f}"
              f"{r['gp30_uplift_vs_current']:>+17.1%}{r['safety_violation_rate']:>12.2%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
