"""A replica's part in the rollout and the monitor: state reload, KPI flush, triggers, alerts, shadow scoring.

One thread per replica, on its own cadences:

* every ``rollout.reload_seconds``: re-read the shared rollout row; a new
  revision reaches the engine (``on_change``: load a challenger, swap the
  champion after a promotion);
* every ``monitor.flush_seconds``: add this replica's counters to the KPI
  table (one transaction);
* every ``monitor.eval_seconds``: rolling windows → rollback triggers (a
  firing trigger rolls the challenger back: compare-and-set, so one replica
  writes it), the ramp's next step when due, the P0/P1/P2 alerts, and the
  exploration hold (no exploration while a P0 or P1 fires; the exploration
  manager's rate follows the explored variants' success rate, once per
  simulated hour with at least 20 of them answered).

Shadow requests go to a second thread through a bounded queue, so the
challenger never delays a client's answer; when the queue is full they are
dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from aidg.config import Settings
from aidg.decisionlog.rollout import RolloutStore
from aidg.decisionlog.schema import utcnow
from aidg.monitor.alerts import Alert, alerts, triggers
from aidg.monitor.gate import evaluate_gate
from aidg.monitor.kpis import (
    ARMS,
    WINDOWS_HOURS,
    Recorder,
    arm_stats,
    bucket_of,
    explore_success,
    risk_histogram,
    series,
    totals,
    window_seconds,
)
from aidg.monitor.rollout import ACTIVE, LIVE, RolloutController, View
from aidg.service.backends import Backends
from aidg.service.serving import Served

log = logging.getLogger("aidg.monitor")
EXPLORE_OUTCOMES = 20  # explored variants answered in the hour before the exploration rate moves


class ReplicaMonitor:
    """The rollout view, KPI recorder and monitor loop of one replica (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        controller: RolloutController,
        on_change: Callable[[View], None],
        champion: Callable[[], Served],
        challenger: Callable[[], Served | None],
    ) -> None:
        self.settings, self.backends, self.controller = settings, backends, controller
        self.store: RolloutStore = controller.store
        self.on_change, self._champion, self._challenger = on_change, champion, challenger
        self.recorder = Recorder()
        self.view = controller.view()
        self.alerts: list[Alert] = []
        self.hold_exploration = False
        self.shadow_dropped = 0
        self.shadow_done = 0
        self.last_rollback: dict[str, Any] | None = None
        self._shadow: queue.Queue[tuple[Any, ...]] = queue.Queue(settings.monitor.shadow_queue)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cache_seen = (0, 0)
        self._report: tuple[float, dict[str, Any]] = (0.0, {})
        self._explore_at = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.on_change(self.view)
        for target, name in ((self._loop, "aidg-monitor"), (self._shadow_loop, "aidg-shadow")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(3.0)
        try:
            self.flush()
        except Exception:
            log.warning("last KPI flush failed", exc_info=True)

    def _loop(self) -> None:
        r, m = self.settings.rollout, self.settings.monitor
        due = {"reload": 0.0, "flush": time.monotonic() + m.flush_seconds, "eval": time.monotonic() + m.eval_seconds}
        every = {"reload": r.reload_seconds, "flush": m.flush_seconds, "eval": m.eval_seconds}
        jobs = {"reload": self.reload, "flush": self.flush, "eval": self.evaluate}
        while not self._stop.wait(min(0.05, *every.values())):
            now = time.monotonic()
            for name, at in due.items():
                if now < at:
                    continue
                due[name] = now + every[name]
                try:
                    jobs[name]()
                except Exception:  # a backend down: the next round tries again; serving goes on
                    log.warning("monitor %s failed", name, exc_info=True)

    # -- the rollout view ----------------------------------------------------------------------------------------
    def reload(self) -> View:
        before = self.view.row.revision
        self.controller.reload()
        self.view = self.controller.view()
        if self.view.row.revision != before:
            self.on_change(self.view)
        return self.view

    def changed(self) -> None:
        """The controller changed the row in this replica (an admin call): apply it now."""
        self.view = self.controller.view()
        self.on_change(self.view)

    # -- KPIs ----------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        rows = self.recorder.drain()
        st = self._champion().cache.stats
        ch = self._challenger()
        hits, misses = st.hits, st.misses
        if ch is not None:
            cs = ch.cache.stats
            hits, misses = hits + cs.hits, misses + cs.misses
        dh, dm = hits - self._cache_seen[0], misses - self._cache_seen[1]
        self._cache_seen = (hits, misses)
        rows += [("all/cache_hit", 1, float(max(dh, 0))), ("all/cache_miss", 1, float(max(dm, 0)))]
        rows.append(("all/exploration_rate", 1, float(self._champion().policy.exploration.rate)))
        bucket = bucket_of(utcnow(), self.settings.monitor.bucket_seconds)
        self.store.add_kpis((bucket, n, c, t) for n, c, t in rows)

    def _since(self, hours: float | None, start: datetime | None = None) -> datetime:
        m = self.settings.monitor
        since = utcnow() - timedelta(seconds=window_seconds(hours, m.realtime_minutes, m.time_scale))
        return max(since, start) if start is not None else since

    def windows(self, start: datetime | None = None) -> dict[str, Any]:
        """The triggers' and alerts' windows (real-time, 1 h, 2 h), each from ``start`` at the earliest."""
        return {w: self.store.kpi_totals(self._since(WINDOWS_HOURS[w], start)) for w in ("realtime", "1h", "2h")}

    def evaluate(self) -> list[Alert]:
        """Triggers (and a rollback when one fires), the ramp's next step, alerts and the exploration hold."""
        row = self.controller.row  # re-read every rollout.reload_seconds by the reload job
        fired: list[Alert] = []
        if row.state in LIVE:
            t0 = time.monotonic()
            fired = triggers(self.settings, self.windows(row.started_at))
            if fired:
                detected = utcnow()
                why = "; ".join(a.message for a in fired)
                detail = {"triggers": [a.to_dict() for a in fired], "detected_at": detected.isoformat()}
                try:
                    self.controller.rollback("monitor", f"auto-rollback: {why}", detail)
                    done = utcnow()
                    self.last_rollback = {
                        **detail, "committed_at": done.isoformat(),
                        "trigger_to_committed_s": round((done - detected).total_seconds() + time.monotonic() - t0, 3),
                    }  # fmt: skip
                    log.warning(
                        "auto-rollback of version %s: %s; committed %.3f s after the trigger, every replica on the "
                        "champion within %.1f s more", row.challenger, why,
                        self.last_rollback["trigger_to_committed_s"], self.settings.rollout.reload_seconds,
                    )  # fmt: skip
                    self.changed()
                except Exception:  # another replica rolled it back first
                    self.reload()
            else:
                if self.controller.auto_advance() is not None:
                    self.changed()
        out = alerts(self.settings, self.windows(), self.backends.down()) + fired
        self.alerts = out
        self.hold_exploration = any(a.severity in ("P0", "P1") and a.rule != "override_rate" for a in out)
        self._adapt_exploration()
        return out

    def _adapt_exploration(self) -> None:
        """Once per simulated hour, the exploration manager's ramp (memo §2.3) on the explored variants' success."""
        now = time.monotonic()
        if now - self._explore_at < window_seconds(1.0, 0, self.settings.monitor.time_scale):
            return
        hour = self.store.kpi_totals(self._since(1.0))
        answered = sum(hour.get(f"{a}/explore_answered", (0, 0.0))[0] for a in ARMS)
        success = explore_success(hour)
        if success is None or answered < EXPLORE_OUTCOMES:
            return
        self._explore_at = now
        for s in (self._champion(), self._challenger()):
            if s is not None:
                s.policy.exploration.update(success)

    # -- shadow --------------------------------------------------------------------------------------------------
    def shadow(self, decision_id: str, merchant_id: str, n: int, at: pd.Timestamp, logged: int,
               estimates: np.ndarray) -> None:  # fmt: skip
        try:
            self._shadow.put_nowait((decision_id, merchant_id, n, at, logged, estimates))
        except queue.Full:
            self.shadow_dropped += 1

    def _shadow_loop(self) -> None:
        batch: list[dict[str, Any]] = []
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                decision_id, merchant_id, n, at, logged, estimates = self._shadow.get(timeout=0.2)
                ch = self._challenger()
                if ch is not None and self.view.state == "shadow":
                    sc = ch.decide(f"shadow-{decision_id}", merchant_id, n, at, [], explore=True)
                    batch.append({"decision_id": decision_id, "challenger": ch.version, "choice": sc.played,
                                  "logged": logged, "estimates": estimates})  # fmt: skip
            except queue.Empty:
                pass
            except Exception:
                log.warning("shadow scoring failed", exc_info=True)
            if batch and (len(batch) >= 50 or time.monotonic() - last > 0.5):
                try:
                    self.store.record_shadow(batch)
                    self.shadow_done += len(batch)
                    batch = []
                except Exception:
                    log.warning("could not store shadow records", exc_info=True)
                last = time.monotonic()

    def gate(self) -> dict[str, Any]:
        row = self.controller.reload()
        if row.challenger is None:
            return {"passed": False, "n": 0, "reason": "no challenger"}
        return evaluate_gate(self.store.shadow(row.challenger, row.started_at), self.settings)

    # -- the dashboard's answer ----------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """``GET /v1/monitor`` (docs/monitor-api.md); recomputed at most every 2 s."""
        at, cached = self._report
        if cached and time.monotonic() - at < 2.0:
            return cached
        m = self.settings.monitor
        now = utcnow()
        start = self._since(2.0)
        rows = self.backends.decisions.kpis(since=start)  # the series' rows also hold the shorter windows
        wins = {w: totals(rows, self._since(WINDOWS_HOURS[w])) for w in ("realtime", "1h", "2h")}
        wins["7d"] = self.store.kpi_totals(self._since(WINDOWS_HOURS["7d"]))
        windows = {w: {**{a: arm_stats(t, [a]) for a in ARMS}, "all": arm_stats(t, [*ARMS, "all"])}
                   for w, t in wins.items()}  # fmt: skip
        rt = wins["realtime"]
        a, r = self.settings.alerts, self.settings.rollout
        out = {
            "generated_at": now.isoformat(), "time_scale": m.time_scale, "bucket_seconds": m.bucket_seconds,
            "rollout": {**self.controller.to_dict(transitions=0), "challenger_loaded": self._challenger() is not None,
                        "shadow_records": self.shadow_done, "shadow_dropped": self.shadow_dropped,
                        "last_rollback": self.last_rollback},
            "windows": windows,
            "series": series(rows, start, now, m.series_points),
            "thresholds": {"gp30_drop": r.rollback_gp30_drop, "override_rate_p1": a.p1_override_rate,
                           "override_spike": r.rollback_override_spike, "error_rate": r.rollback_error_rate,
                           "latency_ms_p1": a.p1_latency_ms, "cache_hit_p2": a.p2_cache_hit_rate},
            "alerts": [x.to_dict() for x in self.alerts],
            "risk_histogram": risk_histogram(wins["1h"]),
            "exploration": {
                "rate": round(float(self._champion().policy.exploration.rate), 4),
                "held": self.hold_exploration,
                "active_variants": int(sum(rt.get(f"{x}/explore_variants", (0, 0.0))[1] for x in ARMS)),
                "success_rate": explore_success(wins["1h"]),
                "explore_decisions": int(sum(rt.get(f"{x}/explore", (0, 0.0))[1] for x in ARMS)),
            },
        }  # fmt: skip
        self._report = (time.monotonic(), out)
        return out


__all__ = ["ACTIVE", "ReplicaMonitor"]
