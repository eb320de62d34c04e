"""The rollout's shared state in the decision log: one state row, the transition log, shadow records, KPI rows.

Every replica reads the state row (a few times a second) and changes it only by
compare-and-set on its ``revision``: two replicas whose monitors both see a
trigger write one rollback, and the other is told the state already moved.
The same database holds the decisions and their reward events, so the
promotion gate joins the shadow records to what was logged and learned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import desc, func, select, update

from aidg.decisionlog.log import DecisionLog
from aidg.decisionlog.schema import (
    DECISIONS,
    EVENTS,
    KPIS,
    ROLLOUT,
    ROLLOUT_LOG,
    SHADOW,
    check_aware,
    chunks,
    decode_array,
    encode_array,
    utcnow,
)
from aidg.errors import ConflictError


@dataclass(frozen=True)
class RolloutRow:
    """The rollout state as stored (see :mod:`aidg.monitor.rollout` for what the states mean)."""

    name: str
    state: str
    champion: str | None
    challenger: str | None
    step: int
    paused: bool
    revision: int
    started_at: datetime | None
    step_started_at: datetime | None
    updated_at: datetime
    gate: dict[str, Any] | None
    drill_fault_rate: float = 0.0


@dataclass(frozen=True)
class Transition:
    """One recorded change of the rollout: who, when, why."""

    at: datetime
    from_state: str
    to_state: str
    action: str
    actor: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(), "from": self.from_state, "to": self.to_state, "action": self.action,
            "actor": self.actor, "reason": self.reason, "detail": self.detail,
        }  # fmt: skip


@dataclass(frozen=True)
class ShadowRow:
    """A logged decision with the challenger's shadow choice, the logging propensity and the observed parts."""

    decision_id: str
    choice: int
    logged: int
    estimates: np.ndarray
    pscore: float
    score: float
    predicted: dict[str, float]
    parts: dict[str, float]


def _row(r: Any) -> RolloutRow:
    m = r._mapping
    return RolloutRow(
        m["name"], m["state"], m["champion"], m["challenger"], int(m["step"]), bool(m["paused"]), int(m["revision"]),
        m["started_at"], m["step_started_at"], m["updated_at"], m["gate"], float(m["drill_fault_rate"]),
    )  # fmt: skip


class RolloutStore:
    """State, transitions, shadow records and KPI rows of one named rollout, on a :class:`DecisionLog`."""

    def __init__(self, log: DecisionLog, name: str = "default") -> None:
        self.log, self.name = log, name

    # -- the state row -------------------------------------------------------------------------------------------
    def get(self) -> RolloutRow | None:
        with self.log._session(write=False) as conn:
            r = conn.execute(select(ROLLOUT).where(ROLLOUT.c.name == self.name)).first()
        return None if r is None else _row(r)

    def ensure(self, champion: str) -> RolloutRow:
        """The state row, created ``idle`` with ``champion`` if there is none yet."""
        now = utcnow()
        values = {
            "name": self.name, "state": "idle", "champion": champion, "challenger": None, "step": 0, "paused": False,
            "revision": 0, "started_at": None, "step_started_at": None, "updated_at": now, "gate": None,
            "drill_fault_rate": 0.0,
        }  # fmt: skip
        with self.log._session(write=True) as conn:
            conn.execute(self.log._insert(ROLLOUT).values(**values).on_conflict_do_nothing(index_elements=["name"]))
        row = self.get()
        assert row is not None
        return row

    def change(self, revision: int, values: dict[str, Any], transition: Transition | None) -> RolloutRow:
        """Write ``values`` if the row is still at ``revision`` (then ``revision + 1``), with its transition.

        Raises :class:`~aidg.errors.ConflictError` if another writer moved the row first.
        """
        now = utcnow()
        with self.log._session(write=True) as conn:
            done = conn.execute(
                update(ROLLOUT)
                .where(ROLLOUT.c.name == self.name, ROLLOUT.c.revision == revision)
                .values(**values, revision=revision + 1, updated_at=now)
            ).rowcount
            if not done:
                raise ConflictError("the rollout changed meanwhile (another admin or the monitor); reload and retry")
            if transition is not None:
                conn.execute(
                    ROLLOUT_LOG.insert().values(
                        name=self.name, at=transition.at, from_state=transition.from_state,
                        to_state=transition.to_state, action=transition.action, actor=transition.actor[:128],
                        reason=transition.reason[:2000], detail=transition.detail,
                    )
                )  # fmt: skip
        row = self.get()
        assert row is not None
        return row

    def transitions(self, limit: int = 50) -> list[Transition]:
        """The newest ``limit`` transitions, newest first."""
        q = select(ROLLOUT_LOG).where(ROLLOUT_LOG.c.name == self.name).order_by(desc(ROLLOUT_LOG.c.id)).limit(limit)
        with self.log._session(write=False) as conn:
            rows = conn.execute(q).all()
        return [
            Transition(r.at, r.from_state, r.to_state, r.action, r.actor, r.reason, dict(r.detail or {})) for r in rows
        ]

    # -- shadow records ------------------------------------------------------------------------------------------
    def record_shadow(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store the challenger's shadow choices (``decision_id``, ``challenger``, ``choice``, ``logged``,
        ``estimates``); a decision already recorded is kept as it was."""
        if not rows:
            return
        values = [
            {
                "decision_id": r["decision_id"], "challenger": r["challenger"], "created_at": r.get("at") or utcnow(),
                "choice": int(r["choice"]), "logged": int(r["logged"]), "n": len(r["estimates"]) - 1,
                "estimates": encode_array(np.asarray(r["estimates"], float)),
            }
            for r in rows
        ]
        with self.log._session(write=True) as conn:
            for chunk in chunks(values):
                ins = self.log._insert(SHADOW).values(list(chunk))
                conn.execute(ins.on_conflict_do_nothing(index_elements=["decision_id"]))

    def shadow(self, challenger: str, since: datetime | None = None, limit: int = 20_000) -> list[ShadowRow]:
        """The challenger's shadow records joined with their decisions and the reward parts observed so far."""
        q = (
            select(SHADOW, DECISIONS.c.pscore, DECISIONS.c.score, DECISIONS.c.predicted)
            .join(DECISIONS, DECISIONS.c.decision_id == SHADOW.c.decision_id)
            .where(SHADOW.c.challenger == challenger)
        )
        if since is not None:
            check_aware(since, "since")
            q = q.where(SHADOW.c.created_at >= since)
        q = q.order_by(SHADOW.c.created_at).limit(limit)
        with self.log._session(write=False) as conn:
            rows = conn.execute(q).all()
            parts: dict[str, dict[str, float]] = defaultdict(dict)
            for chunk in chunks([r.decision_id for r in rows]):
                for e in conn.execute(
                    select(EVENTS.c.decision_id, EVENTS.c.part, EVENTS.c.value).where(EVENTS.c.decision_id.in_(chunk))
                ):
                    parts[e.decision_id][e.part] = float(e.value)
        return [
            ShadowRow(
                r.decision_id, int(r.choice), int(r.logged), decode_array(r.estimates, (int(r.n) + 1,)),
                float(r.pscore), float(r.score), dict(r.predicted), parts.get(r.decision_id, {}),
            )
            for r in rows
        ]

    # -- decisions and KPIs --------------------------------------------------------------------------------------
    def recent_decisions(self, limit: int = 20, merchants: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The newest decisions (id, merchant, time, arm, version, the chosen deal's type, score and risk)."""
        q = select(
            DECISIONS.c.decision_id, DECISIONS.c.merchant_id, DECISIONS.c.created_at, DECISIONS.c.arm,
            DECISIONS.c.model_version, DECISIONS.c.variant, DECISIONS.c.score, DECISIONS.c.payload,
        )  # fmt: skip
        if merchants is not None:
            q = q.where(DECISIONS.c.merchant_id.in_(list(merchants)))
        q = q.order_by(desc(DECISIONS.c.created_at)).limit(limit)
        with self.log._session(write=False) as conn:
            rows = conn.execute(q).all()
        return [
            {
                "decision_id": r.decision_id, "merchant_id": r.merchant_id, "created_at": r.created_at.isoformat(),
                "arm": r.arm, "model_version": r.model_version, "type": (r.variant or {}).get("type"),
                "score": round(float(r.score), 5), "risk": (r.payload or {}).get("chosen", {}).get("risk"),
            }
            for r in rows
        ]

    def kpi_totals(self, since: datetime) -> dict[str, tuple[int, float]]:
        """KPI totals by name over the buckets at or after ``since``."""
        check_aware(since, "since")
        q = (
            select(KPIS.c.name, func.sum(KPIS.c["count"]), func.sum(KPIS.c.total))
            .where(KPIS.c.bucket >= since)
            .group_by(KPIS.c.name)
        )
        with self.log._session(write=False) as conn:
            return {str(n): (int(c or 0), float(t or 0.0)) for n, c, t in conn.execute(q)}

    def add_kpis(self, rows: Iterable[tuple[datetime, str, int, float]]) -> None:
        """Add ``(bucket, name, count, total)`` rows to the KPI table in one transaction (upserts)."""
        merged: dict[tuple[datetime, str], list[float]] = {}
        for bucket, name, count, total in rows:
            check_aware(bucket, "a KPI bucket")
            acc = merged.setdefault((bucket, name), [0, 0.0])
            acc[0] += count
            acc[1] += float(total)
        if not merged:
            return
        values = [{"bucket": b, "name": n, "count": int(c), "total": t} for (b, n), (c, t) in merged.items()]
        with self.log._session(write=True) as conn:
            for chunk in chunks(values):
                ins = self.log._insert(KPIS).values(list(chunk))
                add = {"count": KPIS.c["count"] + ins.excluded["count"], "total": KPIS.c.total + ins.excluded["total"]}
                conn.execute(ins.on_conflict_do_update(index_elements=["bucket", "name"], set_=add))


__all__ = ["RolloutRow", "RolloutStore", "ShadowRow", "Transition"]
