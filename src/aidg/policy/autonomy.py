"""Autonomy per segment, earned and lost from the record: apprentice → copilot → autopilot (memo §1, §2.3).

- **apprentice**: the current system's deal is shown; AIDG predicts what the
  rep will do with it (edit or keep) and learns from the outcome, exploring
  nothing. Its *agreement* is the share of those predictions that came true.
- **copilot**: AIDG's pick is shown with its explanation; the rep approves or
  edits it. Its agreement is the share of picks approved and kept unedited.
- **autopilot**: AIDG's pick is applied unless the rep steps in, for merchants
  whose override rate is at most ``autopilot_max_override``; other merchants
  of the segment stay in copilot.

Graduation (slow, one-sided ``z_graduate`` Wilson bounds over everything the
level has seen): apprentice → copilot when the lower bound of the prediction
agreement reaches ``graduate_agreement`` after ``min_decisions``; copilot →
autopilot when the lower bound of the approved-and-unedited share reaches
``autopilot_agreement`` and the lower bound of the realised GP30 uplift is ≥ 0.

Demotion (fast, ``z_demote`` bounds over the last ``window_days``): one level
down when the upper bound of the approved-and-unedited share falls under
``demote_acceptance``, or the upper bound of the realised GP30 uplift under
``demote_uplift``. An admin's pin holds a segment at a level until unpinned.
Every change is an :class:`AutonomyChange` with its evidence.

>>> from aidg.config import AutonomySettings
>>> dial = AutonomyDial(AutonomySettings(min_decisions=5))
>>> for i in range(40):
...     dial.observe("spa|1", day=i / 4, level=APPRENTICE, agreed=True)
>>> dial.review(day=10.0)[0].to_level, dial.level("spa|1")
('copilot', 'copilot')
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aidg.config import AutonomySettings
from aidg.errors import DataError

APPRENTICE, COPILOT, AUTOPILOT = "apprentice", "copilot", "autopilot"
LEVELS = (APPRENTICE, COPILOT, AUTOPILOT)


def segments_of(tables: Mapping[str, pd.DataFrame], merchant_ids: list[str], by: str) -> list[str]:
    """Each merchant's segment: ``category|tier`` (city tier 1–3 by population terciles of the cities, 1 the
    largest; ``?`` without a cities table with populations) or ``team|<rep's city>`` (reps work in city teams)."""
    merchants = tables["merchants"].set_index("merchant_id").loc[merchant_ids]
    if by == "rep_team":
        reps = tables.get("reps")
        if reps is None or "rep_id" not in merchants:
            return ["team|none"] * len(merchant_ids)
        city = merchants.rep_id.map(reps.set_index("rep_id").city_id).fillna("none")
        return [f"team|{c}" for c in city]
    cities = tables.get("cities")
    if cities is None or "population" not in cities or "city_id" not in merchants:
        return [f"{c}|?" for c in merchants.category_id]
    cities = cities.set_index("city_id")
    rank = cities.population.rank(ascending=False, method="first") / len(cities)
    tier = pd.cut(rank, [0, 1 / 3, 2 / 3, 1.0], labels=[1, 2, 3], include_lowest=True).astype(int)
    return [f"{c}|{t}" for c, t in zip(merchants.category_id, merchants.city_id.map(tier).fillna(0).astype(int),
                                        strict=True)]  # fmt: skip


def wilson(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (one-sided bounds at ``z``); (0, 1) when there is nothing."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def mean_bounds(values: list[float], z: float) -> tuple[float, float]:
    """Normal bounds of a mean ((−inf, inf) under two values)."""
    if len(values) < 2:
        return float("-inf"), float("inf")
    a = np.asarray(values, float)
    half = z * a.std(ddof=1) / np.sqrt(len(a))
    return float(a.mean() - half), float(a.mean() + half)


@dataclass(frozen=True)
class AutonomyChange:
    """One level change: when, which segment, from → to, why, and the evidence it rested on."""

    day: float
    segment: str
    from_level: str
    to_level: str
    reason: str
    evidence: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Record:
    level: str = APPRENTICE
    since: float = 0.0
    pinned: bool = False
    agreed: int = 0  # at the current level, since it was reached
    seen: int = 0
    uplifts: list[float] = field(default_factory=list)
    recent: deque[tuple[float, bool]] = field(default_factory=deque)  # (day, approved and unedited) at this level
    recent_uplift: deque[tuple[float, float]] = field(default_factory=deque)


class AutonomyDial:
    """Each segment's level (module docstring). ``observe`` what reps did, ``review`` once a day."""

    def __init__(self, settings: AutonomySettings | None = None, start: str = APPRENTICE) -> None:
        self.settings = settings or AutonomySettings()
        if start not in LEVELS:
            raise DataError(f"unknown autonomy level {start!r}; choose one of {', '.join(LEVELS)}")
        self.start = start if self.settings.enabled else COPILOT
        self.segments: dict[str, _Record] = {}
        self.changes: list[AutonomyChange] = []

    def _rec(self, segment: str) -> _Record:
        rec = self.segments.get(segment)
        if rec is None:
            rec = self.segments[segment] = _Record(level=self.start)
        return rec

    def restore(self, segment: str, level: str, pinned: bool, since: float) -> None:
        """Start ``segment`` at a level reached at day ``since`` (from a stored log; its record is fed after)."""
        self.segments[segment] = _Record(level=level, since=since, pinned=pinned)

    def level(self, segment: str, override_rate: float | None = None) -> str:
        """The segment's level for a merchant (autopilot only when its override rate is low enough)."""
        lvl = self._rec(segment).level
        if lvl == AUTOPILOT and override_rate is not None and override_rate > self.settings.autopilot_max_override:
            return COPILOT
        return lvl

    def observe(self, segment: str, day: float, level: str, agreed: bool) -> None:
        """A rep's action on one shown deal is known: ``agreed`` is the prediction coming true (apprentice) or the
        pick approved and kept unedited (copilot, autopilot). Observations from an earlier level are ignored."""
        rec = self._rec(segment)
        if level != rec.level and not (rec.level == AUTOPILOT and level == COPILOT):
            return
        rec.seen += 1
        rec.agreed += int(agreed)
        if level != APPRENTICE:
            rec.recent.append((day, bool(agreed)))

    def observe_uplift(self, segment: str, day: float, level: str, uplift: float) -> None:
        """A shown AIDG pick's realised GP30 uplift over the habitual deal landed."""
        rec = self._rec(segment)
        if level == APPRENTICE or rec.level == APPRENTICE:
            return
        rec.uplifts.append(float(uplift))
        rec.recent_uplift.append((day, float(uplift)))

    def pin(self, segment: str, level: str | None, day: float = 0.0, who: str = "admin") -> AutonomyChange | None:
        """Hold ``segment`` at ``level`` (None: unpin; the record decides again). Logged as a change."""
        if level is not None and level not in LEVELS:
            raise DataError(f"unknown autonomy level {level!r}; choose one of {', '.join(LEVELS)}")
        rec = self._rec(segment)
        if level is None:
            rec.pinned = False
            return self._log(day, segment, rec, rec.level, f"unpinned by {who}", {})
        rec.pinned = True
        return self._move(day, segment, rec, level, f"pinned by {who}", {})

    def review(self, day: float) -> list[AutonomyChange]:
        """Graduate or demote every unpinned segment from its record; the changes made."""
        s = self.settings
        made = []
        for name, rec in self.segments.items():
            if rec.pinned or not s.enabled:
                continue
            while rec.recent and rec.recent[0][0] < day - s.window_days:
                rec.recent.popleft()
            while rec.recent_uplift and rec.recent_uplift[0][0] < day - s.window_days:
                rec.recent_uplift.popleft()
            change = self._demotion(day, name, rec) or self._graduation(day, name, rec)
            if change is not None:
                made.append(change)
        return made

    def _demotion(self, day: float, name: str, rec: _Record) -> AutonomyChange | None:
        s = self.settings
        if rec.level == APPRENTICE or len(rec.recent) < s.min_window:
            return None
        ok = sum(a for _, a in rec.recent)
        _, hi = wilson(ok, len(rec.recent), s.z_demote)
        _, up_hi = mean_bounds([u for _, u in rec.recent_uplift], s.z_demote)
        ev = {"window_decisions": len(rec.recent), "window_acceptance": ok / len(rec.recent),
              "acceptance_upper": hi, "uplift_upper": up_hi}  # fmt: skip
        lower = LEVELS[LEVELS.index(rec.level) - 1]
        if hi < s.demote_acceptance:
            return self._move(day, name, rec, lower, "acceptance fell under the demotion bound", ev)
        if up_hi < s.demote_uplift:
            return self._move(day, name, rec, lower, "realised GP30 uplift fell under the safety bound", ev)
        return None

    def _graduation(self, day: float, name: str, rec: _Record) -> AutonomyChange | None:
        s = self.settings
        if rec.level == AUTOPILOT or rec.seen < s.min_decisions:
            return None
        lo, _ = wilson(rec.agreed, rec.seen, s.z_graduate)
        ev = {"decisions": rec.seen, "agreement": rec.agreed / rec.seen, "agreement_lower": lo}
        if rec.level == APPRENTICE and lo >= s.graduate_agreement:
            return self._move(day, name, rec, COPILOT, "AIDG predicts the reps' actions", ev)
        if rec.level == COPILOT and lo >= s.autopilot_agreement:
            up_lo, _ = mean_bounds(rec.uplifts, s.z_graduate)
            ev["uplift_lower"] = up_lo
            if up_lo >= 0.0:
                return self._move(day, name, rec, AUTOPILOT, "picks kept unedited and beating the habitual deal", ev)
        return None

    def _move(self, day: float, name: str, rec: _Record, to: str, why: str, ev: dict[str, float]) -> AutonomyChange:
        before = rec.level
        rec.level, rec.since = to, day
        rec.agreed = rec.seen = 0
        rec.uplifts = []
        rec.recent.clear()
        rec.recent_uplift.clear()
        return self._log(day, name, rec, before, why, ev)

    def _log(self, day: float, name: str, rec: _Record, before: str, why: str, ev: dict[str, float]) -> AutonomyChange:
        evidence = {k: round(float(v), 4) for k, v in ev.items()}
        change = AutonomyChange(round(day, 3), name, before, rec.level, why, evidence)
        self.changes.append(change)
        return change

    def levels(self) -> dict[str, str]:
        return {k: r.level for k, r in self.segments.items()}
