"""Stream workers: reward parts joined to their decisions, exactly once, and the bandit posterior updated with them.

``aidg stream-worker`` runs :meth:`StreamWorker.run`; the embedded service runs
one in a thread. Each read of the event bus (a consumer group: several workers
split the stream) is handled in ONE decision-log transaction:

1. a lock row serialises the workers' transactions (short: one batch);
2. ``claim`` marks the batch's reward events applied, leaving out any that a
   previous delivery already applied (idempotent by event id);
3. each claimed part is joined to its decision with the bandit's own rule
   (:func:`aidg.policy.bandit.join_part`: early parts at once, the GP30
   correcting when it lands, the scorer's predictions standing in for the
   rest) and moves the posterior the decision's replica served from (named by the
   model's weights and the merchants served: the same on every replica);
4. the posterior and per-minute KPI aggregates (for the monitor) are saved.

Only after the commit are the messages acknowledged. A worker killed before
the commit leaves nothing applied and its messages pending, reclaimed by
another consumer after ``claim_idle_ms``; one killed between commit and ack
has its messages delivered again, and ``claim`` returns nothing for them. So
every event is applied exactly once. After the commit the merchants' online
features are updated incrementally (:class:`~aidg.online.feature_row.FeatureRow`) and
handed to ``on_update``, which patches the cached serving bundles with them
(write-through: the cache stays warm and the next request reads the new
override record). Events received by the API but never published (the bus was
down) are re-published from the decision log's outbox (:meth:`republish`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np

from aidg.config import RewardSettings, StreamSettings
from aidg.decisionlog.log import DecisionLog, DecisionRecord, RewardEvent
from aidg.decisionlog.schema import MERCHANT_SEP, EventKey
from aidg.errors import BackendUnavailableError
from aidg.monitor.kpis import bucket_of, feedback_kpis
from aidg.online.feature_row import FeatureRow
from aidg.policy.bandit import join_part
from aidg.policy.merchant_posterior import PART_PREDICTIONS
from aidg.policy.pooled import K
from aidg.store.online import OnlineStore
from aidg.stream.bus import EventBus, Message

log = logging.getLogger("aidg.stream")
WORKER_LOCK = "__stream_workers__"  # the row every worker transaction locks first (one lock order: no deadlocks)
# a merchant's online statistics for the per-merchant posterior: one row per (posterior, merchant), A the
# block-diagonal Σψψᵀ and b the stacked Σψy of the learnt parts in MERCHANT_PARTS' order (K term features each)
MERCHANT_PARTS = tuple(PART_PREDICTIONS)


def _prior(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The bandit's prior: precision I (prior_precision 1), b = 0."""
    return np.eye(dim), np.zeros(dim)


def reward_message(e: RewardEvent) -> dict[str, Any]:
    """The bus payload of a reward event (the decision log holds the event itself)."""
    return {"kind": "reward", "event_id": e.event_id, "decision_id": e.decision_id, "part": e.part, "value": e.value}


def reward_keys(msgs: Sequence[Message]) -> list[EventKey]:
    """The (decision_id, event_id) of each reward message among ``msgs`` (others, and malformed ones, skipped)."""
    out = []
    for m in msgs:
        p = m.payload
        if p.get("kind") == "reward" and isinstance(p.get("event_id"), str) and isinstance(p.get("decision_id"), str):
            out.append((p["decision_id"], p["event_id"]))
    return out


def posterior_name(model_version: str) -> str:
    return f"risk_aware_ts/v{model_version}"


def merchant_stats_name(posterior: str, merchant_id: str) -> str:
    """The row of a merchant's online statistics under ``posterior`` (:data:`MERCHANT_SEP`)."""
    return f"{posterior}{MERCHANT_SEP}{merchant_id}"


def _merchant_prior() -> tuple[np.ndarray, np.ndarray]:
    n = K * len(MERCHANT_PARTS)
    return np.zeros((n, n)), np.zeros(n)


def posterior_of(rec: DecisionRecord) -> str:
    """The posterior a decision learns into: the one its replica named, else its model version's."""
    name = rec.payload.get("posterior")
    return name if isinstance(name, str) and name else posterior_name(rec.model_version)


class StreamWorker:
    """Consumes the event bus (see the module docstring).

    Args:
        on_update: called with ``(new feature row, decision payload)`` after a merchant's features changed, once per
            decision, so the caller can refresh the serving bundle that decision was cached under.
    """

    def __init__(
        self,
        bus: EventBus,
        decisions: DecisionLog,
        online: OnlineStore,
        settings: StreamSettings,
        reward: RewardSettings,
        consumer: str = "worker-1",
        on_update: Callable[[FeatureRow, dict[str, Any]], None] | None = None,
        kpi_bucket_seconds: float = 60.0,
    ) -> None:
        self.bus, self.log, self.online = bus, decisions, online
        self.kpi_bucket_seconds = kpi_bucket_seconds
        self.settings, self.reward, self.consumer = settings, reward, consumer
        self.on_update = on_update
        self.applied = 0
        self.messages = 0
        self.malformed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        bus.ensure_group(settings.stream, settings.group)

    # -- one batch -----------------------------------------------------------------------------
    def run_once(self, block_ms: int | None = None) -> int:
        """Read, apply and acknowledge one batch; returns how many messages it handled."""
        s = self.settings
        msgs = self.bus.consume(
            s.stream, s.group, self.consumer, s.batch_size, s.block_ms if block_ms is None else block_ms
        )
        if not msgs:
            return 0
        keys = reward_keys(msgs)
        self.malformed += sum(1 for m in msgs if m.payload.get("kind") not in ("reward", "decision"))
        changed = self.apply(keys) if keys else []
        self.bus.ack(s.stream, s.group, [m.id for m in msgs])
        self.messages += len(msgs)
        self._refresh_features(changed)
        return len(msgs)

    def apply(self, keys: list[EventKey]) -> list[tuple[RewardEvent, DecisionRecord]]:
        """Apply the not-yet-applied events among ``keys`` ((decision_id, event_id) each) in one transaction;
        returns what was applied."""
        done: list[tuple[RewardEvent, DecisionRecord]] = []
        with self.log.transaction() as tx:
            tx.lock_posterior(WORKER_LOCK, lambda: (np.zeros((1, 1)), np.zeros(1)))
            claimed = tx.claim(keys)
            if not claimed:
                return []
            ids = sorted({e.decision_id for e in claimed})
            recs = tx.decisions(ids)
            before = tx.applied_parts(ids, exclude=[e.key for e in claimed])
            seen = {d: dict(parts) for d, parts in before.items()}  # the per-merchant statistics' own copy
            by_posterior: dict[str, list[RewardEvent]] = defaultdict(list)
            for e in claimed:
                by_posterior[posterior_of(recs[e.decision_id])].append(e)
            for name, events in sorted(by_posterior.items()):
                dim = len(recs[events[0].decision_id].phi)
                post = tx.lock_posterior(name, partial(_prior, dim))
                A, b = post.A.copy(), post.b.copy()
                for e in sorted(events, key=lambda e: (e.at, e.event_id)):
                    if self.settings.apply_delay_ms:
                        time.sleep(self.settings.apply_delay_ms / 1e3)
                    rec = recs[e.decision_id]
                    parts = before.setdefault(e.decision_id, {})
                    joined = join_part(rec.score, rec.predicted, parts, e.part, e.value, self.reward)
                    parts[e.part] = e.value
                    if joined is None:
                        continue
                    first, delta = joined
                    if first:
                        A += np.outer(rec.phi, rec.phi)
                    b += rec.phi * delta
                tx.save_posterior(name, A, b)
            self._merchant_stats(tx, claimed, recs, seen)
            bucket = bucket_of(datetime.now(UTC), self.kpi_bucket_seconds)
            kpis: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # one upsert per name, not per event
            for e in claimed:
                rec = recs[e.decision_id]
                for name, value in feedback_kpis(rec.arm, rec.merchant_id, rec.payload, e.part, e.value):
                    kpis[name][0] += 1
                    kpis[name][1] += value
                done.append((e, rec))
            for name, (count, total) in sorted(kpis.items()):
                tx.add_kpi(bucket, name, total, int(count))
        self.applied += len(done)
        return done

    @staticmethod
    def _merchant_stats(
        tx: Any, claimed: list[RewardEvent], recs: dict[str, DecisionRecord], seen: dict[str, dict[str, float]]
    ) -> None:
        """The per-merchant posterior's online part (:mod:`aidg.policy.merchant_posterior`): each landed approval,
        conversion or GP30 of a decision that logged its term features ``psi`` adds ``ψψᵀ`` (its first value) and
        ``ψ · (value − the scorer's prediction, or − the part's previous value)`` to the merchant's row, in the
        same transaction as the claim, so exactly once; the sums commute, so in any order."""
        by_row: dict[str, list[RewardEvent]] = defaultdict(list)
        for e in claimed:
            rec = recs[e.decision_id]
            if e.part in MERCHANT_PARTS and isinstance(rec.payload.get("psi"), list):
                by_row[merchant_stats_name(posterior_of(rec), rec.merchant_id)].append(e)
        for name, events in sorted(by_row.items()):
            post = tx.lock_posterior(name, _merchant_prior)
            A, b = post.A.copy(), post.b.copy()
            for e in sorted(events, key=lambda e: (e.at, e.event_id)):
                rec = recs[e.decision_id]
                psi = np.asarray(rec.payload["psi"], float)
                parts = seen.setdefault(e.decision_id, {})
                prev = parts.get(e.part)
                if psi.shape != (K,) or prev == e.value:
                    continue
                j = MERCHANT_PARTS.index(e.part) * K
                if prev is None:
                    A[j : j + K, j : j + K] += np.outer(psi, psi)
                b[j : j + K] += psi * (e.value - (rec.predicted[e.part] if prev is None else prev))
                parts[e.part] = e.value
            tx.save_posterior(name, A, b)

    def _refresh_features(self, applied: list[tuple[RewardEvent, DecisionRecord]]) -> None:
        """Fold the applied events into each merchant's online feature row; drop its cached bundle."""
        by_merchant: dict[str, list[tuple[RewardEvent, DecisionRecord]]] = defaultdict(list)
        for e, rec in applied:
            if e.part in ("approval", "override"):
                by_merchant[rec.merchant_id].append((e, rec))
        if not by_merchant:
            return
        # a row lives under its model version's namespace (the decision's payload says which)
        keys = sorted({str(rec.payload.get("ns", "")) + mid for mid, items in by_merchant.items() for _, rec in items})
        owner = {str(rec.payload.get("ns", "")) + mid: mid for mid, items in by_merchant.items() for _, rec in items}
        out: dict[str, FeatureRow] = {}

        def change(key: str, data: bytes) -> bytes | None:
            row = FeatureRow.from_bytes(data)
            mid = owner[key]
            items = [(e, rec) for e, rec in by_merchant[mid] if str(rec.payload.get("ns", "")) + mid == key]
            if not row.apply((e.part, e.value) for e, _ in items):
                return None
            out[key] = row
            return row.to_bytes()

        # read-modify-write in one atomic step per batch (Redis: an optimistic transaction, redone on a conflict):
        # two workers folding events of the same merchant at once both count
        written = self.online.update(keys, change)
        out = {k: out[k] for k in written}
        if self.on_update is not None:
            for key, row in out.items():
                mid = owner[key]
                for rec in {rec.decision_id: rec for _, rec in by_merchant[mid]}.values():
                    if str(rec.payload.get("ns", "")) + mid == key:
                        self.on_update(row, rec.payload)

    # -- the outbox ----------------------------------------------------------------------------
    def republish(self, older_than_s: float = 30.0, limit: int = 1000) -> int:
        """Publish again the events the API stored but no worker applied (the bus was down, or lost them)."""
        events = self.log.unapplied(limit, received_before=datetime.now(UTC) - timedelta(seconds=older_than_s))
        if events:
            self.bus.publish(self.settings.stream, [reward_message(e) for e in events])
        self.bus.trim(self.settings.stream)  # what every group acknowledged is in the decision log: drop it
        return len(events)

    # -- running -------------------------------------------------------------------------------
    def run(
        self, max_seconds: float | None = None, idle_exit_s: float | None = None, outbox_every_s: float = 60.0
    ) -> int:
        """Loop until :meth:`stop`, ``max_seconds`` or ``idle_exit_s`` without messages; returns messages handled."""
        start = last_msg = time.monotonic()
        next_outbox = start
        while not self._stop.is_set():
            now = time.monotonic()
            if max_seconds is not None and now - start >= max_seconds:
                break
            if idle_exit_s is not None and now - last_msg >= idle_exit_s:
                break
            if now >= next_outbox:
                try:
                    self.republish()
                except Exception:  # the outbox is a safety net: a failure here must not stop the worker
                    log.exception("outbox republish failed")
                next_outbox = now + outbox_every_s
            try:
                n = self.run_once()
                if n:
                    last_msg = time.monotonic()
                    if n < self.settings.batch_size and self.settings.linger_ms > 0:
                        self._stop.wait(self.settings.linger_ms / 1000.0)  # let the next batch gather
            except BackendUnavailableError as exc:  # an outage: one line a second, not a traceback each
                log.warning("stream batch waits for a backend: %s", exc)
                self._stop.wait(1.0)
            except Exception:
                log.exception("stream batch failed; its messages stay pending and are retried")
                self._stop.wait(1.0)
        return self.messages

    def start(self) -> None:
        """Run in a daemon thread (the embedded service's worker)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name=f"aidg-{self.consumer}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


__all__ = ["StreamWorker", "posterior_name", "posterior_of", "reward_message"]
