"""The transaction of the decision log a reward worker runs: lock the posterior, claim events, save."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, tuple_, update

from aidg.decisionlog.schema import (
    DECISIONS,
    EVENTS,
    KPIS,
    POSTERIORS,
    Array,
    DecisionRecord,
    EventKey,
    Posterior,
    RewardEvent,
    check_aware,
    chunks,
    posterior_values,
    row_event,
    row_posterior,
    row_record,
    utcnow,
)
from aidg.errors import DataError

__all__ = ["Tx"]


class Tx:
    """One database transaction of a :class:`DecisionLog`; only obtained from :meth:`DecisionLog.transaction`."""

    def __init__(self, conn: Connection, insert: Callable[[Any], Any]) -> None:
        self._conn = conn
        self._insert = insert

    def lock_posterior(self, name: str, init: Callable[[], tuple[Array, Array]]) -> Posterior:
        """Lock the posterior ``name`` (``SELECT ... FOR UPDATE``) until the transaction ends, creating it if missing.

        A missing posterior is created from ``init()``'s ``(A, b)`` with version 0, race-free
        (``INSERT ... ON CONFLICT DO NOTHING`` then the locking select).
        """
        query = select(POSTERIORS).where(POSTERIORS.c.name == name).with_for_update()
        row = self._conn.execute(query).first()
        if row is None:
            values = posterior_values(*init())
            ins = self._insert(POSTERIORS).values(name=name, version=0, **values)
            self._conn.execute(ins.on_conflict_do_nothing(index_elements=["name"]))
            row = self._conn.execute(query).one()
        return row_posterior(row)

    def claim(self, keys: Sequence[EventKey]) -> list[RewardEvent]:
        """Mark the stored, not yet applied events among ``keys`` ((decision_id, event_id) each) applied in this
        transaction; return them.

        They come back in the order of ``keys``; an event already applied (by anyone) or unknown is left out.
        """
        ids = list(dict.fromkeys(keys))
        found: dict[EventKey, RewardEvent] = {}
        now = utcnow()
        for chunk in chunks(ids):
            where = (tuple_(EVENTS.c.decision_id, EVENTS.c.event_id).in_(chunk), EVENTS.c.applied_at.is_(None))
            if self._conn.dialect.update_returning:
                stmt = update(EVENTS).where(*where).values(applied_at=now).returning(*EVENTS.c)
                rows = self._conn.execute(stmt).all()
            else:  # SQLite < 3.35: the write lock is held (BEGIN IMMEDIATE), so select then update is safe
                rows = self._conn.execute(select(EVENTS).where(*where)).all()
                self._conn.execute(update(EVENTS).where(*where).values(applied_at=now))
            found.update(((row.decision_id, row.event_id), row_event(row)) for row in rows)
        return [found[i] for i in ids if i in found]

    def decisions(self, decision_ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """The stored decisions among ``decision_ids``, by id."""
        out: dict[str, DecisionRecord] = {}
        for chunk in chunks(list(dict.fromkeys(decision_ids))):
            for row in self._conn.execute(select(DECISIONS).where(DECISIONS.c.decision_id.in_(chunk))):
                out[row.decision_id] = row_record(row)
        return out

    def applied_parts(
        self, decision_ids: Sequence[str], exclude: Sequence[EventKey] = ()
    ) -> dict[str, dict[str, float]]:
        """``{decision_id: {part: value}}`` of the events applied before (every id given has an entry, maybe empty).

        Events in ``exclude`` (the keys of those claimed in this transaction) are ignored; per part the
        latest event by ``at`` then ``event_id`` wins.
        """
        ids = list(dict.fromkeys(decision_ids))
        out: dict[str, dict[str, float]] = {d: {} for d in ids}
        excluded = set(exclude)
        cols = (EVENTS.c.event_id, EVENTS.c.decision_id, EVENTS.c.part, EVENTS.c.value)
        for chunk in chunks(ids):
            query = select(*cols).where(EVENTS.c.decision_id.in_(chunk), EVENTS.c.applied_at.is_not(None))
            for row in self._conn.execute(query.order_by(EVENTS.c.at, EVENTS.c.event_id)):
                if (row.decision_id, row.event_id) not in excluded:
                    out[row.decision_id][row.part] = row.value
        return out

    def save_posterior(self, name: str, A: Array, b: Array) -> int:
        """Store ``(A, b)`` as the posterior ``name``; return its new version (the old one + 1, or 1 if new)."""
        ins = self._insert(POSTERIORS).values(name=name, version=1, **posterior_values(A, b))
        new = {c: ins.excluded[c] for c in ("dim", "A", "b", "updated_at")}
        stmt = ins.on_conflict_do_update(index_elements=["name"], set_={**new, "version": POSTERIORS.c.version + 1})
        return int(self._conn.execute(stmt.returning(POSTERIORS.c.version)).scalar_one())

    def add_kpi(self, bucket: datetime, name: str, value: float, count: int = 1) -> None:
        """Add ``value`` to the total and ``count`` to the count of the KPI row ``(bucket, name)`` (upsert)."""
        check_aware(bucket, "a KPI bucket")
        if not math.isfinite(value):
            raise DataError(f"KPI {name!r} got a non-finite value {value!r}")
        ins = self._insert(KPIS).values(bucket=bucket, name=name, count=count, total=float(value))
        add = {"count": KPIS.c["count"] + ins.excluded["count"], "total": KPIS.c.total + ins.excluded["total"]}
        self._conn.execute(ins.on_conflict_do_update(index_elements=["bucket", "name"], set_=add))
