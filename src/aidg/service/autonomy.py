"""The autonomy dial in the service: each request's segment and level, reviews from the shared record, admin pins.

- A request's segment is its merchant's (category × city tier, or rep team:
  ``autonomy.segment_by``); its level is the segment's newest row of the level log
  (:class:`~aidg.decisionlog.autonomy.AutonomyStore`), read at most every 2 s,
  else ``autonomy.service_start``. Apprentice plays the current system's deal
  and records AIDG's prediction of the rep's edit (the merchant's override rate);
  copilot plays AIDG's pick with its explanation; autopilot marks the pick
  applied, for merchants overriding at most ``autopilot_max_override``.
- :meth:`ServiceAutonomy.review` (every ``review_seconds`` on every replica)
  rebuilds each segment's record from the decisions logged since its level was
  reached and their approval, override and GP30 events, applies the dial's rules
  (:class:`~aidg.policy.autonomy.AutonomyDial`) and logs the changes, each with
  its evidence; a change another replica logged meanwhile wins.
- :meth:`pin` holds a segment at a level (or releases it) for an admin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from aidg.config import Settings
from aidg.decisionlog.autonomy import AutonomyStore, LevelRow, Outcome
from aidg.decisionlog.schema import utcnow
from aidg.errors import NotFoundError
from aidg.policy.autonomy import APPRENTICE, AUTOPILOT, COPILOT, LEVELS, AutonomyDial

log = logging.getLogger(__name__)
DAY = 86_400.0
READ_EVERY_S = 2.0
STATE_EVERY_S = 10.0  # the per-segment view is recomputed at most this often (the dashboard polls every 2 s)
LOOKBACK_DAYS = 30.0  # a review reads at most this far back (a segment's record since its level, within it)


def _day(t: datetime) -> float:
    return t.timestamp() / DAY


class ServiceAutonomy:
    """Levels per segment for one replica (module docstring)."""

    def __init__(self, settings: Settings, store: AutonomyStore, segment_of: Mapping[str, str],
                 clock: Callable[[], datetime] = utcnow) -> None:  # fmt: skip
        self.settings, self.store, self.clock = settings, store, clock
        self.segment_of = dict(segment_of)
        self.segments = sorted(set(self.segment_of.values()))
        self._levels: dict[str, LevelRow] = {}
        self._read_at = float("-inf")
        self._reviewed_at = time.monotonic()  # the first review one review_seconds after the start
        self._lock = threading.Lock()
        self._state: tuple[float, int, dict[str, Any]] | None = None  # (when, days, view)

    # -- the request path ----------------------------------------------------------------------------------------
    def _fresh_levels(self) -> dict[str, LevelRow]:
        now = time.monotonic()
        if now - self._read_at >= READ_EVERY_S:
            with self._lock:
                if now - self._read_at >= READ_EVERY_S:
                    self._read_at = now
                    try:
                        self._levels = self.store.levels()
                    except Exception:  # a down log keeps the levels last read (retried 2 s on); the request goes on
                        log.warning("autonomy levels unreadable; keeping the last read", exc_info=True)
        return self._levels

    def level_of_segment(self, segment: str) -> str:
        row = self._fresh_levels().get(segment)
        return row.to_level if row is not None else self._start()

    def _start(self) -> str:
        return self.settings.autonomy.service_start if self.settings.autonomy.enabled else COPILOT

    def level(self, merchant_id: str, override_rate: float | None = None) -> tuple[str, str]:
        """(segment, level) for a request of ``merchant_id``; autopilot only for merchants overriding little."""
        seg = self.segment_of.get(merchant_id, "unsegmented")
        lvl = self.level_of_segment(seg)
        limit = self.settings.autonomy.autopilot_max_override
        if lvl == AUTOPILOT and override_rate is not None and override_rate > limit:
            lvl = COPILOT
        return seg, lvl

    # -- admin ---------------------------------------------------------------------------------------------------
    def _check(self, segment: str) -> None:
        if segment not in self.segments:
            raise NotFoundError(f"no segment {segment!r}; segments: {', '.join(self.segments[:20])}")

    def pin(self, segment: str, level: str | None, actor: str, reason: str = "") -> LevelRow:
        """Hold ``segment`` at ``level`` (None releases it to the dial); logged with who and why."""
        self._check(segment)
        now, before = self.clock(), self.level_of_segment(segment)
        to = before if level is None else level
        why = reason or (f"pinned at {level}" if level is not None else "unpinned: the dial decides again")
        row = LevelRow(segment, now, before, to, level is not None, actor, why, {})
        self.store.append(row)
        self._read_at, self._state = float("-inf"), None
        return row

    # -- the dial ------------------------------------------------------------------------------------------------
    def review_if_due(self) -> list[LevelRow]:
        now = time.monotonic()
        if now - self._reviewed_at < self.settings.autonomy.review_seconds or not self.settings.autonomy.enabled:
            return []
        self._reviewed_at = now
        return self.review()

    def review(self) -> list[LevelRow]:
        """Graduate or demote every segment from the shared record; the changes logged."""
        s = self.settings.autonomy
        now = self.clock()
        levels = self.store.levels()
        lookback = now - timedelta(days=max(LOOKBACK_DAYS, 2 * s.window_days))
        since = {g: max(levels[g].at, lookback) if g in levels else lookback for g in self.segments}
        outcomes = self.store.outcomes(min(since.values(), default=lookback), answered_only=True)
        dial = AutonomyDial(s, start=self._start())
        for g in self.segments:
            row = levels.get(g)
            dial.restore(g, row.to_level if row else self._start(), bool(row and row.pinned), _day(since[g]))
        for o in outcomes:
            if o.segment in since and o.at >= since[o.segment]:
                _feed(dial, o)
        made = []
        for c in dial.review(_day(now)):
            if self.store.levels().get(c.segment) != levels.get(c.segment):
                continue  # another replica moved it meanwhile: its change wins
            row = LevelRow(c.segment, now, c.from_level, c.to_level, False, "autonomy dial", c.reason, c.evidence)
            self.store.append(row)
            made.append(row)
        self._read_at, self._state = float("-inf"), None
        return made

    # -- what the API and the dashboard show ---------------------------------------------------------------------
    def state(self, days: int = 30) -> dict[str, Any]:
        """Per segment: its level now, pin, since when, and day by day its decisions, agreement and override rate
        (with the level that day); the newest changes. Recomputed at most every 10 s (and after this replica's own
        reviews and pins)."""
        cached = self._state
        if cached is not None and cached[1] == days and time.monotonic() - cached[0] < STATE_EVERY_S:
            return cached[2]
        view = self._compute_state(days)
        self._state = (time.monotonic(), days, view)
        return view

    def _compute_state(self, days: int) -> dict[str, Any]:
        now = self.clock()
        levels = self.store.levels()
        history = self.store.history()
        outcomes = self.store.outcomes(now - timedelta(days=days))
        per: dict[str, dict[str, Any]] = {}
        for g in self.segments:
            row = levels.get(g)
            per[g] = {"segment": g, "level": row.to_level if row else self._start(), "pinned": bool(row and row.pinned),
                      "since": row.at.isoformat() if row else None, "days": {}}  # fmt: skip
        for o in outcomes:
            seg = per.get(o.segment)
            if seg is None or o.edited is None:
                continue
            blank = {"decisions": 0, "agreed": 0, "edited": 0, "level": o.level}
            d = seg["days"].setdefault(o.at.date().isoformat(), blank)
            d["decisions"] += 1
            d["edited"] += int(o.edited)
            d["agreed"] += int(_agreed(o) or False)
            d["level"] = o.level
        for seg in per.values():
            series = []
            for day, d in sorted(seg.pop("days").items()):
                n = d["decisions"]
                series.append({"day": day, "level": d["level"], "decisions": n, "agreement": round(d["agreed"] / n, 4),
                               "override_rate": round(d["edited"] / n, 4)})  # fmt: skip
            seg["series"] = series
            total = sum(x["decisions"] for x in series)
            seg["decisions"] = total
            seg["agreement"] = round(sum(x["agreement"] * x["decisions"] for x in series) / total, 4) if total else None
            seg["override_rate"] = (
                round(sum(x["override_rate"] * x["decisions"] for x in series) / total, 4) if total else None
            )
        shares = {lvl: float(np.mean([p["level"] == lvl for p in per.values()])) if per else 0.0 for lvl in LEVELS}
        return {"segment_by": self.settings.autonomy.segment_by, "start_level": self._start(),
                "segments": list(per.values()), "level_shares": shares,
                "changes": [r.to_dict() for r in history]}  # fmt: skip


def _agreed(o: Outcome) -> bool | None:
    """Apprentice: AIDG's prediction of the edit came true; else the pick approved and kept unedited."""
    if o.edited is None:
        return None
    if o.level == APPRENTICE:
        return o.predicted_edit is not None and (o.predicted_edit >= 0.5) == o.edited
    return o.approved is not None and o.approved and not o.edited


def _feed(dial: AutonomyDial, o: Outcome) -> None:
    agreed = _agreed(o)
    if agreed is not None and (o.level == APPRENTICE or o.approved is not None):
        dial.observe(o.segment, _day(o.at), o.level, agreed)
    if o.uplift is not None:
        dial.observe_uplift(o.segment, _day(o.at), o.level, o.uplift)


__all__ = ["ServiceAutonomy"]
