"""The autonomy dial's shared state in the decision log: the level log, and the reps' answers to logged decisions.

Every replica reads a segment's level from the newest row of ``aidg_autonomy_log``
(:class:`AutonomyStore.levels`) and the record the dial decides on from the
decisions it logged (``variant`` carries the segment, the level and, in
apprentice, the predicted edit) joined with their approval, override and GP30
events (:meth:`AutonomyStore.outcomes`): the record is the marketplace's, not
one process's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import desc, func, select

from aidg.decisionlog.log import DecisionLog
from aidg.decisionlog.schema import AUTONOMY_LOG, DECISIONS, EVENTS, check_aware

OUTCOME_PARTS = ("approval", "override", "gp30_uplift")
ANSWERS = ("override", "gp30_uplift")  # the parts a review learns from (an approval alone teaches it nothing)


@dataclass(frozen=True)
class LevelRow:
    """One logged level change."""

    segment: str
    at: datetime
    from_level: str
    to_level: str
    pinned: bool
    actor: str
    reason: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "at": self.at.isoformat(), "from": self.from_level, "to": self.to_level,
                "pinned": self.pinned, "actor": self.actor, "reason": self.reason,
                "evidence": self.evidence}  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """A logged decision's segment and level and what came of it (None: not known yet)."""

    decision_id: str
    at: datetime
    segment: str
    level: str
    predicted_edit: float | None
    approved: bool | None
    edited: bool | None
    uplift: float | None


def _level_row(r: Any) -> LevelRow:
    ev = dict(r.evidence or {})
    return LevelRow(r.segment, r.at, r.from_level, r.to_level, bool(r.pinned), r.actor, r.reason, ev)


class AutonomyStore:
    """The level log and the decisions' outcomes (module docstring) on a :class:`DecisionLog`."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log

    def append(self, row: LevelRow) -> None:
        check_aware(row.at, "a level change's time")
        values = {"segment": row.segment[:128], "at": row.at, "from_level": row.from_level, "to_level": row.to_level,
                  "pinned": row.pinned, "actor": row.actor[:128], "reason": row.reason[:2000],
                  "evidence": row.evidence}  # fmt: skip
        with self.log._session(write=True) as conn:
            conn.execute(AUTONOMY_LOG.insert().values(**values))

    def levels(self) -> dict[str, LevelRow]:
        """Each segment's newest row (its level now)."""
        newest = select(AUTONOMY_LOG.c.segment, func.max(AUTONOMY_LOG.c.id).label("id")).group_by(
            AUTONOMY_LOG.c.segment
        )
        sub = newest.subquery()
        q = select(AUTONOMY_LOG).join(sub, AUTONOMY_LOG.c.id == sub.c.id)
        with self.log._session(write=False) as conn:
            return {r.segment: _level_row(r) for r in conn.execute(q).all()}

    def history(self, limit: int = 200) -> list[LevelRow]:
        """The newest ``limit`` changes, newest first."""
        q = select(AUTONOMY_LOG).order_by(desc(AUTONOMY_LOG.c.id)).limit(limit)
        with self.log._session(write=False) as conn:
            return [_level_row(r) for r in conn.execute(q).all()]

    def outcomes(self, since: datetime, limit: int = 200_000, answered_only: bool = False) -> list[Outcome]:
        """Decisions logged at or after ``since`` with an autonomy segment, oldest first, with their outcomes;
        ``answered_only``: only those with an override or GP30 event (the only ones a review learns from).

        The segment, level and predicted edit are read out of ``variant`` by the database (SQLite's
        ``json_extract``, PostgreSQL's ``->>``) and the outcomes joined there: a review reads a few small columns
        per decision, never a decision's JSON into Python (a replica reviews every minute)."""
        check_aware(since, "since")
        v = DECISIONS.c.variant
        segment = v["autonomy_segment"].as_string()
        recent = select(DECISIONS.c.decision_id, DECISIONS.c.created_at, segment.label("segment"),
                        v["autonomy_level"].as_string().label("level"), v["predicted_edit"].as_float().label("pe"))
        if answered_only:  # from the events: a decision nobody answered yet is never read
            answered = select(EVENTS.c.decision_id).where(EVENTS.c.part.in_(ANSWERS)).distinct().subquery()
            recent = recent.join(answered, answered.c.decision_id == DECISIONS.c.decision_id)
        recent = (
            recent.where(DECISIONS.c.created_at >= since, segment.is_not(None))
            .order_by(DECISIONS.c.created_at)
            .limit(limit)
        )  # fmt: skip
        sub = recent.subquery()
        ev = (
            select(EVENTS.c.decision_id, EVENTS.c.part, EVENTS.c.value)
            .join(sub, EVENTS.c.decision_id == sub.c.decision_id)
            .where(EVENTS.c.part.in_(OUTCOME_PARTS))
        )
        with self.log._session(write=False) as conn:
            rows = conn.execute(recent).all()
            parts: dict[str, dict[str, float]] = {}
            for did, part, value in conn.execute(ev):
                parts.setdefault(did, {})[part] = float(value)
        out = []
        for r in rows:
            p = parts.get(r.decision_id, {})
            out.append(Outcome(
                r.decision_id, r.created_at, str(r.segment), str(r.level or "copilot"),
                None if r.pe is None else float(r.pe), None if "approval" not in p else p["approval"] > 0.5,
                None if "override" not in p else p["override"] > 0.0, p.get("gp30_uplift"),
            ))  # fmt: skip
        return out


__all__ = ["AutonomyStore", "LevelRow", "Outcome"]
