"""The feedback path of a replica: events stored in the decision log, then published for the stream workers.

``feedback`` stores a batch (idempotent by event id, durable before the answer) and publishes what was new.
With the decision log down the batch goes to the local spill (:mod:`aidg.service.spill`, fsync-ed before
the answer) and is still ``accepted``; ``replay_spill`` (the engine's reload loop calls it) stores and
publishes the spill once the log is back. With the bus down, stored events are republished later by the
decision log's outbox.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aidg.config import Settings
from aidg.decisionlog.log import RewardEvent
from aidg.errors import BackendUnavailableError, DataError
from aidg.features.context import FIELD_SCALE
from aidg.features.merchant_view import SEVERITY_SCALE
from aidg.online.worker import reward_message
from aidg.service.backends import Backends
from aidg.service.spill import FeedbackSpill

log = logging.getLogger("aidg.service")
KIND_PART = {"approval": "approval", "override": "override", "conversion": "conversion", "gp30": "gp30_uplift"}


class FeedbackIntake:
    """Store → publish, or spill → replay (see the module docstring); counts into the engine's ``counters``."""

    def __init__(self, settings: Settings, backends: Backends, counters: dict[str, int]) -> None:
        self.settings, self.backends, self.counters = settings, backends, counters
        self.spill = FeedbackSpill(settings.paths.home / "spill")

    def feedback(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, str]], bool]:
        """Store and publish feedback events; per event its status, and whether the bus took them."""
        try:
            recs = [self._reward_event(e) for e in events]
            statuses = self.backends.decisions.receive(recs)
        except BackendUnavailableError:
            self.spill.append(events)
            self.counters["events_spilled"] += len(events)
            return [{"event_id": str(e["event_id"]), "status": "accepted"} for e in events], False
        return self._published(recs, statuses)

    def replay_spill(self) -> int:
        """Store and publish what the spill kept while the decision log was down; batches replayed."""
        if not self.spill.pending():
            return 0
        self.backends.decisions.ping()  # still down: raise before touching the spill

        def send(events: list[dict[str, Any]]) -> None:
            recs = [self._reward_event(e) for e in events]
            self._published(recs, self.backends.decisions.receive(recs))

        n = self.spill.replay(send)
        if n:
            log.info("replayed %d spilled feedback batch(es) into the decision log", n)
        return n

    def _published(self, recs: list[RewardEvent], statuses: list[str]) -> tuple[list[dict[str, str]], bool]:
        accepted = [r for r, st in zip(recs, statuses, strict=True) if st == "accepted"]
        published = True
        if accepted:
            try:
                self.backends.bus.publish(self.settings.stream.stream, [reward_message(r) for r in accepted])
            except BackendUnavailableError:
                published = False  # stored: the outbox republishes them once the bus is back
        self.counters["events_accepted"] += len(accepted)
        self.counters["events_duplicate"] += statuses.count("duplicate")
        return [{"event_id": r.event_id, "status": st} for r, st in zip(recs, statuses, strict=True)], published

    def _reward_event(self, e: dict[str, Any]) -> RewardEvent:
        part = KIND_PART[e["kind"]]
        value = e.get("value")
        detail: dict[str, Any] = {}
        if e["kind"] == "override":
            edited = {k: v for k, v in (e.get("edited_terms") or {}).items() if v is not None}
            detail["edited_terms"] = edited
            if value is None:
                value = self._severity(e["decision_id"], edited)
        if e["kind"] == "approval" and value is None:
            value = 1.0 if e.get("approved") else 0.0
        if value is None:
            raise DataError(f"event {e['event_id']!r}: a {e['kind']} event needs a value")
        at = e.get("at") or datetime.now(UTC)
        return RewardEvent(str(e["event_id"]), str(e["decision_id"]), part, float(value), at, detail)

    def _severity(self, decision_id: str, edited: dict[str, Any]) -> float:
        """How large a rep's edit was: the largest change of a term in its field's units, ÷ 0.75, clipped to 1."""
        rec = self.backends.decisions.get(decision_id)
        if rec is None:
            return 0.0  # the event is reported as unknown_decision by receive
        worst = 0.0
        for f, v in edited.items():
            if f == "category_id":
                worst = max(worst, float(str(v) != str(rec.variant.get(f))))
            elif f in FIELD_SCALE and f in rec.variant:
                worst = max(worst, abs(float(v) - float(rec.variant[f])) / FIELD_SCALE[f])
        return float(min(worst / SEVERITY_SCALE, 1.0))


__all__ = ["KIND_PART", "FeedbackIntake"]
