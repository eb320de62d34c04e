"""Reps in the arena's loop: each policy meets its own reps (their trust moves with its record), an autonomy dial
per segment decides what the reps are shown, and AIDG learns from their overrides.

One :class:`RepLoop` per policy run (same seeds for every policy):

- the level of the request's segment (:class:`~aidg.policy.autonomy.AutonomyDial`) decides what is shown: the
  current system's deal in apprentice (the policy's ``observe_current`` learns from it; nothing is explored), the
  policy's pick in copilot (with its explanation) and autopilot. The ``current`` policy is the legacy system: its
  deals are never AIDG's, so its reps' trust never moves and no dial applies;
- the rep edits with the world's chance at the rep's trust now (:mod:`aidg.sim.reps`), setting the discount they
  believe fits the merchant (its preferred discount, ± 0.03): the override event carries the corrected terms;
- 0.1 day on the rep's action reaches the dial (agreement) and the edit learner
  (:class:`~aidg.policy.edit_response.EditResponse`); 3 days on the early sales, and 30 days on the GP30, reach
  the rep's trust (only for AIDG's shown, approved suggestions) and the dial (realised uplift);
- a drill makes one segment's suggestions bad on purpose from a day on (:meth:`RepLoop.drill_pick`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aidg.config import Settings
from aidg.policy.autonomy import APPRENTICE, AUTOPILOT, COPILOT, AutonomyDial
from aidg.policy.edit_response import EditResponse
from aidg.sim.reps import RepTrust, TrustConfig, shift_edit_probability

if TYPE_CHECKING:
    from aidg.policy.arena import ArenaData

LEGACY = "legacy"  # the current system, no AIDG: what the `current` policy plays
LEVEL_CODES = {LEGACY: 0, APPRENTICE: 1, COPILOT: 2, AUTOPILOT: 3}
CORRECTION_SD = 0.03


@dataclass(frozen=True)
class Drill:
    """Make ``segment``'s suggestions bad on purpose from ``day`` on."""

    segment: str
    day: float

    @staticmethod
    def parse(text: str) -> Drill:
        from aidg.errors import DataError

        seg, _, day = text.rpartition("@")
        try:
            return Drill(seg, float(day))
        except ValueError:
            raise DataError(f"a drill is SEGMENT@DAY (e.g. spa|1@30), got {text!r}") from None


class RepLoop:
    """The reps, the dial and the edit learner of one policy's run (module docstring)."""

    def __init__(self, data: ArenaData, settings: Settings, aidg: bool, rounds: int, seed: int,
                 drill: Drill | None = None) -> None:  # fmt: skip
        self.data = data
        self.cfg: TrustConfig = data.trust or TrustConfig.off()
        self.rep = np.asarray(data.rep)
        self.segment = list(data.segment or ())
        self.dpref = np.asarray(data.dpref, dtype=np.float64)
        self.trust = RepTrust(self.cfg, max(int(data.n_reps), 1))
        self.dial = AutonomyDial(settings.autonomy)
        self.edits = EditResponse()
        self.aidg, self.drill = aidg, drill
        self.explain = settings.autonomy.explain_in_copilot
        self.edit_tradeoff = settings.bandit.edit_tradeoff
        self.rng = np.random.default_rng([seed, 77])
        self.level = np.zeros(rounds, np.int8)
        self.p_edit = np.zeros(rounds)
        self.p_edit_legacy = np.zeros(rounds)
        self.floor = np.zeros(rounds)
        self.predicted_edit = np.full(rounds, np.nan)
        self.trust_curve: list[float] = []
        self._index = {id(a): j for j, a in enumerate(data.arms)}

    def _rep_trust(self, mm: int) -> float:
        r = self.rep[mm]
        return float(self.trust.trust[r]) if r >= 0 else 0.0

    def level_for(self, mm: int) -> str:
        if not self.aidg:
            return LEGACY
        arms = self.data.arms[mm]
        return self.dial.level(self.segment[mm], arms.override_rate)

    def drilled(self, mm: int, t: float) -> bool:
        return self.drill is not None and self.segment[mm] == self.drill.segment and t >= self.drill.day

    def drill_pick(self, mm: int) -> int:
        """A suggestion bad on purpose, as a broken model would make: the variant whose discount sits farthest from
        the merchant's current deal's (ties: the one the scorer likes least). Reps and merchants can see it is
        wrong at once; harm that only the GP30 shows waits 30 days for the dial's uplift bound."""
        arms = self.data.arms[mm]
        far = np.abs(self._discounts(mm) - arms.current_discount)
        return int(np.lexsort((arms.cands.score, -far))[0])

    def analyzer(self, mm: int, slot: int) -> float:
        arms = self.data.arms[mm]
        n = len(arms.cands.score)
        return float(arms.current["p_override"] if slot == n else arms.predicted["p_override"].iloc[slot])

    def discount(self, mm: int, slot: int) -> float:
        arms = self.data.arms[mm]
        n = len(arms.cands.score)
        return float(arms.current_discount if slot == n else self._discounts(mm)[slot])

    def _discounts(self, mm: int) -> np.ndarray:
        arms = self.data.arms[mm]
        if "discount_pct" not in arms.variants:
            return np.full(len(arms.variants), arms.current_discount)
        return np.asarray(arms.variants["discount_pct"].to_numpy(float))

    def edit_risk_of(self, arms: object) -> np.ndarray:
        """:meth:`edit_risk` of a merchant's arms (the policy's callback)."""
        return self.edit_risk(self._index[id(arms)])

    def edit_risk(self, mm: int) -> np.ndarray:
        """The learnt chance the merchant's rep edits each variant and the current deal (the trade-off's input)."""
        arms = self.data.arms[mm]
        d = np.append(self._discounts(mm), arms.current_discount)
        an = np.append(arms.predicted["p_override"].to_numpy(float), float(arms.current["p_override"]))
        return self.edits.edit_probability(self._rep_id(mm), self.data.merchants[mm], d, an, arms.current_discount)

    def _rep_id(self, mm: int) -> str:
        return f"r{self.rep[mm]}"

    def decide(self, j: int, mm: int, week: int, slot: int, lvl: str) -> float:
        """Record decision ``j``'s level and the rep's edit chance now; returns that chance."""
        tr = self.data.truth
        base = float(tr["override_prob"][week, mm, slot])
        tau = self._rep_trust(mm)
        p = float(shift_edit_probability(base, tau, self.cfg)) if self.cfg.enabled else base
        n = tr["override_prob"].shape[2]
        n_play = len(self.data.arms[mm].cands.score) + 1
        floor = float(tr["override_prob"][week, mm, : min(n, n_play)].min())
        self.level[j] = LEVEL_CODES[lvl]
        self.p_edit[j], self.p_edit_legacy[j] = p, base
        self.floor[j] = float(shift_edit_probability(floor, tau, self.cfg)) if self.cfg.enabled else floor
        if lvl == APPRENTICE:
            self.predicted_edit[j] = float(self.edit_risk(mm)[slot])
        if lvl in (COPILOT, AUTOPILOT) and self.rep[mm] >= 0:
            self.trust.shown(int(self.rep[mm]), explained=self.explain and lvl == COPILOT)
        return p

    def corrected(self, mm: int) -> float:
        return float(np.clip(self.dpref[mm] + CORRECTION_SD * self.rng.standard_normal(), 0.0, 0.9))

    def rep_action(self, j: int, mm: int, slot: int, day: float, approved: bool, edited: bool,
                   corrected: float) -> None:  # fmt: skip
        """0.1 day on: the dial's agreement and the edit learner."""
        lvl = _name(self.level[j])
        if lvl == LEGACY:
            return
        arms = self.data.arms[mm]
        cur = float(arms.current_discount)
        self.edits.observe(self._rep_id(mm), self.data.merchants[mm], self.discount(mm, slot), self.analyzer(mm, slot),
                           cur, edited, corrected if edited else None)  # fmt: skip
        if lvl == APPRENTICE:
            agreed = (self.predicted_edit[j] >= 0.5) == edited
        else:
            agreed = approved and not edited
        self.dial.observe(self.segment[mm], day, lvl, bool(agreed))

    def sales(self, j: int, mm: int, ratio: float) -> None:
        """3 days on: early sales ÷ AIDG's prediction, seen by the rep (AIDG's shown suggestions only)."""
        if _name(self.level[j]) in (COPILOT, AUTOPILOT) and self.rep[mm] >= 0:
            self.trust.outcome(int(self.rep[mm]), sales_ratio=ratio)

    def gp30(self, j: int, mm: int, day: float, uplift: float, predicted: float) -> None:
        """30 days on: the realised GP30 uplift against the prediction (trust) and for the dial."""
        lvl = _name(self.level[j])
        if lvl not in (COPILOT, AUTOPILOT):
            return
        if self.rep[mm] >= 0:
            self.trust.outcome(int(self.rep[mm]), uplift_miss=predicted - uplift, uplift=uplift)
        self.dial.observe_uplift(self.segment[mm], day, lvl, uplift)

    def end_of_day(self, day: float) -> None:
        if self.aidg:
            self.dial.review(day)
        self.trust_curve.append(float(self.trust.trust.mean()))


def _name(code: int) -> str:
    return {v: k for k, v in LEVEL_CODES.items()}[int(code)]


def timeline(data: ArenaData, run: dict[str, np.ndarray], days_per_bucket: int = 7) -> list[dict[str, float]]:
    """Week by week: override rate, GP30 uplift vs current, safety violations and the share at each level."""
    tr = data.truth
    n = data.n_variants
    w, m, a = run["week"], run["merchant"], run["chosen"]
    bucket = (run["time"] // days_per_bucket).astype(int)
    out = []
    for b in np.unique(bucket):
        k = bucket == b
        gp, cur = tr["expected_gp30"][w[k], m[k], a[k]], tr["expected_gp30"][w[k], m[k], n]
        row = {"day": float(b * days_per_bucket), "decisions": int(k.sum()),
               "override_rate": float(run["override_prob"][k].mean()),
               "gp30_uplift_vs_current": float(gp.sum() / cur.sum() - 1),
               "safety_violation_rate": float(np.mean(tr["expected_uplift"][w[k], m[k], a[k]] < -0.2))}  # fmt: skip
        for name, code in LEVEL_CODES.items():
            row[f"share_{name}"] = float(np.mean(run["level"][k] == code))
        out.append(row)
    return out
