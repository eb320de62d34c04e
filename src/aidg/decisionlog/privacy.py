"""The decision log's privacy side: consent flags, unlearning a merchant, retention, the audit trail.

* **Consent** set through the API lives in ``aidg_consent`` and wins over the merchants table's
  ``consent_personalization`` / ``consent_training`` columns.
* **Unlearning** (:meth:`PrivacyStore.forget_merchant`): in one transaction that first locks the stream
  workers' common row (so no worker applies the merchant's events halfway), the merchant's contribution
  is subtracted from every bandit posterior it reached, exactly: a decision with applied parts added
  ``φφᵀ`` to the precision and ``φ · (r(parts) − score)`` to ``b`` (see :mod:`aidg.policy.bandit`), so
  removing those terms leaves the posterior it would have had without the merchant. Then its reward
  events, shadow records, decisions and consent row are deleted.
* **Retention** (:meth:`PrivacyStore.purge_before`): decisions (with their events and shadow records)
  and KPI rows older than a cutoff are deleted. The posteriors keep what they learned from them: an
  aggregate over many merchants that names none.
* **Audit** (:meth:`PrivacyStore.audit`): one row per erasure or retention run, with a keyed hash as
  subject and counts as detail, never a raw id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, desc, select

from aidg.decisionlog.log import DecisionLog, DecisionRecord, Tx
from aidg.decisionlog.schema import (
    CONSENT,
    DECISIONS,
    EVENTS,
    KPIS,
    MERCHANT_SEP,
    POSTERIORS,
    PRIVACY_AUDIT,
    SHADOW,
    check_aware,
    chunks,
    row_record,
    utcnow,
)

Residual = Callable[[DecisionRecord, dict[str, float]], float]


class PrivacyStore:
    """Consent, unlearning, retention and the privacy audit trail on a :class:`DecisionLog`."""

    def __init__(self, log: DecisionLog) -> None:
        self.log = log

    # -- consent ---------------------------------------------------------------------------------------------
    def consent(self, merchant_ids: Sequence[str]) -> dict[str, tuple[bool, bool]]:
        """``{merchant: (personalization, training)}`` for those with a consent row (others: not set here)."""
        out: dict[str, tuple[bool, bool]] = {}
        with self.log._session(write=False) as conn:
            for chunk in chunks(list(dict.fromkeys(merchant_ids))):
                for r in conn.execute(select(CONSENT).where(CONSENT.c.merchant_id.in_(chunk))):
                    out[r.merchant_id] = (bool(r.personalization), bool(r.training))
        return out

    def all_consent(self) -> dict[str, tuple[bool, bool]]:
        with self.log._session(write=False) as conn:
            return {r.merchant_id: (bool(r.personalization), bool(r.training)) for r in conn.execute(select(CONSENT))}

    def consent_changed(self, since: datetime) -> dict[str, tuple[bool, bool, datetime]]:
        """``{merchant: (personalization, training, updated_at)}`` of the rows changed after ``since``."""
        query = select(CONSENT).where(CONSENT.c.updated_at > since)
        with self.log._session(write=False) as conn:
            return {r.merchant_id: (bool(r.personalization), bool(r.training), r.updated_at)
                    for r in conn.execute(query)}  # fmt: skip

    def set_consent(self, merchant_id: str, personalization: bool, training: bool) -> None:
        values = {"personalization": personalization, "training": training, "updated_at": utcnow()}
        with self.log._session(write=True) as conn:
            ins = self.log._insert(CONSENT).values(merchant_id=merchant_id, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=["merchant_id"], set_=values))

    def decision_ids(self, merchant_id: str) -> set[str]:
        """The ids of the merchant's logged decisions."""
        query = select(DECISIONS.c.decision_id).where(DECISIONS.c.merchant_id == merchant_id)
        with self.log._session(write=False) as conn:
            return set(conn.scalars(query))

    # -- unlearning ------------------------------------------------------------------------------------------
    def forget_merchant(
        self, merchant_id: str, residual: Residual, posterior_of: Callable[[DecisionRecord], str], lock_first: str
    ) -> dict[str, int]:
        """Subtract the merchant from the posteriors, then delete its rows (see the module docstring).

        Args:
            merchant_id: The merchant to forget.
            residual: ``(decision, applied parts) → r(parts) − score``, the amount the decision added to ``b``.
            posterior_of: The posterior a decision learned into (the stream worker's rule).
            lock_first: The row every stream-worker transaction locks first (the same lock order: no deadlock).

        Returns:
            Counts: ``decisions``, ``events``, ``shadow``, ``consent`` and ``merchant_posteriors`` (the merchant's
            own online statistics) rows deleted, ``posteriors`` downdated and ``unlearned`` decisions (those whose
            parts had reached a posterior).
        """
        with self.log._session(write=True) as conn:
            tx = Tx(conn, self.log._insert)
            tx.lock_posterior(lock_first, lambda: (np.zeros((1, 1)), np.zeros(1)))
            recs = [
                row_record(r) for r in conn.execute(select(DECISIONS).where(DECISIONS.c.merchant_id == merchant_id))
            ]
            ids = [r.decision_id for r in recs]
            applied = tx.applied_parts(ids)
            by_posterior: dict[str, list[DecisionRecord]] = defaultdict(list)
            for rec in recs:
                if applied[rec.decision_id]:
                    by_posterior[posterior_of(rec)].append(rec)
            downdated = 0
            for name, group in sorted(by_posterior.items()):
                post = tx.lock_posterior(name, lambda: (np.zeros((1, 1)), np.zeros(1)))
                A, b = post.A.copy(), post.b.copy()
                if A.shape[0] != group[0].phi.shape[0]:
                    continue  # a posterior of another shape: nothing of this merchant's is in it
                for rec in group:
                    A -= np.outer(rec.phi, rec.phi)
                    b -= rec.phi * residual(rec, applied[rec.decision_id])
                tx.save_posterior(name, A, b)
                downdated += 1
            counts = {"events": 0, "shadow": 0, "decisions": 0}
            for chunk in chunks(ids):
                counts["events"] += conn.execute(delete(EVENTS).where(EVENTS.c.decision_id.in_(chunk))).rowcount
                counts["shadow"] += conn.execute(delete(SHADOW).where(SHADOW.c.decision_id.in_(chunk))).rowcount
                counts["decisions"] += conn.execute(
                    delete(DECISIONS).where(DECISIONS.c.decision_id.in_(chunk))
                ).rowcount
            counts["consent"] = conn.execute(delete(CONSENT).where(CONSENT.c.merchant_id == merchant_id)).rowcount
            # the per-merchant posterior's online rows hold only this merchant's statistics: they go whole
            own = [f"{name}{MERCHANT_SEP}{merchant_id}" for name in {posterior_of(r) for r in recs}]
            counts["merchant_posteriors"] = (
                conn.execute(delete(POSTERIORS).where(POSTERIORS.c.name.in_(own))).rowcount if own else 0
            )
        return {**counts, "posteriors": downdated, "unlearned": sum(len(g) for g in by_posterior.values())}

    # -- retention -------------------------------------------------------------------------------------------
    def purge_before(self, cutoff: datetime) -> dict[str, int]:
        """Delete decisions created before ``cutoff`` (with their events and shadow records) and older KPI rows."""
        check_aware(cutoff, "the retention cutoff")
        old = select(DECISIONS.c.decision_id).where(DECISIONS.c.created_at < cutoff)
        with self.log._session(write=True) as conn:
            events = conn.execute(delete(EVENTS).where(EVENTS.c.decision_id.in_(old))).rowcount
            shadow = conn.execute(delete(SHADOW).where(SHADOW.c.decision_id.in_(old))).rowcount
            decisions = conn.execute(delete(DECISIONS).where(DECISIONS.c.created_at < cutoff)).rowcount
            kpis = conn.execute(delete(KPIS).where(KPIS.c.bucket < cutoff)).rowcount
        return {"decisions": int(decisions), "events": int(events), "shadow": int(shadow), "kpi_rows": int(kpis)}

    # -- audit trail -----------------------------------------------------------------------------------------
    def audit(self, kind: str, subject: str | None, actor: str, detail: dict[str, Any]) -> int:
        """Append an audit record; returns its id. ``subject`` must be a hash, never a raw id."""
        with self.log._session(write=True) as conn:
            stmt = PRIVACY_AUDIT.insert().values(kind=kind, at=utcnow(), subject=subject, actor=actor, detail=detail)
            return int(conn.execute(stmt.returning(PRIVACY_AUDIT.c.id)).scalar_one())

    def audit_records(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(PRIVACY_AUDIT).order_by(desc(PRIVACY_AUDIT.c.id)).limit(limit)
        if kind is not None:
            query = query.where(PRIVACY_AUDIT.c.kind == kind)
        with self.log._session(write=False) as conn:
            return [
                {"id": r.id, "kind": r.kind, "at": r.at.isoformat(), "subject": r.subject, "actor": r.actor,
                 "detail": r.detail}
                for r in conn.execute(query)
            ]  # fmt: skip

    def erased(self) -> set[str]:
        """The hashes of every erased merchant (training leaves them out even if a new data feed brings them back)."""
        query = select(PRIVACY_AUDIT.c.subject).where(PRIVACY_AUDIT.c.kind == "erasure")
        with self.log._session(write=False) as conn:
            return {s for s in conn.scalars(query) if s}


__all__ = ["PrivacyStore", "Residual"]
